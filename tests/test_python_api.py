"""The Python API a notebook or a pipeline uses: render any format, read the project's config,
take vectors the way pandas and pyarrow hold them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embaudit import InputError, UsageError, audit, compare_knn
from embaudit.formats import FORMATS

ROWS = np.random.default_rng(0).standard_normal((400, 12)).astype(np.float32)


@pytest.mark.parametrize("format_name", sorted(set(FORMATS) - {"html"}))
def test_a_report_renders_in_every_format_as_the_cli_prints_it(
    cli, tmp_path, format_name, monkeypatch
):
    # The CLI's table follows the terminal's width (COLUMNS first); render's default is 100.
    monkeypatch.setenv("COLUMNS", "100")
    np.save(tmp_path / "x.npy", ROWS)
    report = audit(tmp_path / "x.npy", seed=3)
    printed = cli("check", tmp_path / "x.npy", "--seed", "3", "-f", format_name).stdout
    rendered = report.render(format_name)
    if format_name == "json":
        produced, expected = json.loads(rendered), json.loads(printed)
        produced.pop("timings"), expected.pop("timings")
        assert produced == expected
    elif format_name == "junit":  # carries the run's time
        assert rendered.count("<testcase") == printed.count("<testcase")
    else:
        assert rendered == printed


def test_render_names_an_unknown_format():
    with pytest.raises(UsageError, match=r"^format_name must be one of"):
        audit(ROWS, select="EA0").render("pdf")


def test_the_api_reads_the_projects_configuration(tmp_path, monkeypatch):
    (tmp_path / "embaudit.toml").write_text('trained-with = "dot"\nk = 7\n')
    monkeypatch.chdir(tmp_path)
    assert audit(ROWS).params["trained_with"] == "unknown"  # only when asked
    found = audit(ROWS, config=True)
    assert (found.params["trained_with"], found.params["k"]) == ("dot", 7)
    named = audit(ROWS, config=tmp_path / "embaudit.toml", k=5)  # keywords win
    assert (named.params["trained_with"], named.params["k"]) == ("dot", 5)
    assert compare_knn(ROWS, config=True).params["k"] == 7
    with pytest.raises(UsageError, match="not both"):
        audit(ROWS, found.options, config=True)


def test_pandas_and_pyarrow_columns_of_vectors_are_read_as_arrays():
    pd = pytest.importorskip("pandas")
    import pyarrow as pa

    expected = audit(ROWS, select="EA1,EA4").to_dict()
    expected.pop("timings")
    frame = pd.DataFrame({"embedding": list(ROWS)})
    table = pa.table({"embedding": pa.FixedSizeListArray.from_arrays(pa.array(ROWS.ravel()), 12)})
    for given in (frame["embedding"], frame, table, table.column(0)):
        got = audit(given, select="EA1,EA4").to_dict()
        got.pop("timings")
        assert got == expected
    with pytest.raises(Exception, match="different lengths"):
        audit(pd.Series([[1.0, 2.0], [1.0]]))


def _with_nulls(rows, missing):
    """The rows as a list of arrays with None at the ``missing`` positions."""
    return [None if i in missing else row for i, row in enumerate(rows)]


def test_null_vectors_in_memory_are_reported_under_ea001_by_position():
    pd = pytest.importorskip("pandas")
    import pyarrow as pa

    vectors = _with_nulls(ROWS, {3, 17})
    series = pd.Series(vectors, dtype=object)
    table = pa.table({"text": ["t"] * len(ROWS), "embedding": pa.array(vectors)})
    for given, options in ((series, {}), (table, {"column": "embedding"})):
        report = audit(given, select="EA0", **options)
        non_finite = report.check("EA001")
        assert non_finite.status.value == "fail"
        assert non_finite.metrics["count"] == 2
        assert non_finite.metrics["rows"] == [3, 17]
        # The other rows are audited as the array without them is.
        assert report.input["n"] == len(ROWS)
        assert report.check("EA002").metrics["count"] == 0
    with pytest.raises(InputError, match=r"^no vectors to read: 2 rows, every one null$"):
        audit(pd.Series([None, None]))


def test_id_column_of_a_table_in_memory_names_the_rows_of_the_findings():
    pd = pytest.importorskip("pandas")
    import pyarrow as pa

    doc_ids = [f"doc-{i}" for i in range(len(ROWS))]
    vectors = _with_nulls(ROWS, {5})
    frame = pd.DataFrame({"doc_id": doc_ids, "text": "t", "embedding": vectors})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for given in (frame, table):
        report = audit(given, column="embedding", id_column="doc_id", select="EA0")
        assert report.check("EA001").metrics["ids"] == ["doc-5"]
        assert report.input["id_column"] == "doc_id"
    with pytest.raises(UsageError, match=r"^id_column 'doc' is not a column of the table"):
        audit(frame, column="embedding", id_column="doc")
    with pytest.raises(UsageError, match=r"^id_column applies to files and tables, not arrays$"):
        audit(ROWS, id_column="doc_id")

"""`embaudit.audit`: the Python entry point returns the report the CLI renders."""

from __future__ import annotations

import numpy as np
import pytest

import embaudit
from embaudit import InputError, Report, Sampling, UsageError, audit, audit_gauge, compare_knn
from embaudit.formats import FORMATS


def test_audit_returns_the_report_the_cli_prints(cli, fixtures):
    report = audit(fixtures / "nan_rows.npy", k=5, seed=2)
    assert isinstance(report, Report)
    printed = cli("check", fixtures / "nan_rows.npy", "-k", "5", "--seed", "2", "-f", "json")
    expected = printed.json()
    rendered = FORMATS["json"].render(report)
    import json

    produced = json.loads(rendered)
    for document in (produced, expected):
        document.pop("timings")
    assert produced == expected


def test_audit_accepts_paths_as_strings(fixtures):
    assert audit(str(fixtures / "sphere.npy")).input["format"] == "npy"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"k": 0}, "^k must be an integer in \\[1, 1000\\], got 0$"),
        ({"k": 2.5}, "^k must be an integer"),
        ({"seed": -1}, "^seed must be an integer >= 0, got -1$"),
        (
            {"trained_with": "softmax"},
            "^trained_with must be one of cosine, dot, dot-regularized, l2, unknown",
        ),
        ({"key": "x"}, "^key applies to files, not arrays$"),
        ({"sampling": Sampling(queries=5), "k": 1001}, "^k must be"),
        ({"kk": 3}, "unknown parameter 'kk'"),
    ],
)
def test_invalid_options_raise_usage_errors_naming_the_parameter(options, fragment):
    # The library names the parameter; only the command line speaks of flags.
    with pytest.raises(UsageError, match=fragment):
        audit(np.ones((3, 2)), **options)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: compare_knn(np.ones((3, 2)), queries=0), "^queries must be an integer >= 1"),
        (lambda: compare_knn(np.ones((3, 2)), min_overlap=1.5), "^min_overlap must be a number"),
        (lambda: compare_knn(np.ones((3, 2)), metric="cos"), "^metric must be one of"),
        (lambda: audit_gauge(np.ones((3, 2)), np.ones((3, 2)), sample=5), "^sample must be larger"),
        (lambda: audit_gauge(np.ones((3, 2)), np.ones((3, 2)), side="x"), "^side must be one of"),
        (lambda: Sampling(gauge_levels=()), "^gauge_levels must be a non-empty list"),
    ],
)
def test_every_command_names_the_parameter_at_fault(call, fragment):
    with pytest.raises(UsageError, match=fragment):
        call()


def test_column_picks_the_vectors_of_an_in_memory_table(fixtures):
    import pyarrow.parquet as pq

    table = pq.read_table(fixtures / "list.parquet")  # an id column and the vectors
    assert table.num_columns == 2
    expected = audit(fixtures / "list.parquet", column="embedding", seed=1).to_dict()
    frame = table.to_pandas()
    frame.columns = ["id", 7]  # a name that is not a string, as the user writes it
    reports = [
        audit(table, column="embedding", seed=1).to_dict(),
        audit(table.select(["embedding"]), seed=1).to_dict(),
        audit(frame, column="7", seed=1).to_dict(),
    ]
    for report in reports:
        assert report["input"]["n"] == expected["input"]["n"]
        assert report["input"]["d"] == expected["input"]["d"]
        assert [(c["code"], c["value"]) for c in report["checks"]] == [
            (c["code"], c["value"]) for c in expected["checks"]
        ]
    with pytest.raises(InputError, match="a table of 2 columns: name the vectors' with column="):
        audit(table)  # which column holds the vectors is not guessed
    with pytest.raises(UsageError, match=r"^column 'vec' is not a column of the table; it has id"):
        audit(table, column="vec")
    with pytest.raises(UsageError, match=r"^column applies to files and tables, not arrays$"):
        audit(np.ones((3, 2)), column="embedding")
    with pytest.raises(UsageError, match=r"^key applies to files, not arrays$"):
        audit(table, column="embedding", key="x")


def test_unreadable_arrays_raise_input_errors():
    with pytest.raises(InputError, match="2-D"):
        audit(np.ones(4))
    with pytest.raises(InputError, match="strings"):
        audit(np.array([["a", "b"]]))


def test_public_names():
    assert embaudit.__version__
    assert callable(embaudit.audit)

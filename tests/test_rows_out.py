"""``--rows-out FILE``: the rows behind the findings, checked against brute-force numpy."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from embaudit import Sampling, UsageError, audit, compare_knn

K = 5
#: Every clean row is a query and a node of the hubness graph: the brute force sees the same.
EVERY_ROW = ("--queries", "1000", "--seed", "1", "-k", str(K))


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, d))
    rows = centres[rng.integers(6, size=n)] + 0.4 * rng.standard_normal((n, d))
    return rows.astype(np.float32)


def _defects() -> np.ndarray:
    rows = _clustered(300, 16, 0)
    rows[3] = np.nan
    rows[7, 2] = np.inf
    rows[4] = 0.0
    rows[[11, 20]] = rows[10]  # a group of three identical rows: 11 and 20 copy 10
    rows[150] = rows[90]
    return rows


def _neighbourly() -> np.ndarray:
    """No identical rows (their ties would make the hubs depend on tie order), a NaN row first
    (positions then differ from the clean rows' order), planted near-duplicates, an outlier."""
    rows = _clustered(300, 16, 1)
    rows[0] = np.nan
    rows[30] = rows[40] + 1e-3
    rows[60] = rows[61] * 1.0001 + 2e-3
    rows[99] = 5.0 * np.random.default_rng(9).standard_normal(16)
    return rows


def _read(path):
    if str(path).endswith(".csv"):
        return pa_csv.read_csv(path).to_pylist()
    return pq.read_table(path).to_pylist()


def _of(rows: list[dict], code: str) -> list[dict]:
    return [row for row in rows if row["code"] == code]


def _brute_force(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each clean row's position, nearest other row (position) and its cosine, in float64."""
    norms = np.linalg.norm(rows.astype(np.float64), axis=1)
    clean = np.flatnonzero(np.isfinite(norms) & (norms > 0))
    unit = rows[clean].astype(np.float64) / norms[clean, None]
    cosines = unit @ unit.T
    np.fill_diagonal(cosines, -np.inf)
    nearest = np.argmax(cosines, axis=1)
    return clean, clean[nearest], cosines[np.arange(len(clean)), nearest]


def test_defect_rows_are_every_nonfinite_zero_and_copied_row(cli, tmp_path):
    rows = _defects()
    np.save(tmp_path / "x.npy", rows)
    out = tmp_path / "rows.parquet"
    result = cli("check", tmp_path / "x.npy", "--rows-out", out, *EVERY_ROW)
    assert result.code == 1
    written = _read(out)
    finite = np.isfinite(rows).all(axis=1)
    assert [r["row"] for r in _of(written, "EA001")] == np.flatnonzero(~finite).tolist()
    zero = finite & (np.abs(rows).sum(axis=1) == 0)
    assert [r["row"] for r in _of(written, "EA002")] == np.flatnonzero(zero).tolist()
    copies = [(r["row"], r["partner_row"]) for r in _of(written, "EA003")]
    # Brute force: each clean row identical to an earlier one, with the group's first row.
    expected = []
    for i in range(len(rows)):
        if not finite[i] or zero[i]:
            continue
        earlier = [j for j in range(i) if finite[j] and np.array_equal(rows[j], rows[i])]
        if earlier:
            expected.append((i, earlier[0]))
    assert copies == expected == [(11, 10), (20, 10), (150, 90)]
    statuses = {r["code"]: r["status"] for r in written}
    assert statuses["EA001"] == "fail" and statuses["EA003"] == "warn"


def test_neighbour_rows_match_a_brute_force_search(cli, tmp_path):
    rows = _neighbourly()
    np.save(tmp_path / "x.npy", rows)
    out = tmp_path / "rows.csv"
    result = cli("check", tmp_path / "x.npy", "--rows-out", out, *EVERY_ROW, "-f", "json")
    report = json.loads(result.stdout)
    written = _read(out)
    clean, partner, nearest = _brute_force(rows)

    near = _of(written, "EA005")
    close = nearest >= 0.99
    assert [r["row"] for r in near] == clean[close].tolist()
    assert {30, 40, 60, 61} <= {r["row"] for r in near}
    assert [r["partner_row"] for r in near] == partner[close].tolist()
    np.testing.assert_allclose([r["cosine"] for r in near], nearest[close], atol=1e-5)

    checks = {c["code"]: c for c in report["checks"]}
    floor = checks["EA503"]["metrics"]["floor"]
    isolated = _of(written, "EA503")
    assert [r["row"] for r in isolated] == clean[nearest < floor].tolist()
    assert 99 in {r["row"] for r in isolated}
    np.testing.assert_allclose([r["cosine"] for r in isolated], nearest[nearest < floor], atol=1e-5)
    assert [r["bound"] for r in isolated] == pytest.approx([floor] * len(isolated))

    # Hubs: k-occurrence in the k-nearest lists of every clean row, at least 2k.
    norms = np.linalg.norm(rows[clean].astype(np.float64), axis=1, keepdims=True)
    unit = rows[clean] / norms
    cosines = unit @ unit.T
    np.fill_diagonal(cosines, -np.inf)
    lists = np.argsort(-cosines, axis=1, kind="stable")[:, :K]
    occurrence = np.bincount(lists.ravel(), minlength=len(clean))
    hubs = _of(written, "EA501")
    assert [r["row"] for r in hubs] == clean[occurrence >= 2 * K].tolist()
    assert [r["k_occurrence"] for r in hubs] == occurrence[occurrence >= 2 * K].tolist()
    assert hubs, "the clustered rows have hubs"


def test_ids_name_the_rows_and_their_partners(cli, tmp_path):
    rows = _defects()
    ids = [f"doc-{i}" for i in range(len(rows))]
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), rows.shape[1])
    pq.write_table(pa.table({"doc_id": ids, "embedding": vectors}), tmp_path / "x.parquet")
    out = tmp_path / "rows.parquet"
    cli("check", tmp_path / "x.parquet", "--id-column", "doc_id", "--rows-out", out, *EVERY_ROW)
    written = pq.read_table(out)
    assert written.column_names[:2] == ["row", "id"]
    for row in written.to_pylist():
        assert row["id"] == f"doc-{row['row']}"
        if row["partner_row"] is not None:
            assert row["partner_id"] == f"doc-{row['partner_row']}"
    copies = [r for r in written.to_pylist() if r["code"] == "EA003"]
    assert (copies[0]["id"], copies[0]["partner_id"]) == ("doc-11", "doc-10")


def test_the_api_writes_the_same_rows_as_the_cli(cli, tmp_path):
    rows = _defects()
    np.save(tmp_path / "x.npy", rows)
    cli("check", tmp_path / "x.npy", "--rows-out", tmp_path / "cli.csv", *EVERY_ROW)
    audit(
        tmp_path / "x.npy",
        rows_out=str(tmp_path / "api.csv"),
        k=K,
        seed=1,
        sampling=Sampling(queries=1000),
    )
    assert _read(tmp_path / "api.csv") == _read(tmp_path / "cli.csv")


def test_compare_knn_writes_the_items_whose_neighbours_changed(cli, tmp_path):
    old = _clustered(200, 16, 2)
    new = old + 0.3 * np.random.default_rng(3).standard_normal(old.shape).astype(np.float32)
    np.save(tmp_path / "old.npy", old)
    np.save(tmp_path / "new.npy", new)
    out = tmp_path / "changed.csv"
    result = cli(
        "compare-knn", tmp_path / "old.npy", tmp_path / "new.npy", "--queries", "1000",
        "-k", str(K), "--rows-out", out,
    )  # fmt: skip
    assert result.code == 0
    written = _read(out)

    def lists(rows):
        unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        cosines = unit.astype(np.float64) @ unit.T.astype(np.float64)
        np.fill_diagonal(cosines, -np.inf)
        return np.argsort(-cosines, axis=1, kind="stable")[:, :K]

    before, after = lists(old), lists(new)
    overlap = np.array([len(set(a) & set(b)) / K for a, b in zip(before, after, strict=True)])
    changed = np.flatnonzero(overlap < 1)
    assert sorted(int(r["id"]) for r in written) == changed.tolist()
    by_id = {int(r["id"]): r["overlap_at_k"] for r in written}
    np.testing.assert_allclose([by_id[i] for i in changed], overlap[changed])
    values = [r["overlap_at_k"] for r in written]
    assert values == sorted(values)  # least overlap first
    assert {r["k"] for r in written} == {K}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "X", "--rows-out", "rows.txt"], "--rows-out must name a .parquet or .csv"),
        (["check", "X", "--rows-out", "nowhere/rows.csv"], "--rows-out names a file in"),
        (["compare-knn", "X", "--rows-out", "r.csv"], "--rows-out applies to two exports"),
        (["check", "--rows-out", "r.csv"], "--rows-out applies to one export"),
    ],
)
def test_bad_rows_out_is_one_line_naming_the_flag(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", _clustered(50, 8, 0))
    (tmp_path / "embaudit.toml").write_text("[[files]]\npath = '*.npy'\n")
    result = cli(*[str(tmp_path / "x.npy") if a == "X" else a for a in args])
    assert result.code == 2
    [line] = result.stderr.splitlines()
    assert message in line
    with pytest.raises(UsageError, match=r"^rows_out applies to two exports"):
        compare_knn(_clustered(50, 8, 0), rows_out=tmp_path / "r.csv")


def test_the_rows_file_gets_the_permissions_of_a_file_the_user_writes(cli, tmp_path):
    """A new file: the umask's permissions (not the 0600 of a temporary file); a file that
    exists: its own, replaced atomically (no temporary file left beside it)."""
    np.save(tmp_path / "x.npy", _defects())
    new, kept = tmp_path / "new.csv", tmp_path / "kept.parquet"
    kept.write_text("old")
    kept.chmod(0o640)
    previous = os.umask(0o022)
    try:
        assert cli("check", tmp_path / "x.npy", "--rows-out", new, "--exit-zero").code == 0
        assert cli("check", tmp_path / "x.npy", "--rows-out", kept, "--exit-zero").code == 0
    finally:
        os.umask(previous)
    assert new.stat().st_mode & 0o777 == 0o644
    assert kept.stat().st_mode & 0o777 == 0o640
    assert _of(_read(kept), "EA001") == _of(_read(new), "EA001") != []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.parquet", "new.csv", "x.npy"]

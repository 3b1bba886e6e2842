"""The same rows, written the way real tools write them, read and audited the same.

pandas (`to_parquet` of numpy arrays per row, a NaN element written as a null, a None vector as a
null list, string ids in a large_string column, a text column beside), polars (`List(Float64)`
written as large_list, `Array(Float32, d)` as fixed_size_list) and float16/32/64 `.npy` must give
the report of the float32 `.npy`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import embaudit
from embaudit import Report

pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")

N, D = 400, 24
NAN_ROW, NULL_ROW, ZERO_ROW = 2, 4, 7
IDS = [f"doc-{row:04d}" for row in range(N)]
TEXTS = [f"passage {row} of the corpus" for row in range(N)]


def _rows() -> np.ndarray:
    """Clustered unit rows, rounded to float16 so every storage dtype holds the same values;
    row NAN_ROW has one NaN, row NULL_ROW is all NaN (a null vector), row ZERO_ROW is zero."""
    rng = np.random.default_rng(12)
    centres = rng.standard_normal((8, D))
    rows = centres[rng.integers(8, size=N)] + 0.5 * rng.standard_normal((N, D))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rows = rows.astype(np.float16).astype(np.float64)
    rows[NAN_ROW, 3] = np.nan
    rows[NULL_ROW] = np.nan
    rows[ZERO_ROW] = 0.0
    return rows


def _per_row(rows: np.ndarray) -> list[np.ndarray | None]:
    """One numpy array per row, None for the null vector (as an embedding pipeline collects)."""
    return [None if row == NULL_ROW else rows[row].copy() for row in range(N)]


def _as_lists(rows: np.ndarray) -> list[list[float] | None]:
    return [None if vector is None else vector.tolist() for vector in _per_row(rows)]


def pandas_lists(rows: np.ndarray, path: Path) -> dict[str, str]:
    frame = pd.DataFrame({"id": IDS, "text": TEXTS, "embedding": _per_row(rows)})
    frame.to_parquet(path / "pandas.parquet")
    return {"source": str(path / "pandas.parquet")}


def pandas_indexed_by_id(rows: np.ndarray, path: Path) -> dict[str, str]:
    """The id as the index: pandas writes it as a column named after the index."""
    frame = pd.DataFrame({"text": TEXTS, "embedding": _per_row(rows)}, index=pd.Index(IDS))
    frame.index.name = "id"
    frame.to_parquet(path / "indexed.parquet")
    return {"source": str(path / "indexed.parquet")}


def pandas_wide(rows: np.ndarray, path: Path) -> dict[str, str]:
    """One float column per dimension; pandas writes each NaN as a null."""
    frame = pd.DataFrame(rows, columns=[f"dim_{j}" for j in range(D)])
    frame.insert(0, "doc_id", IDS)
    frame.to_parquet(path / "wide.parquet")
    return {"source": str(path / "wide.parquet"), "id_column": "doc_id"}


def polars_list(rows: np.ndarray, path: Path) -> dict[str, str]:
    schema = {"doc_id": pl.String, "text": pl.String, "embedding": pl.List(pl.Float64)}
    frame = pl.DataFrame(
        {"doc_id": IDS, "text": TEXTS, "embedding": _as_lists(rows)}, schema=schema
    )
    frame.write_parquet(path / "polars_list.parquet", row_group_size=128)
    return {"source": str(path / "polars_list.parquet"), "id_column": "doc_id"}


def polars_array(rows: np.ndarray, path: Path) -> dict[str, str]:
    schema = {"id": pl.String, "text": pl.String, "embedding": pl.Array(pl.Float32, D)}
    frame = pl.DataFrame({"id": IDS, "text": TEXTS, "embedding": _as_lists(rows)}, schema=schema)
    frame.write_parquet(path / "polars_array.parquet", row_group_size=128)
    return {"source": str(path / "polars_array.parquet")}


def _npy(dtype: type[np.floating]) -> Callable[[np.ndarray, Path], dict[str, str]]:
    def write(rows: np.ndarray, path: Path) -> dict[str, str]:
        target = path / f"{np.dtype(dtype).name}.npy"
        np.save(target, rows.astype(dtype))
        return {"source": str(target)}

    write.__name__ = f"npy_{np.dtype(dtype).name}"
    return write


WITH_IDS = [pandas_lists, pandas_indexed_by_id, pandas_wide, polars_list, polars_array]
SHAPES = [*WITH_IDS, _npy(np.float16), _npy(np.float64)]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="module")
def reference(exports: Path) -> Report:
    """The report of the float32 `.npy`."""
    return embaudit.audit(**_npy(np.float32)(_rows(), exports), k=5, seed=3)


def _audit(write: Callable[[np.ndarray, Path], dict[str, str]], folder: Path) -> Report:
    return embaudit.audit(**write(_rows(), folder), k=5, seed=3)


@pytest.mark.parametrize("write", SHAPES, ids=[shape.__name__ for shape in SHAPES])
def test_every_shape_gives_the_report_of_the_float32_npy(write, exports, reference):
    report = _audit(write, exports)
    assert (report.input["n"], report.input["d"]) == (N, D)
    assert report.input["excluded_rows"] == reference.input["excluded_rows"]
    assert [c.code for c in report.checks] == [c.code for c in reference.checks]
    for result, expected in zip(report.checks, reference.checks, strict=True):
        assert result.status == expected.status, (result.code, result.message)
        if expected.value is None:
            assert result.value is None, result.code
        else:
            assert result.value == pytest.approx(expected.value, abs=1e-3), result.code


def test_the_reference_flags_the_bad_rows(reference):
    assert reference.check("EA001").metrics["rows"] == [NAN_ROW, NULL_ROW]
    assert reference.check("EA002").metrics["rows"] == [ZERO_ROW]


@pytest.mark.parametrize("write", WITH_IDS, ids=[shape.__name__ for shape in WITH_IDS])
def test_findings_name_the_string_ids(write, exports):
    report = _audit(write, exports)
    non_finite = report.check("EA001")
    assert non_finite.metrics["ids"] == [IDS[NAN_ROW], IDS[NULL_ROW]]
    assert IDS[NAN_ROW] in non_finite.message and IDS[NULL_ROW] in non_finite.message
    assert report.check("EA002").metrics["ids"] == [IDS[ZERO_ROW]]


def test_the_cli_reads_a_pandas_export_without_a_warning(exports):
    source = pandas_lists(_rows(), exports)["source"]
    result = subprocess.run(
        [sys.executable, "-m", "embaudit", "check", source, "-k", "5", "-f", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr
    assert result.stderr == ""
    assert '"EA001"' in result.stdout

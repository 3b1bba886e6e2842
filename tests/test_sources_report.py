"""Every source gives the report of the same rows in a float32 `.npy`.

The rows are written the way each format holds them (a JSON Lines dump, a CSV with the vectors in
a text cell or one column per dimension, …), with a NaN value, a null vector and a zero vector
among them; each file is audited and compared check by check with the `.npy`, timings aside.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import embaudit
from embaudit import Report

N, D = 300, 16
NAN_ROW, NULL_ROW, ZERO_ROW = 2, 4, 7
IDS = [f"doc-{row:04d}" for row in range(N)]

Writer = Callable[[np.ndarray, Path], dict[str, Any]]


def _rows() -> np.ndarray:
    """Clustered unit rows, rounded to float16 so every storage dtype holds the same values;
    row NAN_ROW has one NaN, row NULL_ROW is all NaN (a null vector), row ZERO_ROW is zero."""
    rng = np.random.default_rng(17)
    centres = rng.standard_normal((6, D))
    rows = centres[rng.integers(6, size=N)] + 0.5 * rng.standard_normal((N, D))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rows = rows.astype(np.float16).astype(np.float64)
    rows[NAN_ROW, 3] = np.nan
    rows[NULL_ROW] = np.nan
    rows[ZERO_ROW] = 0.0
    return rows


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _list(rows: np.ndarray, row: int) -> list[float | None] | None:
    """A row as a JSON list: the null vector as null, a NaN value as null."""
    return None if row == NULL_ROW else [_number(v) for v in rows[row]]


def jsonl_list(rows: np.ndarray, folder: Path) -> dict[str, Any]:
    path = folder / "dump.jsonl"
    with path.open("w") as stream:
        for row in range(N):
            record = {"id": IDS[row], "text": f"passage {row}", "embedding": _list(rows, row)}
            stream.write(json.dumps(record) + "\n")
    return {"source": path}


def jsonl_wide(rows: np.ndarray, folder: Path) -> dict[str, Any]:
    path = folder / "wide.ndjson"
    with path.open("w") as stream:
        for row in range(N):
            record = {"doc": IDS[row], **{f"d{j}": _number(rows[row, j]) for j in range(D)}}
            stream.write(json.dumps(record) + "\n")
    return {"source": path, "id_column": "doc"}


def csv_list(rows: np.ndarray, folder: Path) -> dict[str, Any]:
    """The vector as a text cell, as a CSV written from a list column holds it."""
    path = folder / "dump.csv"
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "text", "embedding"])
        for row in range(N):
            vector = "" if row == NULL_ROW else json.dumps([float(v) for v in rows[row]])
            text = f"passage {row}, with a comma"
            writer.writerow([IDS[row], text, vector.replace("NaN", "nan")])
    return {"source": path}


def csv_wide(rows: np.ndarray, folder: Path) -> dict[str, Any]:
    """One column per dimension; a NaN as an empty cell (as pandas writes it)."""
    path = folder / "wide.csv"
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", *(f"dim_{j}" for j in range(D))])
        for row in range(N):
            cells = ["" if math.isnan(v) else repr(float(v)) for v in rows[row]]
            writer.writerow([IDS[row], *cells])
    return {"source": path}


def write_texmex(path: Path, rows: np.ndarray, dtype: str) -> None:
    """TEXMEX: every row is <int32 d> then its d values."""
    n, d = rows.shape
    values = np.ascontiguousarray(rows.astype(dtype)).view(np.uint8).reshape(n, -1)
    header = np.broadcast_to(np.frombuffer(np.int32(d).astype("<i4").tobytes(), np.uint8), (n, 4))
    np.hstack([header, values]).tofile(path)


def write_bigann(path: Path, rows: np.ndarray, dtype: str) -> None:
    """big-ann: <uint32 n><uint32 d> then the n × d values."""
    with path.open("wb") as stream:
        stream.write(np.array(rows.shape, dtype="<u4").tobytes())
        stream.write(np.ascontiguousarray(rows.astype(dtype)).tobytes())


def fvecs(rows: np.ndarray, folder: Path) -> dict[str, Any]:
    write_texmex(folder / "base.fvecs", rows, "<f4")
    return {"source": folder / "base.fvecs"}


def fbin(rows: np.ndarray, folder: Path) -> dict[str, Any]:
    write_bigann(folder / "base.fbin", rows, "<f4")
    return {"source": folder / "base.fbin"}


def f16bin(rows: np.ndarray, folder: Path) -> dict[str, Any]:
    write_bigann(folder / "base.f16bin", rows, "<f2")
    return {"source": folder / "base.f16bin"}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    """A .safetensors file by hand: the 8-byte header length, the JSON header, the data.
    ``tensors`` maps a name to (safetensors dtype, the array's bytes as stored)."""
    header: dict[str, Any] = {"__metadata__": {"format": "np"}}
    data = b""
    for name, (dtype, array) in tensors.items():
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def safetensors_f32(rows: np.ndarray, folder: Path) -> dict[str, Any]:
    """An embedding table beside other tensors of the model: --key picks it."""
    path = folder / "model.safetensors"
    tensors = {
        "embeddings.weight": ("F32", rows.astype("<f4")),
        "head.weight": ("F32", np.ones((3, 4), dtype="<f4")),
        "head.bias": ("F32", np.zeros(3, dtype="<f4")),
    }
    write_safetensors(path, tensors)
    return {"source": path, "key": "embeddings.weight"}


def safetensors_f16(rows: np.ndarray, folder: Path) -> dict[str, Any]:
    path = folder / "table.safetensors"
    write_safetensors(path, {"table": ("F16", rows.astype("<f2"))})
    return {"source": path}


def hdf5_ann_benchmarks(rows: np.ndarray, folder: Path) -> dict[str, Any]:
    """The ann-benchmarks layout: train (read by default), test, neighbors, a distance."""
    h5py = pytest.importorskip("h5py")
    path = folder / "glove-16-angular.hdf5"
    with h5py.File(path, "w") as file:
        file.attrs["distance"] = "angular"
        file.create_dataset(
            "train", data=rows.astype(np.float32), chunks=(64, D), compression="gzip"
        )
        file.create_dataset("test", data=rows[:10].astype(np.float32))
        file.create_dataset("neighbors", data=np.zeros((10, 5), dtype=np.int32))
    return {"source": path}


def lance_table(rows: np.ndarray, folder: Path) -> dict[str, Any]:
    """A LanceDB-style table: ids, text and a fixed_size_list vector column (a null vector as a
    null), over several fragments, with an IVF_PQ index on the vectors."""
    lance = pytest.importorskip("lance")
    import pyarrow as pa

    values = pa.array(rows.astype(np.float32).ravel())
    mask = pa.array([row == NULL_ROW for row in range(N)])
    vectors = pa.FixedSizeListArray.from_arrays(values, D, mask=mask)
    texts = [f"passage {row}" for row in range(N)]
    table = pa.table({"id": IDS, "text": texts, "vector": vectors})
    path = folder / "items.lance"
    lance.write_dataset(table, path, mode="overwrite", max_rows_per_file=128, max_rows_per_group=32)
    return {"source": path}


WITH_IDS = [jsonl_list, jsonl_wide, csv_list, csv_wide, lance_table]
WRITERS: list[Writer] = [
    *WITH_IDS,
    fvecs,
    fbin,
    f16bin,
    safetensors_f32,
    safetensors_f16,
    hdf5_ann_benchmarks,
]


def _quantized() -> np.ndarray:
    """int8 codes of clustered rows, as a scalar quantizer writes them; row ZERO_ROW is zero."""
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((6, D))
    rows = centres[rng.integers(6, size=N)] + 0.5 * rng.standard_normal((N, D))
    codes = np.clip(np.round(rows * 30), -127, 127)
    codes[ZERO_ROW] = 0
    return codes


def i8bin(codes: np.ndarray, folder: Path) -> dict[str, Any]:
    write_bigann(folder / "codes.i8bin", codes, "i1")
    return {"source": folder / "codes.i8bin"}


def i8_npy(codes: np.ndarray, folder: Path) -> dict[str, Any]:
    np.save(folder / "codes.npy", codes.astype(np.int8))
    return {"source": folder / "codes.npy"}


def u8bin(codes: np.ndarray, folder: Path) -> dict[str, Any]:
    """uint8 codes are the int8 codes offset by 128: a shift every check sees, so the rows are
    compared with the shifted float32 rows."""
    write_bigann(folder / "codes.u8bin", codes + 128, "u1")
    return {"source": folder / "codes.u8bin", "offset": 128}


def bvecs(codes: np.ndarray, folder: Path) -> dict[str, Any]:
    write_texmex(folder / "codes.bvecs", codes + 128, "u1")
    return {"source": folder / "codes.bvecs", "offset": 128}


def safetensors_i8(codes: np.ndarray, folder: Path) -> dict[str, Any]:
    write_safetensors(folder / "codes.safetensors", {"codes": ("I8", codes.astype(np.int8))})
    return {"source": folder / "codes.safetensors"}


QUANTIZED: list[Writer] = [i8bin, i8_npy, u8bin, bvecs, safetensors_i8]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sources")


@pytest.fixture(scope="module")
def reference(folder: Path) -> Report:
    path = folder / "reference.npy"
    np.save(path, _rows().astype(np.float32))
    return embaudit.audit(path, k=5, seed=3)


def _audit(write: Writer, folder: Path) -> Report:
    given = write(_rows(), folder)
    return embaudit.audit(given.pop("source"), k=5, seed=3, **given)


def assert_same_checks(report: Report, reference: Report) -> None:
    assert (report.input["n"], report.input["d"]) == (reference.input["n"], reference.input["d"])
    assert report.input["excluded_rows"] == reference.input["excluded_rows"]
    assert [c.code for c in report.checks] == [c.code for c in reference.checks]
    for result, expected in zip(report.checks, reference.checks, strict=True):
        assert result.status == expected.status, (result.code, result.message)
        if expected.value is None:
            assert result.value is None, result.code
        else:
            assert result.value == pytest.approx(expected.value, rel=1e-6, abs=1e-9), result.code
    assert report.verdict.level == reference.verdict.level


@pytest.mark.parametrize("write", WRITERS, ids=[write.__name__ for write in WRITERS])
def test_every_source_gives_the_report_of_the_float32_npy(write, folder, reference):
    assert_same_checks(_audit(write, folder), reference)


@pytest.mark.parametrize("write", QUANTIZED, ids=[write.__name__ for write in QUANTIZED])
def test_quantized_vectors_give_the_report_of_their_float32_values(write, folder):
    given = write(_quantized(), folder)
    offset = given.pop("offset", 0)
    report = embaudit.audit(given.pop("source"), k=5, seed=3)
    assert report.input["dtype"] == ("uint8" if offset else "int8")
    np.save(folder / f"values_{offset}.npy", (_quantized() + offset).astype(np.float32))
    reference = embaudit.audit(folder / f"values_{offset}.npy", k=5, seed=3)
    assert_same_checks(report, reference)


@pytest.mark.parametrize("write", WITH_IDS, ids=[write.__name__ for write in WITH_IDS])
def test_findings_name_the_ids(write, folder):
    report = _audit(write, folder)
    assert report.check("EA001").metrics["ids"] == [IDS[NAN_ROW], IDS[NULL_ROW]]
    assert report.check("EA002").metrics["ids"] == [IDS[ZERO_ROW]]


@pytest.mark.parametrize("write", [jsonl_list, hdf5_ann_benchmarks, lance_table])
def test_the_cli_reads_the_source_without_a_line_from_a_library(write, folder, cli_process):
    given = write(_rows(), folder)
    source = given.pop("source")
    options = [f"--{name.replace('_', '-')}={value}" for name, value in given.items()]
    result = cli_process("check", source, *options, "--trained-with", "cosine")
    assert result.code == 1, result.stderr  # the NaN and zero rows fail EA001 and EA002
    assert result.stderr == ""
    assert "EA001" in result.stdout

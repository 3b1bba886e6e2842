"""Malformed input: one line on stderr naming the file and the problem, exit 2, no traceback."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

Maker = Callable[[Path], tuple[list[str], str]]


def _save(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.lib.format.write_array(handle, array, allow_pickle=True)


def _vectors(n: int = 6, d: int = 4) -> np.ndarray:
    return np.arange(n * d, dtype=np.float32).reshape(n, d) + 1


def _fixed(vectors: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])


def truncated_npy(tmp: Path):
    path = tmp / "t.npy"
    np.save(path, _vectors(100, 8))
    path.write_bytes(path.read_bytes()[:-100])
    return [path], "truncated"


def wrong_magic(tmp: Path):
    path = tmp / "m.npy"
    path.write_bytes(b"PK\x03\x04 this is not an npy file at all")
    return [path], "magic"


def empty_npy(tmp: Path):
    path = tmp / "e.npy"
    path.write_bytes(b"")
    return [path], "magic"


def corrupt_npy_header(tmp: Path):
    path = tmp / "h.npy"
    np.save(path, _vectors())
    raw = bytearray(path.read_bytes())
    raw[10:20] = b"{'descr': "[::-1]
    path.write_bytes(bytes(raw))
    return [path], "header"


def one_dimensional(tmp: Path):
    path = tmp / "1d.npy"
    np.save(path, np.ones(10, dtype=np.float32))
    return [path], "1 dimension"


def three_dimensional(tmp: Path):
    path = tmp / "3d.npy"
    np.save(path, np.ones((2, 3, 4), dtype=np.float32))
    return [path], "3 dimension"


def object_dtype(tmp: Path):
    path = tmp / "o.npy"
    _save(path, np.array([[1.0, "a"], [2.0, None]], dtype=object))
    return [path], "Python objects"


def string_dtype(tmp: Path):
    path = tmp / "s.npy"
    np.save(path, np.array([["a", "b"], ["c", "d"]]))
    return [path], "strings"


def complex_dtype(tmp: Path):
    path = tmp / "c.npy"
    np.save(path, np.ones((3, 2), dtype=np.complex64))
    return [path], "complex"


def integer_dtype(tmp: Path):
    path = tmp / "i.npy"
    np.save(path, np.ones((3, 2), dtype=np.int64))
    return [path], "astype(np.float32)"


def structured_dtype(tmp: Path):
    path = tmp / "st.npy"
    np.save(path, np.zeros((3, 2), dtype=[("a", "f4"), ("b", "f4")]))
    return [path], "structured"


def zero_rows(tmp: Path):
    path = tmp / "z.npy"
    np.save(path, np.ones((0, 8), dtype=np.float32))
    return [path], "no rows"


def zero_columns(tmp: Path):
    path = tmp / "zc.npy"
    np.save(path, np.ones((8, 0), dtype=np.float32))
    return [path], "zero dimensions"


def ragged_lists(tmp: Path):
    path = tmp / "r.parquet"
    pq.write_table(pa.table({"emb": [[1.0, 2.0], [1.0, 2.0], [1.0, 2.0, 3.0]]}), path)
    return [path], "ragged vectors (3 values, expected 2) at row 2"


def every_vector_null(tmp: Path):
    path = tmp / "an.parquet"
    emb = pa.array([None, None], type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"emb": emb}), path)
    return [path], "column 'emb': every vector is null"


def mismatched_dimensions_across_files(tmp: Path):
    folder = tmp / "parts"
    folder.mkdir()
    pq.write_table(pa.table({"emb": _fixed(_vectors(4, 8))}), folder / "part-0.parquet")
    pq.write_table(pa.table({"emb": _fixed(_vectors(4, 16))}), folder / "part-1.parquet")
    return [folder], "part-1.parquet: column 'emb' has dimension 16"


def mismatched_list_lengths_across_files(tmp: Path):
    folder = tmp / "lists"
    folder.mkdir()
    pq.write_table(pa.table({"emb": [[1.0, 2.0]] * 3}), folder / "a.parquet")
    pq.write_table(pa.table({"emb": [[1.0, 2.0, 3.0]] * 3}), folder / "b.parquet")
    return [folder], "b.parquet: column 'emb': ragged vectors (3 values, expected 2)"


def corrupt_parquet_footer(tmp: Path):
    path = tmp / "f.parquet"
    pq.write_table(pa.table({"emb": _fixed(_vectors())}), path)
    path.write_bytes(path.read_bytes()[:-12])
    return [path], "cannot read parquet"


def not_parquet(tmp: Path):
    path = tmp / "text.parquet"
    path.write_text("id,x\n1,2\n")
    return [path], "cannot read parquet"


def missing_column(tmp: Path):
    path = tmp / "c.parquet"
    pq.write_table(pa.table({"emb": _fixed(_vectors())}), path)
    return [path, "--column", "vectors"], "--column 'vectors' not found; columns are: emb"


def missing_id_column(tmp: Path):
    path = tmp / "c.parquet"
    pq.write_table(pa.table({"emb": _fixed(_vectors())}), path)
    return [path, "--id-column", "doc"], "--id-column 'doc' not found"


def several_list_columns(tmp: Path):
    path = tmp / "two.parquet"
    pq.write_table(pa.table({"a": _fixed(_vectors()), "b": _fixed(_vectors())}), path)
    return [path], "several list columns (a, b); choose the vectors with --column"


def string_column_in_wide_layout(tmp: Path):
    path = tmp / "w.parquet"
    pq.write_table(pa.table({"text": ["x", "y"], "a": [1.0, 2.0]}), path)
    return [path], "column 'text' is string"


def integer_list_values(tmp: Path):
    path = tmp / "il.parquet"
    pq.write_table(pa.table({"emb": [[1, 2], [3, 4]]}), path)
    return [path], "holds int64 values"


def empty_parquet(tmp: Path):
    path = tmp / "empty.parquet"
    pq.write_table(pa.table({"emb": pa.array([], type=pa.list_(pa.float32(), 4))}), path)
    return [path], "no rows"


def empty_directory(tmp: Path):
    folder = tmp / "nothing"
    folder.mkdir()
    (folder / "_SUCCESS").write_text("")
    return [folder], "directory holds no .parquet files"


def unknown_extension(tmp: Path):
    path = tmp / "vectors.txt"
    path.write_text("1,2,3\n")
    return [path], "unknown file type '.txt'"


def missing_file(tmp: Path):
    return [tmp / "absent.npy"], "no such file"


def npz_several_arrays(tmp: Path):
    path = tmp / "s.npz"
    np.savez(path, users=_vectors(), items=_vectors())
    return [path], "holds 2 arrays (items, users); pick one with --key"


def npz_missing_key(tmp: Path):
    path = tmp / "k.npz"
    np.savez(path, users=_vectors())
    return [path, "--key", "items"], "--key 'items' not found; the archive holds: users"


def npz_not_a_zip(tmp: Path):
    path = tmp / "bad.npz"
    path.write_bytes(b"\x93NUMPY not a zip")
    return [path], "not a readable .npz"


def npz_without_arrays(tmp: Path):
    path = tmp / "none.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return [path], "holds no arrays"


def npz_truncated_member(tmp: Path):
    path = tmp / "tr.npz"
    np.savez(path, x=_vectors(200, 16))
    raw = path.read_bytes()
    path.write_bytes(raw[:2000] + raw[-200:])
    return [path], "corrupt archive"


def key_on_npy(tmp: Path):
    path = tmp / "a.npy"
    np.save(path, _vectors())
    return [path, "--key", "x"], "--key applies to .npz"


def column_on_npy(tmp: Path):
    path = tmp / "a.npy"
    np.save(path, _vectors())
    return [path, "--column", "x"], "--column applies to parquet"


def k_zero(tmp: Path):
    path = tmp / "a.npy"
    np.save(path, _vectors())
    return [path, "-k", "0"], "-k must be an integer in [1, 1000], got 0"


def negative_seed(tmp: Path):
    path = tmp / "a.npy"
    np.save(path, _vectors())
    return [path, "--seed", "-1"], "--seed must be an integer >= 0, got -1"


def unknown_objective(tmp: Path):
    path = tmp / "a.npy"
    np.save(path, _vectors())
    return [path, "--trained-with", "euclid"], "'--trained-with'"


def unknown_format(tmp: Path):
    path = tmp / "a.npy"
    np.save(path, _vectors())
    return [path, "--format", "xml"], "'--format'"


def non_integer_k(tmp: Path):
    path = tmp / "a.npy"
    np.save(path, _vectors())
    return [path, "-k", "ten"], "'-k'"


def jsonl_ragged(tmp: Path):
    path = tmp / "r.jsonl"
    path.write_text('{"e": [1, 2]}\n\n{"e": [1, 2]}\n{"e": [1, 2, 3]}\n')
    return [path], "ragged vectors (3 values, expected 2) at row 2 (line 4)"


def jsonl_broken_record(tmp: Path):
    path = tmp / "b.jsonl"
    path.write_text('{"e": [1, 2]}\n{"e": [1, 2\n')
    return [path], "cannot parse JSON Lines"


def jsonl_string_values(tmp: Path):
    path = tmp / "s.jsonl"
    path.write_text('{"e": ["a", "b"]}\n')
    return [path], "column 'e' holds string values"


def jsonl_missing_column(tmp: Path):
    path = tmp / "m.jsonl"
    path.write_text('{"e": [1, 2]}\n')
    return [path, "--column", "embedding"], "--column 'embedding' not found; columns are: e"


def csv_not_a_number(tmp: Path):
    path = tmp / "n.csv"
    path.write_text('e\n"[1, 2]"\n"[1, x]"\n')
    return [path], "'x' is not a number, at row 1 (line 3)"


def csv_header_only(tmp: Path):
    path = tmp / "h.csv"
    path.write_text("a,b\n")
    return [path], "no rows"


def csv_short_row(tmp: Path):
    path = tmp / "c.csv"
    path.write_text("a,b\n1,2\n3\n")
    return [path], "Expected 2 columns, got 1"


def csv_text_column_in_wide_layout(tmp: Path):
    path = tmp / "t.csv"
    path.write_text("id,text,a\n1,x,0.5\n")
    return [path], "column 'text' is string; the wide layout needs one float column"


def csv_line_break_in_a_value(tmp: Path):
    path = tmp / "q.csv"
    path.write_text('a,b\n1,"x\ny"\n')
    return [path], "a line break inside a quoted value?"


def _bigann_bytes(n: int, d: int, values: np.ndarray) -> bytes:
    return np.array([n, d], dtype="<u4").tobytes() + values.astype("<f4").tobytes()


def _fvecs_bytes(vectors: np.ndarray) -> bytes:
    n, d = vectors.shape
    header = np.full((n, 1), d, dtype="<i4").view("<f4")
    return np.hstack([header, vectors.astype("<f4")]).tobytes()


def truncated_fvecs(tmp: Path):
    path = tmp / "t.fvecs"
    path.write_bytes(_fvecs_bytes(_vectors(10, 8))[:-7])
    return [path], "is not a whole number of rows of 36 bytes"


def fvecs_wrong_first_dimension(tmp: Path):
    path = tmp / "w.fvecs"
    path.write_bytes(np.int32(1 << 30).tobytes() + b"\0" * 60)
    return [path], "wrong header: the first row declares d = 1,073,741,824"


def fvecs_inconsistent_dimensions(tmp: Path):
    path = tmp / "i.fvecs"
    raw = bytearray(_fvecs_bytes(_vectors(10, 8)))
    raw[-36:-32] = np.int32(7).tobytes()
    path.write_bytes(bytes(raw))
    return [path], "row 9 declares d = 7, the first row d = 8"


def fbin_wrong_header(tmp: Path):
    path = tmp / "h.fbin"
    path.write_bytes(_bigann_bytes(7, 4, _vectors(6, 4)))
    return [path], "truncated: the header promises 7 × 4 float32"


def fbin_header_of_another_layout(tmp: Path):
    path = tmp / "l.fbin"
    path.write_bytes(_bigann_bytes(6, 2, _vectors(6, 4)))
    return [path], "wrong header: the header promises 6 × 2 float32"


def u8bin_shorter_than_its_header(tmp: Path):
    path = tmp / "s.u8bin"
    path.write_bytes(b"\1\0")
    return [path], "shorter than the 8-byte header"


def i8bin_without_rows(tmp: Path):
    path = tmp / "z.i8bin"
    path.write_bytes(np.array([0, 4], dtype="<u4").tobytes())
    return [path], "no rows"


def _safetensors(path: Path, tensors: dict) -> Path:
    from tests.test_sources_report import write_safetensors

    write_safetensors(path, tensors)
    return path


def safetensors_several_tables(tmp: Path):
    path = _safetensors(tmp / "s.safetensors", {"a": ("F32", _vectors()), "b": ("F32", _vectors())})
    return [path], "holds 2 2-D tensors (a (6 × 4 F32), b (6 × 4 F32)); pick one with --key"


def safetensors_missing_key(tmp: Path):
    path = _safetensors(tmp / "k.safetensors", {"a": ("F32", _vectors())})
    return [path, "--key", "emb"], "--key 'emb' not found; the file holds: a (6 × 4 F32)"


def safetensors_three_dimensional(tmp: Path):
    path = _safetensors(tmp / "3.safetensors", {"a": ("F32", _vectors(6, 4).reshape(2, 3, 4))})
    return [path, "--key", "a"], "the tensor has 3 dimension(s), shape (2, 3, 4)"


def safetensors_integer_ids(tmp: Path):
    path = _safetensors(tmp / "i.safetensors", {"ids": ("I64", np.ones((3, 2), dtype=np.int64))})
    return [path], "the tensor holds I64 values; expected F16, BF16, F32, F64, I8 or U8"


def safetensors_truncated(tmp: Path):
    path = _safetensors(tmp / "t.safetensors", {"a": ("F32", _vectors(50, 8))})
    path.write_bytes(path.read_bytes()[:-10])
    return [path], "truncated: the tensor ends at byte 1,600 of data"


def safetensors_not_a_header(tmp: Path):
    path = tmp / "n.safetensors"
    path.write_bytes(b"\x93NUMPY\x01\x00 this is an npy file")
    return [path], "not a safetensors file: the header length"


def _hdf5(path: Path, datasets: dict) -> Path:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as file:
        for name, data in datasets.items():
            file.create_dataset(name, data=data)
    return path


def hdf5_not_hdf5(tmp: Path):
    path = tmp / "n.h5"
    path.write_bytes(b"\x89HDF but not really" * 8)
    return [path], "not a readable HDF5 file"


def hdf5_missing_key(tmp: Path):
    path = _hdf5(tmp / "k.hdf5", {"train": _vectors(), "test": _vectors(2, 4)})
    return [path, "--key", "base"], "--key 'base' not found; the file holds: test (2 × 4 float32)"


def hdf5_several_datasets_and_no_train(tmp: Path):
    path = _hdf5(tmp / "s.h5", {"items": _vectors(), "users": _vectors()})
    return [path], "holds 2 2-D datasets (items (6 × 4 float32), users (6 × 4 float32))"


def hdf5_neighbor_ids(tmp: Path):
    path = _hdf5(tmp / "i.hdf5", {"train": _vectors(), "neighbors": np.ones((3, 2), np.int32)})
    return [path, "--key", "neighbors"], "dataset holds integers (dtype int32)"


def _lance(path: Path, **columns) -> Path:
    lance = pytest.importorskip("lance")
    lance.write_dataset(pa.table(columns), path)
    return path


def lance_not_a_dataset(tmp: Path):
    path = tmp / "empty.lance"
    path.mkdir()
    return [path], "cannot read the Lance dataset"


def lance_text_column(tmp: Path):
    path = _lance(tmp / "t.lance", text=["a", "b"], vector=_fixed(_vectors(2, 4)))
    return [path, "--column", "text"], "column 'text' is string; expected a list"


def lance_missing_id_column(tmp: Path):
    path = _lance(tmp / "m.lance", vector=_fixed(_vectors(2, 4)))
    return [path, "--id-column", "doc"], "--id-column 'doc' not found; columns are: vector"


CASES: list[Maker] = [
    truncated_npy,
    wrong_magic,
    empty_npy,
    corrupt_npy_header,
    one_dimensional,
    three_dimensional,
    object_dtype,
    string_dtype,
    complex_dtype,
    integer_dtype,
    structured_dtype,
    zero_rows,
    zero_columns,
    ragged_lists,
    every_vector_null,
    mismatched_dimensions_across_files,
    mismatched_list_lengths_across_files,
    corrupt_parquet_footer,
    not_parquet,
    missing_column,
    missing_id_column,
    several_list_columns,
    string_column_in_wide_layout,
    integer_list_values,
    empty_parquet,
    empty_directory,
    unknown_extension,
    missing_file,
    npz_several_arrays,
    npz_missing_key,
    npz_not_a_zip,
    npz_without_arrays,
    npz_truncated_member,
    key_on_npy,
    column_on_npy,
    k_zero,
    negative_seed,
    unknown_objective,
    unknown_format,
    non_integer_k,
    jsonl_ragged,
    jsonl_broken_record,
    jsonl_string_values,
    jsonl_missing_column,
    csv_not_a_number,
    csv_header_only,
    csv_short_row,
    csv_text_column_in_wide_layout,
    csv_line_break_in_a_value,
    truncated_fvecs,
    fvecs_wrong_first_dimension,
    fvecs_inconsistent_dimensions,
    fbin_wrong_header,
    fbin_header_of_another_layout,
    u8bin_shorter_than_its_header,
    i8bin_without_rows,
    safetensors_several_tables,
    safetensors_missing_key,
    safetensors_three_dimensional,
    safetensors_integer_ids,
    safetensors_truncated,
    safetensors_not_a_header,
    hdf5_not_hdf5,
    hdf5_missing_key,
    hdf5_several_datasets_and_no_train,
    hdf5_neighbor_ids,
    lance_not_a_dataset,
    lance_text_column,
    lance_missing_id_column,
]


@pytest.mark.parametrize("make", CASES, ids=[case.__name__ for case in CASES])
def test_malformed_input_is_one_line_and_exit_2(cli, tmp_path, make):
    args, expected = make(tmp_path)
    result = cli("check", *args)
    assert result.code == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("embaudit: error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    if not expected.startswith(("'", "-")):  # input errors name the file at fault
        assert Path(args[0]).name in result.stderr


def test_there_are_at_least_twenty_distinct_cases():
    assert len({case.__name__ for case in CASES}) >= 20


def test_a_fifo_is_rejected_without_blocking(cli, tmp_path):
    import os

    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    result = cli("check", fifo)
    assert result.code == 2
    assert "not a regular file" in result.stderr


def test_a_newline_in_a_file_name_keeps_the_error_on_one_line(cli, tmp_path):
    path = tmp_path / "new\nline.npy"
    path.write_bytes(b"junk")
    result = cli("check", path)
    assert result.code == 2
    assert result.stderr.count("\n") == 1
    assert "new\\nline.npy" in result.stderr


def test_ids_of_any_arrow_type_reach_the_json_report(cli, tmp_path):
    vectors = np.ones((3, 2), dtype=np.float32)
    vectors[1] = 0.0
    table = pa.table({"id": pa.array([b"a", b"\xff", b"c"]), "emb": _fixed(vectors)})
    pq.write_table(table, tmp_path / "b.parquet")
    result = cli("check", tmp_path / "b.parquet", "-f", "json")
    assert result.code == 1, result.stderr
    ea002 = next(c for c in result.json()["checks"] if c["code"] == "EA002")
    assert ea002["metrics"]["ids"] == ["\\xff"]


def test_id_columns_of_different_types_across_files(cli, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    vectors = _fixed(_vectors(2, 3))
    pq.write_table(pa.table({"id": [1, 2], "emb": vectors}), folder / "a.parquet")
    pq.write_table(pa.table({"id": ["x", "y"], "emb": vectors}), folder / "b.parquet")
    result = cli("check", folder)
    assert result.code == 2
    assert "b.parquet: id column 'id' (string) differs" in result.stderr


def test_absurd_shapes_in_a_header_are_input_errors(cli, tmp_path):
    for shape, expected in (((2**62, 2**62), "truncated"), ((-1, 4), "negative")):
        path = tmp_path / "huge.npy"
        header = {"descr": "<f4", "fortran_order": False, "shape": shape}
        with path.open("wb") as handle:
            np.lib.format.write_array_header_1_0(handle, header)
            handle.write(b"\0" * 64)
        result = cli("check", path)
        assert result.code == 2, result.stderr
        assert expected in result.stderr


def test_a_float64_row_whose_norm_overflows_is_non_finite(cli, tmp_path):
    values = np.ones((5, 4))
    values[2] = 1.5e308
    np.save(tmp_path / "big.npy", values)
    report = cli("check", tmp_path / "big.npy", "-f", "json").json()
    ea001 = next(c for c in report["checks"] if c["code"] == "EA001")
    assert ea001["metrics"]["rows"] == [2]


def test_ragged_python_lists_are_input_errors():
    import embaudit

    with pytest.raises(embaudit.InputError, match=r"\(n, d\) floats"):
        embaudit.audit([[1.0, 2.0], [3.0]])


def _null_vector(tmp: Path) -> Path:
    emb = pa.array([[1.0, 2.0], None, [3.0, 4.0], [5.0, 1.0]], type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": ["a", "b", "c", "d"], "emb": emb}), tmp / "n.parquet")
    return tmp / "n.parquet"


def _null_inside_vector(tmp: Path) -> Path:
    emb = pa.array([[1.0, 2.0], [3.0, None], [3.0, 4.0], [5.0, 1.0]], pa.list_(pa.float32(), 2))
    pq.write_table(pa.table({"id": ["a", "b", "c", "d"], "emb": emb}), tmp / "ni.parquet")
    return tmp / "ni.parquet"


def _null_in_wide_column(tmp: Path) -> Path:
    table = pa.table(
        {"id": ["a", "b", "c", "d"], "x": [1.0, None, 3.0, 5.0], "y": [2.0, 1.0, 4.0, 1.0]}
    )
    pq.write_table(table, tmp / "nw.parquet")
    return tmp / "nw.parquet"


@pytest.mark.parametrize("make", [_null_vector, _null_inside_vector, _null_in_wide_column])
def test_nulls_are_non_finite_rows_not_input_errors(cli, tmp_path, make):
    result = cli("check", make(tmp_path), "-f", "json")
    assert result.code == 1, result.stderr
    report = result.json()
    ea001 = next(c for c in report["checks"] if c["code"] == "EA001")
    assert ea001["metrics"]["rows"] == [1] and ea001["metrics"]["ids"] == ["b"]
    assert report["input"]["n"] == 4

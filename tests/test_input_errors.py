"""Malformed input: one line on stderr naming the file and the problem, exit 2, no traceback.

:data:`CASES` is the specification: each bad input is written under tmp_path by a small
maker, which returns the arguments of ``embaudit check``, and the one error line must hold what
the case says: the file, member or flag at fault and the problem, in that order ("…" standing
for any text between).
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

Make = Callable[[Path], list[str | Path]]


class Case(NamedTuple):
    id: str
    make: Make  # writes the bad input under tmp_path and returns the arguments of `check`
    says: str  # the error line holds these fragments, in this order ("…": any text between)


# Makers --------------------------------------------------------------------------------------


def writes(write: Callable[..., object]) -> Callable[..., Make]:
    """Makers from ``write(path, ...)``: ``maker("name flags", ...)`` writes tmp_path/name and
    returns the arguments of ``check``, the path and then the flags."""

    def maker(command: str, *data: Any, **named: Any) -> Make:
        name, *flags = command.split(" ")

        def make(tmp: Path) -> list[str | Path]:
            write(tmp / name, *data, **named)
            return [tmp / name, *flags]

        return make

    return maker


raw = writes(Path.write_bytes)
text = writes(Path.write_text)
npz = writes(np.savez)


@writes
def npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.lib.format.write_array(handle, array, allow_pickle=True)


@writes
def npy_header(path: Path, shape: tuple[int, ...]) -> None:
    """A .npy header declaring ``shape``, then 64 bytes."""
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<f4", "fortran_order": False, "shape": shape}
        )
        handle.write(b"\0" * 64)


@writes
def zip_archive(path: Path, **members: str) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)


@writes
def parquet(path: Path, **columns: pa.Array | list) -> None:
    pq.write_table(pa.table(columns), path)


@writes
def directory(path: Path, *empty_files: str, **parquet_files: pa.Table) -> None:
    """A directory of empty files and parquet files (``part_0=`` writes part-0.parquet)."""
    path.mkdir()
    for name in empty_files:
        (path / name).write_text("")
    for name, table in parquet_files.items():
        pq.write_table(table, path / f"{name.replace('_', '-')}.parquet")


@writes
def shards(path: Path, **files: np.ndarray | pa.Table | str) -> None:
    """A directory of files named by the keywords (``a_npy=`` writes a.npy): arrays as .npy or
    .npz, tables as parquet, text as it is."""
    path.mkdir()
    for key, content in files.items():
        name = path / key.replace("_", ".")
        if isinstance(content, str):
            name.write_text(content)
        elif isinstance(content, pa.Table):
            pq.write_table(content, name)
        elif name.suffix == ".npz":
            np.savez(name, x=content)
        else:
            np.save(name, content)


@writes
def fifo(path: Path) -> None:
    os.mkfifo(path)  # the check must refuse it without blocking on a read


@writes
def safetensors(path: Path, **tensors: tuple[str, np.ndarray]) -> None:
    from tests.test_sources_report import write_safetensors

    write_safetensors(path, tensors)


@writes
def hdf5(path: Path, **datasets: np.ndarray) -> None:
    with pytest.importorskip("h5py").File(path, "w") as file:
        for key, data in datasets.items():
            file.create_dataset(key, data=data)


@writes
def lance(path: Path, **columns: pa.Array | list) -> None:
    pytest.importorskip("lance").write_dataset(pa.table(columns), path)


def cut(make: Make, keep: Callable[[bytes], bytes]) -> Make:
    """``make``'s file with its bytes replaced by ``keep(bytes)``."""

    def cutting(tmp: Path) -> list[str | Path]:
        args = make(tmp)
        path = Path(args[0])
        path.write_bytes(keep(path.read_bytes()))
        return args

    return cutting


def _vectors(n: int = 6, d: int = 4) -> np.ndarray:
    return np.arange(n * d, dtype=np.float32).reshape(n, d) + 1


def _fixed(vectors: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])


def _ids(values: list) -> pa.Table:
    return pa.table({"id": values, "emb": _fixed(_vectors(2, 3))})


def _fvecs(vectors: np.ndarray) -> bytes:
    n, d = vectors.shape
    header = np.full((n, 1), d, dtype="<i4").view("<f4")
    return np.hstack([header, vectors.astype("<f4")]).tobytes()


def _bigann(n: int, d: int, values: np.ndarray) -> bytes:
    return np.array([n, d], dtype="<u4").tobytes() + values.astype("<f4").tobytes()


V = _vectors()

# The specification ---------------------------------------------------------------------------

CASES = [
    # .npy
    Case(
        "truncated_npy", cut(npy("t.npy", _vectors(100, 8)), lambda b: b[:-100]), "t.npy: truncated"
    ),
    Case(
        "wrong_magic", raw("m.npy", b"PK\x03\x04 this is not an npy file at all"), "m.npy … magic"
    ),
    Case("empty_npy", raw("e.npy", b""), "e.npy … magic"),
    Case(
        "corrupt_npy_header",
        cut(npy("h.npy", V), lambda b: b[:10] + b"{'descr': "[::-1] + b[20:]),
        "h.npy … header",
    ),
    Case("one_dimensional", npy("1d.npy", np.ones(10, np.float32)), "1d.npy … 1 dimension"),
    Case(
        "three_dimensional", npy("3d.npy", np.ones((2, 3, 4), np.float32)), "3d.npy … 3 dimension"
    ),
    Case(
        "object_dtype",
        npy("o.npy", np.array([[1.0, "a"], [2.0, None]], dtype=object)),
        "o.npy … Python objects",
    ),
    Case("string_dtype", npy("s.npy", np.array([["a", "b"], ["c", "d"]])), "s.npy … strings"),
    Case("complex_dtype", npy("c.npy", np.ones((3, 2), np.complex64)), "c.npy … complex"),
    Case("integer_dtype", npy("i.npy", np.ones((3, 2), np.int64)), "i.npy … astype(np.float32)"),
    Case(
        "structured_dtype",
        npy("st.npy", np.zeros((3, 2), [("a", "f4"), ("b", "f4")])),
        "st.npy … structured",
    ),
    Case("zero_rows", npy("z.npy", np.ones((0, 8), np.float32)), "z.npy … no rows"),
    Case("zero_columns", npy("zc.npy", np.ones((8, 0), np.float32)), "zc.npy … zero dimensions"),
    Case("absurd_shape", npy_header("huge.npy", (2**62, 2**62)), "huge.npy: truncated"),
    Case("negative_shape", npy_header("huge.npy", (-1, 4)), "huge.npy … negative"),
    Case("fifo", fifo("pipe.npy"), "pipe.npy: not a regular file"),
    Case("newline_in_file_name", raw("new\nline.npy", b"junk"), "new\\nline.npy"),
    # parquet
    Case(
        "ragged_lists",
        parquet("r.parquet", emb=[[1.0, 2.0], [1.0, 2.0], [1.0, 2.0, 3.0]]),
        "r.parquet … ragged vectors (3 values, expected 2) at row 2",
    ),
    Case(
        "every_vector_null",
        parquet("an.parquet", emb=pa.array([None, None], pa.list_(pa.float32()))),
        "an.parquet: column 'emb': every vector is null",
    ),
    Case(
        "mismatched_dimensions_across_files",
        directory(
            "parts",
            part_0=pa.table({"emb": _fixed(_vectors(4, 8))}),
            part_1=pa.table({"emb": _fixed(_vectors(4, 16))}),
        ),
        "parts/part-1.parquet: column 'emb' has dimension 16",
    ),
    Case(
        "mismatched_list_lengths_across_files",
        directory(
            "lists",
            a=pa.table({"emb": [[1.0, 2.0]] * 3}),
            b=pa.table({"emb": [[1.0, 2.0, 3.0]] * 3}),
        ),
        "lists/b.parquet: column 'emb': ragged vectors (3 values, expected 2)",
    ),
    Case(
        "id_columns_of_different_types_across_files",
        directory("mixed", a=_ids([1, 2]), b=_ids(["x", "y"])),
        "mixed/b.parquet: id column 'id' (string) differs",
    ),
    Case(
        "corrupt_parquet_footer",
        cut(parquet("f.parquet", emb=_fixed(V)), lambda b: b[:-12]),
        "f.parquet: cannot read parquet",
    ),
    Case("not_parquet", text("text.parquet", "id,x\n1,2\n"), "text.parquet: cannot read parquet"),
    Case(
        "missing_column",
        parquet("c.parquet --column vectors", emb=_fixed(V)),
        "c.parquet: --column 'vectors' not found; columns are: emb",
    ),
    Case(
        "missing_id_column",
        parquet("c.parquet --id-column doc", emb=_fixed(V)),
        "c.parquet: --id-column 'doc' not found",
    ),
    Case(
        "several_list_columns",
        parquet("two.parquet", a=_fixed(V), b=_fixed(V)),
        "two.parquet: several list columns (a, b); choose the vectors with --column",
    ),
    Case(
        "string_column_in_wide_layout",
        parquet("w.parquet", text=["x", "y"], a=[1.0, 2.0]),
        "w.parquet: column 'text' is string",
    ),
    Case(
        "integer_list_values",
        parquet("il.parquet", emb=[[1, 2], [3, 4]]),
        "il.parquet … holds int64 values",
    ),
    Case(
        "empty_parquet",
        parquet("empty.parquet", emb=pa.array([], pa.list_(pa.float32(), 4))),
        "empty.parquet … no rows",
    ),
    Case(
        "empty_directory",
        directory("nothing", "_SUCCESS"),
        "nothing: directory holds no vector files",
    ),
    # directories of shards
    Case(
        "directory_of_mixed_kinds",
        shards("exports", a_npy=V, b_npz=V, c_parquet=pa.table({"e": _fixed(V)}), notes_txt="x"),
        "exports: mixed kinds (.npy: 1, .npz: 1, .parquet: 1) and files that hold no vectors "
        "(notes.txt); give one file or a directory of one kind",
    ),
    Case(
        "stray_file_beside_shards",
        shards("stray", a_npy=V, b_npy=V, README="read me"),
        "stray: files that hold no vectors (README)",
    ),
    Case(
        "stray_file_beside_parquet_shards",
        shards("pq", a_parquet=pa.table({"e": _fixed(V)}), b_json="{}"),
        "pq: files that hold no vectors (b.json)",
    ),
    Case(
        "shards_of_different_dimensions",
        shards("dims", a_npy=V, b_npy=_vectors(6, 5)),
        "dims/b.npy: has dimension 5, but … dims/a.npy has 4",
    ),
    Case(
        "shards_of_different_dtypes",
        shards("types", a_npy=V, b_npy=V.astype(np.float16)),
        "types/b.npy: holds float16, but … types/a.npy holds float32",
    ),
    Case(
        "ids_from_on_parquet",
        parquet("own.parquet --ids-from own.parquet", emb=_fixed(V)),
        "--ids-from applies to … own.parquet has its own (--id-column)",
    ),
    # any path
    Case(
        "unknown_extension", text("vectors.txt", "1,2,3\n"), "vectors.txt: unknown file type '.txt'"
    ),
    Case("missing_file", lambda tmp: [tmp / "absent.npy"], "absent.npy: no such file"),
    # .npz
    Case(
        "npz_several_arrays",
        npz("s.npz", users=V, items=V),
        "s.npz … holds 2 arrays (items, users); pick one with --key",
    ),
    Case(
        "npz_missing_key",
        npz("k.npz --key items", users=V),
        "k.npz: --key 'items' not found; the archive holds: users",
    ),
    Case("npz_not_a_zip", raw("bad.npz", b"\x93NUMPY not a zip"), "bad.npz: not a readable .npz"),
    Case(
        "npz_without_arrays",
        zip_archive("none.npz", **{"readme.txt": "hello"}),
        "none.npz … holds no arrays",
    ),
    Case(
        "npz_truncated_member",
        cut(npz("tr.npz", x=_vectors(200, 16)), lambda b: b[:2000] + b[-200:]),
        "tr.npz[x]: corrupt archive",
    ),
    # flags
    Case("key_on_npy", npy("a.npy --key x", V), "--key applies to .npz … a.npy"),
    Case("column_on_npy", npy("a.npy --column x", V), "--column applies to parquet … a.npy"),
    Case("k_zero", npy("a.npy -k 0", V), "-k must be an integer in [1, 1000], got 0"),
    Case("negative_seed", npy("a.npy --seed -1", V), "--seed must be an integer >= 0, got -1"),
    Case("unknown_objective", npy("a.npy --trained-with euclid", V), "'--trained-with'"),
    Case("unknown_format", npy("a.npy --format xml", V), "'--format'"),
    Case("non_integer_k", npy("a.npy -k ten", V), "'-k'"),
    # JSON Lines and CSV
    Case(
        "jsonl_ragged",
        text("r.jsonl", '{"e": [1, 2]}\n\n{"e": [1, 2]}\n{"e": [1, 2, 3]}\n'),
        "r.jsonl … ragged vectors (3 values, expected 2) at row 2 (line 4)",
    ),
    Case(
        "jsonl_broken_record",
        text("b.jsonl", '{"e": [1, 2]}\n{"e": [1, 2\n'),
        "b.jsonl: cannot parse JSON Lines",
    ),
    Case(
        "jsonl_string_values",
        text("s.jsonl", '{"e": ["a", "b"]}\n'),
        "s.jsonl: column 'e' holds string values",
    ),
    Case(
        "jsonl_missing_column",
        text("m.jsonl --column embedding", '{"e": [1, 2]}\n'),
        "m.jsonl: --column 'embedding' not found; columns are: e",
    ),
    Case(
        "csv_not_a_number",
        text("n.csv", 'e\n"[1, 2]"\n"[1, x]"\n'),
        "n.csv … 'x' is not a number, at row 1 (line 3)",
    ),
    Case("csv_header_only", text("h.csv", "a,b\n"), "h.csv: no rows"),
    Case("csv_short_row", text("c.csv", "a,b\n1,2\n3\n"), "c.csv … Expected 2 columns, got 1"),
    Case(
        "csv_text_column_in_wide_layout",
        text("t.csv", "id,text,a\n1,x,0.5\n"),
        "t.csv: column 'text' is string; the wide layout needs one float column",
    ),
    Case(
        "csv_line_break_in_a_value",
        text("q.csv", 'a,b\n1,"x\ny"\n'),
        "q.csv … a line break inside a quoted value?",
    ),
    # .fvecs and the big-ann-benchmarks binaries
    Case(
        "truncated_fvecs",
        raw("t.fvecs", _fvecs(_vectors(10, 8))[:-7]),
        "t.fvecs … is not a whole number of rows of 36 bytes",
    ),
    Case(
        "fvecs_wrong_first_dimension",
        raw("w.fvecs", np.int32(1 << 30).tobytes() + b"\0" * 60),
        "w.fvecs: wrong header: the first row declares d = 1,073,741,824",
    ),
    Case(
        "fvecs_inconsistent_dimensions",
        cut(
            raw("i.fvecs", _fvecs(_vectors(10, 8))),
            lambda b: b[:-36] + np.int32(7).tobytes() + b[-32:],
        ),
        "i.fvecs … row 9 declares d = 7, the first row d = 8",
    ),
    Case(
        "fbin_wrong_header",
        raw("h.fbin", _bigann(7, 4, V)),
        "h.fbin: truncated: the header promises 7 × 4 float32",
    ),
    Case(
        "fbin_header_of_another_layout",
        raw("l.fbin", _bigann(6, 2, V)),
        "l.fbin: wrong header: the header promises 6 × 2 float32",
    ),
    Case(
        "u8bin_shorter_than_its_header",
        raw("s.u8bin", b"\1\0"),
        "s.u8bin … shorter than the 8-byte header",
    ),
    Case(
        "i8bin_without_rows",
        raw("z.i8bin", np.array([0, 4], dtype="<u4").tobytes()),
        "z.i8bin … no rows",
    ),
    # .safetensors
    Case(
        "safetensors_several_tables",
        safetensors("s.safetensors", a=("F32", V), b=("F32", V)),
        "s.safetensors … holds 2 2-D tensors (a (6 × 4 F32), b (6 × 4 F32)); pick one with --key",
    ),
    Case(
        "safetensors_missing_key",
        safetensors("k.safetensors --key emb", a=("F32", V)),
        "k.safetensors: --key 'emb' not found; the file holds: a (6 × 4 F32)",
    ),
    Case(
        "safetensors_three_dimensional",
        safetensors("3.safetensors --key a", a=("F32", V.reshape(2, 3, 4))),
        "3.safetensors[a]: the tensor has 3 dimension(s), shape (2, 3, 4)",
    ),
    Case(
        "safetensors_integer_ids",
        safetensors("i.safetensors", ids=("I64", np.ones((3, 2), np.int64))),
        "i.safetensors[ids]: the tensor holds I64 values; expected F16, BF16, F32, F64, I8 or U8",
    ),
    Case(
        "safetensors_truncated",
        cut(safetensors("t.safetensors", a=("F32", _vectors(50, 8))), lambda b: b[:-10]),
        "t.safetensors[a]: truncated: the tensor ends at byte 1,600 of data",
    ),
    Case(
        "safetensors_not_a_header",
        raw("n.safetensors", b"\x93NUMPY\x01\x00 this is an npy file"),
        "n.safetensors: not a safetensors file: the header length",
    ),
    # HDF5 and Lance (skipped without h5py, pylance)
    Case(
        "hdf5_not_hdf5",
        raw("n.h5", b"\x89HDF but not really" * 8),
        "n.h5: not a readable HDF5 file",
    ),
    Case(
        "hdf5_missing_key",
        hdf5("k.hdf5 --key base", train=V, test=_vectors(2, 4)),
        "k.hdf5: --key 'base' not found; the file holds: test (2 × 4 float32)",
    ),
    Case(
        "hdf5_several_datasets_and_no_train",
        hdf5("s.h5", items=V, users=V),
        "s.h5 … holds 2 2-D datasets (items (6 × 4 float32), users (6 × 4 float32))",
    ),
    Case(
        "hdf5_neighbor_ids",
        hdf5("i.hdf5 --key neighbors", train=V, neighbors=np.ones((3, 2), np.int32)),
        "i.hdf5[neighbors]: dataset holds integers (dtype int32)",
    ),
    Case(
        "lance_not_a_dataset",
        directory("empty.lance"),
        "empty.lance: cannot read the Lance dataset",
    ),
    Case(
        "lance_text_column",
        lance("t.lance --column text", text=["a", "b"], vector=_fixed(_vectors(2, 4))),
        "t.lance: column 'text' is string; expected a list",
    ),
    Case(
        "lance_missing_id_column",
        lance("m.lance --id-column doc", vector=_fixed(_vectors(2, 4))),
        "m.lance: --id-column 'doc' not found; columns are: vector",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_naming_the_fault_and_exit_2(cli, tmp_path, case):
    result = cli("check", *case.make(tmp_path))
    assert result.code == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    line = result.stderr.removesuffix("\n")
    assert line.startswith("embaudit: error: ") and line != "embaudit: error: "
    fragments = [re.escape(fragment.strip()) for fragment in case.says.split("…")]
    assert re.search(".*".join(fragments), line), f"{case.says!r} not in {line!r}"


def test_there_are_at_least_twenty_distinct_cases():
    assert len({case.id for case in CASES}) == len(CASES) >= 20


# Not errors: what a report makes of odd but readable input ---------------------------------


def test_ids_of_any_arrow_type_reach_the_json_report(cli, tmp_path):
    vectors = np.ones((3, 2), dtype=np.float32)
    vectors[1] = 0.0
    table = pa.table({"id": pa.array([b"a", b"\xff", b"c"]), "emb": _fixed(vectors)})
    pq.write_table(table, tmp_path / "b.parquet")
    result = cli("check", tmp_path / "b.parquet", "-f", "json")
    assert result.code == 1, result.stderr
    ea002 = next(c for c in result.json()["checks"] if c["code"] == "EA002")
    assert ea002["metrics"]["ids"] == ["\\xff"]


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


NULLS = {
    "null_vector": {
        "emb": pa.array([[1.0, 2.0], None, [3.0, 4.0], [5.0, 1.0]], pa.list_(pa.float32()))
    },
    "null_inside_vector": {
        "emb": pa.array(
            [[1.0, 2.0], [3.0, None], [3.0, 4.0], [5.0, 1.0]], pa.list_(pa.float32(), 2)
        )
    },
    "null_in_wide_column": {"x": [1.0, None, 3.0, 5.0], "y": [2.0, 1.0, 4.0, 1.0]},
}


@pytest.mark.parametrize("columns", NULLS.values(), ids=NULLS.keys())
def test_nulls_are_non_finite_rows_not_input_errors(cli, tmp_path, columns):
    pq.write_table(pa.table({"id": ["a", "b", "c", "d"], **columns}), tmp_path / "n.parquet")
    result = cli("check", tmp_path / "n.parquet", "-f", "json")
    assert result.code == 1, result.stderr
    report = result.json()
    ea001 = next(c for c in report["checks"] if c["code"] == "EA001")
    assert ea001["metrics"]["rows"] == [1] and ea001["metrics"]["ids"] == ["b"]
    assert report["input"]["n"] == 4

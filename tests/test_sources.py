"""Loaders: every format and layout yields the same rows through chunks and take."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embaudit.errors import InputError
from embaudit.sources import ArraySource, ParquetSource, open_source


def _reference(fixtures):
    return np.load(fixtures / "sphere.npy")


def _stream(source, chunk_rows=None):
    chunks = list(source.chunks(chunk_rows))
    starts = [c.start for c in chunks]
    assert starts == sorted(starts) and starts[0] == 0
    assert all(a.stop == b.start for a, b in itertools.pairwise(chunks))
    assert chunks[-1].stop == source.n
    return np.concatenate([c.values for c in chunks])


@pytest.mark.parametrize("name", ["fixed_size_list", "list", "wide"])
def test_parquet_layouts_read_the_same_vectors(fixtures, name):
    expected = _reference(fixtures)[:1000]
    source = open_source(fixtures / f"{name}.parquet")
    assert (source.n, source.d, source.dtype) == (1000, 64, np.dtype(np.float32))
    assert source.id_column == "id"
    np.testing.assert_array_equal(_stream(source, 128), expected)
    rows = np.array([999, 0, 500, 499, 3])
    np.testing.assert_array_equal(source.take(rows), expected[rows])
    assert source.ids(rows) == [f"doc-{r:05d}" for r in rows]
    assert source.describe()["layout"] == name


def test_npy_is_memory_mapped_and_streams_in_chunks(fixtures):
    source = open_source(fixtures / "sphere.npy")
    assert isinstance(source, ArraySource)
    assert source._mapping is not None
    expected = _reference(fixtures)
    np.testing.assert_array_equal(_stream(source, 333), expected)
    np.testing.assert_array_equal(source.take([5, 1, 1999]), expected[[5, 1, 1999]])
    assert source.ids([1, 2]) is None


def test_chunks_remain_readable_after_their_pages_are_released(fixtures):
    source = open_source(fixtures / "sphere.npy")
    chunks = [c.values for c in source.chunks(100)]
    np.testing.assert_array_equal(np.concatenate(chunks), _reference(fixtures))


@pytest.mark.parametrize("compress", [False, True])
def test_npz_members_stored_or_compressed(tmp_path, compress):
    users = np.random.default_rng(1).standard_normal((40, 6)).astype(np.float32)
    items = users[::-1] * 2
    path = tmp_path / "towers.npz"
    (np.savez_compressed if compress else np.savez)(path, users=users, items=items)
    source = open_source(path, key="items")
    assert source.path == f"{path}[items]"
    assert (source._mapping is None) == compress
    np.testing.assert_array_equal(_stream(source, 7), items)


def test_npz_with_one_array_needs_no_key(tmp_path):
    vectors = np.ones((3, 2), dtype=np.float64)
    np.savez(tmp_path / "one.npz", vectors)
    np.testing.assert_array_equal(_stream(open_source(tmp_path / "one.npz")), vectors)


@pytest.mark.parametrize("dtype", ["<f2", ">f2", "<f4", ">f4", "<f8", ">f8"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_byte_order_and_memory_order_are_normalised(tmp_path, dtype, order):
    vectors = np.arange(60, dtype=np.float64).reshape(12, 5) / 7
    stored = np.asarray(vectors, dtype=dtype, order=order)
    np.save(tmp_path / "v.npy", stored)
    source = open_source(tmp_path / "v.npy")
    assert source.dtype == np.dtype(dtype).newbyteorder("=")
    streamed = _stream(source, 5)
    assert streamed.dtype.isnative and streamed.flags.c_contiguous
    np.testing.assert_array_equal(streamed, stored.astype(np.float64))
    np.testing.assert_array_equal(source.take([11, 0]), stored[[11, 0]])


def test_parquet_directory_reads_files_in_path_order_and_skips_hidden(tmp_path):
    rng = np.random.default_rng(2)
    parts = [rng.standard_normal((n, 3)).astype(np.float32) for n in (5, 1, 7)]
    folder = tmp_path / "export"
    (folder / "day=2").mkdir(parents=True)
    names = ["part-0.parquet", "part-1.parquet", "day=2/part-0.parquet"]
    for name, part in zip(names, parts, strict=True):
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(part.ravel()), 3)
        pq.write_table(pa.table({"v": vectors}), folder / name, row_group_size=2)
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-9.parquet").write_text("partial")
    source = open_source(folder)
    assert isinstance(source, ParquetSource)
    # day=2/part-0 sorts before part-0: path order, so the layout is reproducible.
    expected = np.concatenate([parts[2], parts[0], parts[1]])
    assert source.n == 13 and source.describe()["files"] == 3
    np.testing.assert_array_equal(_stream(source, 4), expected)
    rows = np.array([12, 0, 7, 6, 3])
    np.testing.assert_array_equal(source.take(rows), expected[rows])


def test_parquet_float16_and_float64_values(tmp_path):
    for value_type, dtype in ((pa.float16(), np.float16), (pa.float64(), np.float64)):
        vectors = np.linspace(-2, 2, 24).reshape(6, 4).astype(dtype)
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), value_type), 4)
        path = tmp_path / f"{np.dtype(dtype).name}.parquet"
        pq.write_table(pa.table({"e": column}), path)
        source = open_source(path)
        assert source.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(_stream(source), vectors)


def test_wide_layout_uses_every_float_column_except_the_id(tmp_path):
    path = tmp_path / "wide.parquet"
    table = pa.table({"key": [10, 11], "a": [1.0, 2.0], "b": pa.array([3.0, 4.0], pa.float32())})
    pq.write_table(table, path)
    source = open_source(path, id_column="key")
    assert source.d == 2 and source.dtype == np.float64
    np.testing.assert_array_equal(_stream(source), [[1.0, 3.0], [2.0, 4.0]])
    assert source.ids([1]) == [11]


def test_large_list_column(tmp_path):
    path = tmp_path / "large.parquet"
    column = pa.array([[1.0, 2.0], [3.0, 4.0]], type=pa.large_list(pa.float32()))
    pq.write_table(pa.table({"e": column}), path)
    np.testing.assert_array_equal(_stream(open_source(path)), [[1, 2], [3, 4]])


def test_in_memory_arrays_are_sources():
    vectors = np.eye(3, dtype=np.float32)
    source = open_source(vectors)
    assert source.path is None and source.format == "array"
    np.testing.assert_array_equal(_stream(source, 2), vectors)


def test_take_rejects_positions_outside_the_source(fixtures):
    source = open_source(fixtures / "sphere.npy")
    with pytest.raises(IndexError):
        source.take([2000])


def test_parquet_streaming_holds_a_bounded_number_of_row_groups(tmp_path):
    rows_per_group, groups, d = 16384, 12, 64
    vectors = np.random.default_rng(5).standard_normal((rows_per_group * groups, d))
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), d)
    path = tmp_path / "groups.parquet"
    pq.write_table(pa.table({"e": column}), path, row_group_size=rows_per_group)
    group_bytes = rows_per_group * d * 4
    baseline = pa.total_allocated_bytes()
    peak = 0
    for chunk in open_source(path).chunks(1024):
        assert len(chunk.values)
        peak = max(peak, pa.total_allocated_bytes() - baseline)
    assert peak < 4 * group_bytes  # a whole-file read would reach 12 row groups


@pytest.mark.parametrize("threads", [1, 3])
def test_parquet_take_decodes_row_groups_on_threads_into_the_rows_asked(
    tmp_path, monkeypatch, threads
):
    # Rows asked out of order, repeated, across files and row groups; with three threads each
    # row group is read through a handle of its own, and the file handles kept stay the same.
    import embaudit.sources.parquet as parquet

    monkeypatch.setattr(parquet, "TAKE_THREADS", threads)
    monkeypatch.setattr(parquet, "available_cores", lambda: 4)
    rng = np.random.default_rng(8)
    vectors = rng.standard_normal((300, 5)).astype(np.float32)
    for part in range(2):
        rows = vectors[150 * part : 150 * (part + 1)]
        column = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), 5)
        pq.write_table(
            pa.table({"e": column}), tmp_path / f"part-{part}.parquet", row_group_size=16
        )
    source = open_source(tmp_path)
    assert source.n == 300
    asked = np.concatenate([rng.permutation(300)[:120], [7, 7, 299, 0]])
    np.testing.assert_array_equal(source.take(asked), vectors[asked])
    kept = dict(source._handles)
    np.testing.assert_array_equal(source.take(asked[::-1]), vectors[asked[::-1]])
    assert source._handles.keys() == kept.keys()


def test_parquet_take_on_threads_names_the_file_of_a_corrupt_row_group(tmp_path, monkeypatch):
    import embaudit.sources.parquet as parquet

    monkeypatch.setattr(parquet, "available_cores", lambda: 2)
    values = np.random.default_rng(9).standard_normal(64 * 4).astype(np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(values), 4)
    path = tmp_path / "broken.parquet"
    pq.write_table(pa.table({"e": column}), path, row_group_size=16, compression="none")
    source = open_source(path)
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8  # the metadata, its length and PAR1
    data[4 : len(data) - footer] = bytes(len(data) - footer - 4)  # every page, not the footer
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"broken\.parquet: cannot read parquet: .*thrift"):
        source.take(np.arange(0, 64, 5))


def _with_nulls(value_type: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Nine 3-d vectors, row 0 and row 5 null, row 7 with a null value; and the rows expected."""
    rows: list[list[float | None] | None] = [
        [float(3 * i + j + 1) for j in range(3)] for i in range(9)
    ]
    rows[0] = rows[5] = None
    rows[7][1] = None  # type: ignore[index]
    expected = np.array(
        [[np.nan] * 3 if r is None else [np.nan if x is None else x for x in r] for r in rows]
    )
    return pa.array(rows, type=value_type), expected


@pytest.mark.parametrize(
    "value_type",
    [pa.list_(pa.float32()), pa.large_list(pa.float64()), pa.list_(pa.float16(), 3)],
    ids=["list", "large_list", "fixed_size_list"],
)
def test_null_vectors_and_values_read_as_nan_in_every_fragment(tmp_path, monkeypatch, value_type):
    import embaudit.sources.parquet as parquet

    column, expected = _with_nulls(value_type)
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"e": column}), path, row_group_size=2)
    monkeypatch.setattr(parquet, "FRAGMENT_BYTES", 1)  # one fragment per row group
    source = open_source(path)
    assert (source.n, source.d) == (9, 3)
    assert len(source.fragments()) == 5
    by_fragment = [c.values for f in source.fragments() for c in source.read(f, 1)]
    np.testing.assert_array_equal(np.concatenate(by_fragment), expected)
    np.testing.assert_array_equal(_stream(source, 4), expected)
    rows = np.array([7, 0, 5, 6])
    np.testing.assert_array_equal(source.take(rows), expected[rows])


def test_null_values_in_wide_columns_read_as_nan(tmp_path):
    path = tmp_path / "wide.parquet"
    table = pa.table({"a": [1.0, None, 3.0], "b": pa.array([None, 5.0, 6.0], pa.float16())})
    pq.write_table(table, path, row_group_size=2)
    expected = [[1.0, np.nan], [np.nan, 5.0], [3.0, 6.0]]
    source = open_source(path)
    np.testing.assert_array_equal(_stream(source, 2), expected)
    np.testing.assert_array_equal(source.take([1, 2]), expected[1:])


def test_the_dimension_comes_from_the_first_vector_that_is_not_null(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    list_type = pa.list_(pa.float32())
    pq.write_table(pa.table({"e": pa.array([None] * 3, list_type)}), folder / "a.parquet")
    emb = pa.array([None, [1.0, 2.0], [3.0, 4.0]], list_type)
    pq.write_table(pa.table({"e": emb}), folder / "b.parquet")
    source = open_source(folder)
    assert (source.n, source.d) == (6, 2)
    assert np.isnan(_stream(source)[:4]).all()


def test_a_ragged_vector_after_a_null_one_is_named_by_its_row(tmp_path):
    path = tmp_path / "ragged.parquet"
    emb = pa.array([[1.0, 2.0], None, [1.0], [3.0, 4.0]], pa.list_(pa.float32()))
    pq.write_table(pa.table({"e": emb}), path)
    with pytest.raises(InputError, match=r"ragged vectors \(1 values, expected 2\) at row 2 "):
        _stream(open_source(path))


# JSON Lines and CSV ---------------------------------------------------------------------------


def _jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_jsonl_list_field_with_ids_blank_lines_and_crlf(tmp_path):
    vectors = np.random.default_rng(3).standard_normal((40, 5)).astype(np.float32)
    lines = [
        json.dumps({"id": f"doc-{row}", "text": "a", "embedding": vector.tolist()})
        for row, vector in enumerate(vectors)
    ]
    lines.insert(7, "   ")
    path = tmp_path / "dump.jsonl"
    path.write_bytes(("\r\n".join(lines) + "\r\n\r\n").encode())
    source = open_source(path)
    assert (source.n, source.d, source.format) == (40, 5, "jsonl")
    assert source.describe()["column"] == "embedding" and source.id_column == "id"
    np.testing.assert_array_equal(_stream(source, 6), vectors)
    rows = np.array([39, 0, 7, 7, 8])
    np.testing.assert_array_equal(source.take(rows), vectors[rows])
    assert source.ids(rows) == [f"doc-{row}" for row in rows]


def test_ndjson_is_json_lines(tmp_path):
    path = _jsonl(tmp_path / "v.ndjson", [{"e": [1, 2]}, {"e": [3.5, 4]}])
    np.testing.assert_array_equal(_stream(open_source(path)), [[1, 2], [3.5, 4]])


def test_jsonl_nulls_read_as_nan_rows_and_values(tmp_path):
    records = [{"e": [1.0, 2.0]}, {"e": None}, {"e": [None, 3.0]}, {"e": [4.0, 5.0]}]
    source = open_source(_jsonl(tmp_path / "n.jsonl", records))
    expected = [[1, 2], [np.nan, np.nan], [np.nan, 3], [4, 5]]
    np.testing.assert_array_equal(_stream(source, 3), expected)


def test_jsonl_whose_first_vectors_are_null_takes_d_from_a_later_one(tmp_path, monkeypatch):
    import embaudit.sources.text as text

    monkeypatch.setattr(text, "SAMPLE_ROWS", 2)
    records = [{"e": None}] * 5 + [{"e": [1.0, 2.0, 3.0]}]
    source = open_source(_jsonl(tmp_path / "late.jsonl", records))
    assert (source.n, source.d) == (6, 3)


def test_jsonl_wide_fields_and_integer_values(tmp_path):
    records = [{"key": 10, "a": 1, "b": 2.5}, {"key": 11, "a": 3, "b": None}]
    source = open_source(_jsonl(tmp_path / "w.jsonl", records), id_column="key")
    assert source.describe()["layout"] == "wide"
    np.testing.assert_array_equal(_stream(source), [[1, 2.5], [3, np.nan]])
    assert source.ids([1, 0]) == [11, 10]


def test_csv_list_cells_in_brackets_or_spaces_and_empty_cells(tmp_path):
    path = tmp_path / "dump.csv"
    path.write_text('id,text,embedding\n1,"a, b","[0.5, 1.5]"\n2,c,\n3,d,"[nan,2]"\n4,e,"3 4"\n')
    source = open_source(path)
    assert source.describe()["column"] == "embedding"
    expected = [[0.5, 1.5], [np.nan, np.nan], [np.nan, 2], [3, 4]]
    np.testing.assert_array_equal(_stream(source, 3), expected)
    np.testing.assert_array_equal(source.take([3, 1]), [[3, 4], [np.nan, np.nan]])
    assert source.ids([3, 0]) == [4, 1]


def test_csv_one_column_per_dimension(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("doc,d0,d1,d2\nx,1,2,3\ny,4,,6\n\nz,7,8,9\n")
    source = open_source(path, id_column="doc")
    assert (source.n, source.d, source.describe()["layout"]) == (3, 3, "wide")
    np.testing.assert_array_equal(_stream(source, 2), [[1, 2, 3], [4, np.nan, 6], [7, 8, 9]])
    assert source.ids([2]) == ["z"]


def test_csv_column_picks_the_vectors(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text('a,b\n"[1,2]","[3,4,5]"\n"[6,7]","[8,9,10]"\n')
    with pytest.raises(InputError, match="several list columns"):
        open_source(path)
    np.testing.assert_array_equal(_stream(open_source(path, column="b")), [[3, 4, 5], [8, 9, 10]])


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_text_fragments_are_runs_of_lines_read_alone(tmp_path, monkeypatch, suffix):
    import embaudit.sources.text as text

    vectors = np.random.default_rng(4).standard_normal((50, 3))
    path = tmp_path / f"frag{suffix}"
    if suffix == ".jsonl":
        _jsonl(path, [{"e": vector.tolist()} for vector in vectors])
    else:
        rows = "".join(",".join(repr(float(v)) for v in vector) + "\n" for vector in vectors)
        path.write_text("a,b,c\n" + rows)
    monkeypatch.setattr(text, "FRAGMENT_BYTES", 300)
    source = open_source(path)
    fragments = source.fragments()
    assert len(fragments) > 3
    assert [f.start for f in fragments[1:]] == [f.stop for f in fragments[:-1]]
    for fragment in fragments:
        read = np.concatenate([c.values for c in source.read(fragment, 4)])
        np.testing.assert_array_equal(read, vectors[fragment.start : fragment.stop])


# TEXMEX and big-ann ---------------------------------------------------------------------------


def _texmex(path, rows, dtype):
    from tests.test_sources_report import write_texmex

    write_texmex(path, rows, dtype)
    return path


def _bigann(path, rows, dtype):
    from tests.test_sources_report import write_bigann

    write_bigann(path, rows, dtype)
    return path


@pytest.mark.parametrize(
    ("suffix", "dtype", "chunk_dtype"),
    [
        (".fvecs", "<f4", np.float32),
        (".bvecs", "u1", np.float32),
        (".fbin", "<f4", np.float32),
        (".f16bin", "<f2", np.float16),
        (".u8bin", "u1", np.float32),
        (".i8bin", "i1", np.float32),
    ],
)
def test_benchmark_layouts_are_memory_mapped_and_stream_their_values(
    tmp_path, suffix, dtype, chunk_dtype
):
    rows = np.random.default_rng(6).integers(-100, 100, size=(30, 7))
    if dtype == "u1":
        rows += 100
    path = tmp_path / f"base{suffix}"
    (_texmex if suffix in (".fvecs", ".bvecs") else _bigann)(path, rows, dtype)
    source = open_source(path)
    assert source._mapping is not None
    assert (source.n, source.d, source.dtype) == (30, 7, np.dtype(chunk_dtype))
    assert source.describe()["dtype"] == np.dtype(dtype).newbyteorder("=").name
    assert source.describe()["format"] == suffix[1:]
    np.testing.assert_array_equal(_stream(source, 4), rows)
    np.testing.assert_array_equal(source.take([29, 0, 0, 13]), rows[[29, 0, 0, 13]])


def test_a_fvecs_row_with_another_dimension_is_found_when_read(tmp_path):
    path = _texmex(tmp_path / "c.fvecs", np.ones((20, 3)), "<f4")
    raw = bytearray(path.read_bytes())
    raw[16 * 11 : 16 * 11 + 4] = np.int32(2).tobytes()  # row 11 of 4 + 3 × 4 bytes
    path.write_bytes(bytes(raw))
    source = open_source(path)  # the first and last rows are fine
    with pytest.raises(InputError, match="row 11 declares d = 2, the first row d = 3"):
        _stream(source, 5)
    with pytest.raises(InputError, match="row 11 declares d = 2"):
        source.take([0, 11])


def test_int8_npy_is_read_as_quantized_vectors(tmp_path):
    codes = np.arange(-6, 6, dtype=np.int8).reshape(4, 3)
    np.save(tmp_path / "codes.npy", codes)
    source = open_source(tmp_path / "codes.npy")
    assert source.describe()["dtype"] == "int8" and source.dtype == np.float32
    np.testing.assert_array_equal(_stream(source, 3), codes)


# safetensors ----------------------------------------------------------------------------------


def test_safetensors_written_by_the_library_is_memory_mapped(tmp_path):
    numpy_io = pytest.importorskip("safetensors.numpy")
    table = np.random.default_rng(7).standard_normal((25, 6)).astype(np.float32)
    numpy_io.save_file({"emb": table, "bias": np.zeros(6, np.float32)}, tmp_path / "m.safetensors")
    source = open_source(tmp_path / "m.safetensors")  # the only 2-D tensor
    assert source._mapping is not None
    assert source.path == f"{tmp_path / 'm.safetensors'}[emb]"
    assert source.describe()["format"] == "safetensors"
    np.testing.assert_array_equal(_stream(source, 4), table)
    np.testing.assert_array_equal(source.take([24, 0]), table[[24, 0]])


def test_safetensors_bfloat16_reads_as_float32(tmp_path):
    from tests.test_sources_report import write_safetensors

    table = np.random.default_rng(8).standard_normal((9, 4)).astype(np.float32)
    upper = (table.view(np.uint32) >> 16).astype("<u2")  # bfloat16: the upper half of the bits
    write_safetensors(tmp_path / "b.safetensors", {"w": ("BF16", upper)})
    source = open_source(tmp_path / "b.safetensors")
    expected = (upper.astype(np.uint32) << 16).view(np.float32)
    assert source.dtype == np.float32 and source.describe()["dtype"] == "bfloat16"
    np.testing.assert_array_equal(_stream(source, 2), expected)
    np.testing.assert_array_equal(source.take([8, 1]), expected[[8, 1]])
    assert np.abs(expected - table).max() <= np.abs(table).max() * 2.0**-7


# HDF5 -----------------------------------------------------------------------------------------


def _ann_benchmarks(path, train, distance="angular"):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as file:
        file.attrs["distance"] = distance
        file.create_dataset("train", data=train, chunks=(8, train.shape[1]), compression="gzip")
        file.create_dataset("test", data=train[:4])
        file.create_dataset("neighbors", data=np.zeros((4, 3), dtype=np.int32))
    return path


@pytest.mark.parametrize(
    ("distance", "metric"), [("angular", "cosine"), ("euclidean", "l2"), ("dot", "ip")]
)
def test_hdf5_reads_train_and_reports_the_distance_and_its_metric(tmp_path, distance, metric):
    train = np.random.default_rng(9).standard_normal((30, 5)).astype(np.float32)
    source = open_source(_ann_benchmarks(tmp_path / "a.hdf5", train, distance))
    info = source.describe()
    assert (info["format"], info["key"], info["distance"], info["metric"]) == (
        "hdf5",
        "train",
        distance,
        metric,
    )
    assert source.path == f"{tmp_path / 'a.hdf5'}[train]"
    np.testing.assert_array_equal(_stream(source, 7), train)
    rows = np.array([29, 0, 0, 9, 8, 10])
    np.testing.assert_array_equal(source.take(rows), train[rows])


def test_hdf5_key_picks_a_nested_dataset_of_any_float_or_quantized_dtype(tmp_path):
    h5py = pytest.importorskip("h5py")
    table = np.arange(24, dtype=np.float16).reshape(6, 4)
    with h5py.File(tmp_path / "m.h5", "w") as file:
        file.create_dataset("model/items", data=table)
        file.create_dataset("model/codes", data=table.astype(np.int8))
    source = open_source(tmp_path / "m.h5", key="/model/items")
    assert source.dtype == np.float16 and "distance" not in source.describe()
    np.testing.assert_array_equal(_stream(source), table)
    codes = open_source(tmp_path / "m.h5", key="model/codes")
    assert codes.describe()["dtype"] == "int8" and codes.dtype == np.float32
    np.testing.assert_array_equal(_stream(codes), table)


def test_a_missing_optional_reader_names_its_install_command(tmp_path, monkeypatch):
    import sys

    path = tmp_path / "a.h5"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py raises ImportError
    with pytest.raises(
        InputError, match=r"a.h5: reading HDF5 needs h5py: pip install 'embaudit\[hdf5\]'"
    ):
        open_source(path)


# Lance ----------------------------------------------------------------------------------------


def _lance_dataset(path, vectors, **columns):
    lance = pytest.importorskip("lance")
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
    return lance.write_dataset(
        pa.table({**columns, "vector": fixed}), path, max_rows_per_file=100, max_rows_per_group=25
    )


def test_lance_streams_by_fragment_and_takes_rows_and_ids(tmp_path):
    vectors = np.random.default_rng(10).standard_normal((260, 8)).astype(np.float32)
    _lance_dataset(tmp_path / "t.lance", vectors, doc=[f"d{i}" for i in range(260)])
    source = open_source(tmp_path / "t.lance", id_column="doc")
    assert (source.n, source.d, source.format) == (260, 8, "lance")
    assert [(f.start, f.stop) for f in source.fragments()] == [(0, 100), (100, 200), (200, 260)]
    assert "index" not in source.describe()
    for fragment in source.fragments():
        read = np.concatenate([c.values for c in source.read(fragment, 30)])
        np.testing.assert_array_equal(read, vectors[fragment.start : fragment.stop])
    rows = np.array([259, 0, 0, 150])
    np.testing.assert_array_equal(source.take(rows), vectors[rows])
    assert source.ids(rows) == ["d259", "d0", "d0", "d150"]


@pytest.mark.parametrize(
    ("index", "metric", "expected"),
    [
        ({"index_type": "IVF_PQ", "num_partitions": 2, "num_sub_vectors": 2}, "dot", "ip"),
        (
            {"index_type": "IVF_HNSW_SQ", "num_partitions": 1, "m": 12, "ef_construction": 80},
            "cosine",
            "cosine",
        ),
    ],
)
def test_lance_vector_index_is_reported_with_its_metric(tmp_path, index, metric, expected):
    # Lance trains fewer lists than asked on few rows: enough rows for two.
    vectors = np.random.default_rng(11).standard_normal((1000, 8)).astype(np.float32)
    dataset = _lance_dataset(tmp_path / "i.lance", vectors)
    dataset.create_index("vector", metric=metric, **index)
    info = open_source(tmp_path / "i.lance").describe()["index"]
    assert (info["type"], info["metric"], info["index_metric"]) == (
        index["index_type"],
        expected,
        metric,
    )
    assert info["rows_indexed"] == 1000
    assert info["partitions"] == index["num_partitions"]
    if "m" in index:
        assert (info["m"], info["ef_construction"]) == (12, 80)


def test_a_stored_lance_index_is_the_default_index(tmp_path):
    import embaudit

    rows = np.random.default_rng(12).standard_normal((1000, 8)).astype(np.float32)
    dataset = _lance_dataset(tmp_path / "i.lance", rows)
    dataset.create_index(
        "vector", metric="dot", index_type="IVF_PQ", num_partitions=2, num_sub_vectors=2
    )
    source = open_source(tmp_path / "i.lance")
    assert source.describe()["index"]["spec"] == "IVF2,PQ2x8"
    # Searched live by default (tests/test_live_index.py); rebuilt in faiss when asked.
    assert embaudit.audit(source, k=5).params["index"] == "live"
    report = embaudit.audit(source, k=5, index="rebuild")
    assert (report.params["index"], report.params["index_metric"]) == ("IVF2,PQ2x8", "ip")
    assert report.params["index_from"] == "input.index"
    assert {"EA701", "EA702"} <= {check.code for check in report.checks}
    # --index and --index-metric win over what the dataset holds.
    chosen = embaudit.audit(source, k=5, index="Flat", index_metric="l2")
    assert (chosen.params["index"], chosen.params["index_metric"]) == ("Flat", "l2")
    assert chosen.params["index_from"] == "--index"


@pytest.mark.parametrize(
    ("distance", "metric"), [("angular", "cosine"), ("dot", "ip"), ("hamming", None)]
)
def test_the_hdf5_distance_is_the_default_index_metric(tmp_path, distance, metric):
    import embaudit

    h5py = pytest.importorskip("h5py")
    rows = np.random.default_rng(13).standard_normal((400, 8)).astype(np.float32)
    with h5py.File(tmp_path / "a.hdf5", "w") as file:
        file.attrs["distance"] = distance
        file.create_dataset("train", data=rows)
    report = embaudit.audit(tmp_path / "a.hdf5", k=5, index="Flat", trained_with="l2")
    # Without a metric the attribute names, the objective's (l2) is the default.
    assert report.params["index_metric"] == (metric or "l2")
    assert "index" not in embaudit.audit(tmp_path / "a.hdf5", k=5).params


def test_npy_headers_are_parsed_one_at_a_time(tmp_path, monkeypatch):
    """numpy parses a .npy header with ast.literal_eval, which CPython 3.11 cannot always run
    on two threads at once; shard directories open their files on several threads, so the
    headers are parsed under one lock (at most one parse at any moment)."""
    import threading
    import time

    from embaudit.sources import arrays

    parse = np.lib.format.read_array_header_1_0
    inside, most, lock = 0, 0, threading.Lock()

    def slow_parse(stream):
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.01)  # long enough for the other threads to arrive
        with lock:
            inside -= 1
        return parse(stream)

    monkeypatch.setattr(np.lib.format, "read_array_header_1_0", slow_parse)
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.npy")
        np.save(paths[-1], np.zeros((3, 2), np.float32))

    def read(path):
        with path.open("rb") as stream:
            arrays._read_npy_header(stream, str(path))

    threads = [threading.Thread(target=read, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1

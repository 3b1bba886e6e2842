"""A directory of vector files is one dataset: the report of the rows in one `.npy`, whatever
the kind of shard; ids from a parallel parquet directory; a shard that changes during the run
stops it. (The same directories on the Ray engine: tests/test_engines.py.)"""

from __future__ import annotations

import itertools
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import embaudit
from embaudit.errors import InputError
from embaudit.sources import Fragment, open_source
from embaudit.sources import shards as shards_module

N, D = 2400, 12
BOUNDS = (0, 700, 1500, 1501, N)  # a shard of one row among them


def rows() -> np.ndarray:
    """Anisotropic rows with a NaN row, a zero row and a row repeated in another shard."""
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(N, D)) * rng.uniform(0.3, 2.0, size=D)).astype(np.float32)
    x[5, 2] = np.nan
    x[1000] = 0.0
    x[2200] = x[40]  # the same row in the first and the last shard
    return x


def write_npy(path: Path, x: np.ndarray) -> None:
    np.save(path.with_suffix(".npy"), x)


def write_fbin(path: Path, x: np.ndarray) -> None:
    with path.with_suffix(".fbin").open("wb") as stream:
        stream.write(np.array(x.shape, dtype="<u4").tobytes())
        stream.write(x.astype("<f4").tobytes())


def write_safetensors(path: Path, x: np.ndarray) -> None:
    header = json.dumps(
        {"emb": {"dtype": "F32", "shape": list(x.shape), "data_offsets": [0, x.nbytes]}}
    ).encode()
    with path.with_suffix(".safetensors").open("wb") as stream:
        stream.write(np.array([len(header)], dtype="<u8").tobytes() + header)
        stream.write(x.astype("<f4").tobytes())


WRITERS: dict[str, Callable[[Path, np.ndarray], None]] = {
    "npy": write_npy,
    "fbin": write_fbin,
    "safetensors": write_safetensors,
}


def write_shards(folder: Path, x: np.ndarray, writer: Callable[[Path, np.ndarray], None]) -> Path:
    folder.mkdir(parents=True)
    for index, (start, stop) in enumerate(itertools.pairwise(BOUNDS)):
        writer(folder / f"part-{index:05d}", x[start:stop])
    return folder


def write_metadata(folder: Path, bounds: tuple[int, ...] = BOUNDS) -> Path:
    """Parquet files of ids (and captions), one per shard, as LAION publishes them."""
    folder.mkdir(parents=True)
    for index, (start, stop) in enumerate(itertools.pairwise(bounds)):
        table = pa.table(
            {
                "key": [f"img-{row:06d}" for row in range(start, stop)],
                "caption": [f"caption {row}" for row in range(start, stop)],
            }
        )
        pq.write_table(table, folder / f"metadata-{index:05d}.parquet")
    return folder


def comparable(report: Any) -> dict[str, Any]:
    """The report's JSON without timings and the input section (its path and file count)."""
    out: dict[str, Any] = json.loads(json.dumps(report.to_dict()))
    out.pop("timings")
    out.pop("input")
    return out


@pytest.mark.parametrize("kind", WRITERS)
def test_a_directory_of_shards_gives_the_report_of_one_file(tmp_path: Path, kind: str) -> None:
    x = rows()
    folder = write_shards(tmp_path / "shards", x, WRITERS[kind])
    (folder / "_SUCCESS").write_text("")
    whole = tmp_path / "whole.npy"
    np.save(whole, x)
    report = embaudit.audit(folder, seed=2)
    assert comparable(report) == comparable(embaudit.audit(whole, seed=2))
    assert report.input["n"] == N and report.input["files"] == len(BOUNDS) - 1
    assert report.input["format"] == kind and report.input["ignored"] == ["_SUCCESS"]
    duplicates = next(check for check in report.checks if check.code == "EA003")
    assert duplicates.metrics["examples"][0]["rows"] == [40, 2200]  # found across shards


def test_fragments_cut_across_shards_by_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shards_module, "FRAGMENT_BYTES", 500 * D * 4)
    x = rows()
    source = open_source(write_shards(tmp_path / "shards", x, write_npy))
    fragments = source.fragments()
    assert [(f.start, f.stop) for f in fragments] == [
        (start, min(start + 500, N)) for start in range(0, N, 500)
    ]
    assert fragments[1].where is not None and "part-00000.npy … " in fragments[1].where
    read = [chunk for fragment in fragments for chunk in source.read(fragment, 128)]
    assert all(len(chunk.values) == 128 for chunk in read if chunk.stop % 500 and chunk.stop != N)
    assert np.array_equal(np.concatenate([chunk.values for chunk in read]), x, equal_nan=True)
    picked = np.array([2399, 0, 1500, 699, 700, 1499])
    assert np.array_equal(source.take(picked), x[picked], equal_nan=True)


def test_ids_from_a_parallel_metadata_directory_name_the_rows(tmp_path: Path, cli: Any) -> None:
    x = rows()
    folder = write_shards(tmp_path / "img_emb", x, write_npy)
    metadata = write_metadata(tmp_path / "metadata")
    result = cli("check", folder, "--ids-from", metadata, "--id-column", "key", "--format", "json")
    report = json.loads(result.stdout)
    assert report["input"]["ids_from"] == str(metadata)
    codes = {check["code"]: check for check in report["checks"]}
    assert codes["EA003"]["metrics"]["examples"][0]["ids"] == ["img-000040", "img-002200"]
    assert "img-000005" in json.dumps(codes["EA001"])  # the NaN row, by its id


def test_ids_from_with_other_row_counts_is_an_input_error(tmp_path: Path, cli: Any) -> None:
    folder = write_shards(tmp_path / "img_emb", rows(), write_npy)
    metadata = write_metadata(tmp_path / "metadata", (0, 700, 1500, 1502, N))
    result = cli("check", folder, "--ids-from", metadata, "--id-column", "key")
    assert result.code == 2 and result.stdout == ""
    assert result.stderr.strip().endswith(
        f"metadata-00002.parquet: holds 2 ids, but its shard {folder}/part-00002.npy has 1 rows"
    )
    several = cli("check", folder, "--ids-from", write_metadata(tmp_path / "other"))
    assert several.code == 2 and "name it with --id-column (key, caption)" in several.stderr


def _vanish(shard: Path) -> None:
    shard.unlink()


def _truncate(shard: Path) -> None:
    with shard.open("r+b") as stream:
        stream.truncate(shard.stat().st_size - 4 * D)


@pytest.mark.parametrize("via", ["path", "uri"])
@pytest.mark.parametrize(
    ("fault", "says"),
    [(_vanish, "disappeared during the run"), (_truncate, "changed during the run")],
)
def test_a_shard_that_changes_after_opening_stops_the_run(
    tmp_path: Path, fault: Callable[[Path], None], says: str, via: str
) -> None:
    folder = write_shards(tmp_path / "shards", rows(), write_npy)
    source = open_source(folder if via == "path" else folder.as_uri())
    fault(folder / "part-00003.npy")
    with pytest.raises(InputError, match=f"part-00003.npy: {says}.*no report"):
        embaudit.audit(source)


def test_a_shard_that_appears_during_the_run_stops_it(tmp_path: Path) -> None:
    folder = write_shards(tmp_path / "shards", rows(), write_npy)
    source = open_source(folder)
    np.save(folder / "part-00009.npy", rows()[:10])
    with pytest.raises(InputError, match=r"part-00009\.npy appeared during the run"):
        embaudit.audit(source)
    (folder / ".part-00010.npy.crc").write_text("")  # hidden: not a shard
    assert embaudit.audit(open_source(folder)).input["ignored"] == [".part-00010.npy.crc"]


def test_a_shard_cut_short_while_it_is_read_is_an_input_error(tmp_path: Path) -> None:
    """Shards are read with pread, not through their mapping: a file truncated under the reader
    is an error naming it (a mapping would kill the process with SIGBUS)."""
    x = rows()
    path = tmp_path / "one.npy"
    np.save(path, x)
    shard = open_source(path)
    assert shard.copies_rows  # type: ignore[attr-defined]
    whole = list(shard.read_copies(Fragment(0, 0, N, None), 500))  # type: ignore[attr-defined]
    assert np.array_equal(np.concatenate([c.values for c in whole]), x, equal_nan=True)
    chunks = shard.read_copies(Fragment(0, 0, N, None), 500)  # type: ignore[attr-defined]
    next(chunks)
    with path.open("r+b") as stream:
        stream.truncate(path.stat().st_size // 2)
    with pytest.raises(InputError, match=r"one\.npy: truncated while read: rows 1,000–1,500"):
        list(chunks)


def test_a_directory_takes_the_options_of_its_files_kind(tmp_path: Path) -> None:
    from embaudit.sources import accepts

    npy = write_shards(tmp_path / "npy", rows(), write_npy)
    parquet = tmp_path / "parquet"
    parquet.mkdir()
    pq.write_table(pa.table({"e": [[1.0, 2.0]]}), parquet / "a.parquet")
    assert not accepts(npy, "column") and not accepts(npy, "key")
    assert accepts(parquet, "column") and accepts(parquet, "id_column")
    (npy / "notes.txt").write_text("not a shard")
    assert not accepts(npy, "column")  # refused when opened, with the reason


# Behind a URI ---------------------------------------------------------------------------------
# ``file://`` URIs go through pyarrow's filesystem interface, as ``s3://`` and ``gs://`` do: the
# files are listed, checked and read by byte ranges through it, never mapped.


def write_f16bin(path: Path, x: np.ndarray) -> None:
    with path.with_suffix(".f16bin").open("wb") as stream:
        stream.write(np.array(x.shape, dtype="<u4").tobytes())
        stream.write(x.astype("<f2").tobytes())


def write_u8bin(path: Path, x: np.ndarray) -> None:
    with path.with_suffix(".u8bin").open("wb") as stream:
        stream.write(np.array(x.shape, dtype="<u4").tobytes())
        stream.write(np.nan_to_num(x * 20 + 128).clip(0, 255).astype("u1").tobytes())


def write_bf16_safetensors(path: Path, x: np.ndarray) -> None:
    bits = (x.astype("<f4").view("<u4") >> 16).astype("<u2")
    header = json.dumps(
        {
            "__metadata__": {"format": "pt"},
            "bias": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
            "emb": {
                "dtype": "BF16",
                "shape": list(x.shape),
                "data_offsets": [12, 12 + bits.nbytes],
            },
        }
    ).encode()
    with path.with_suffix(".safetensors").open("wb") as stream:
        stream.write(np.array([len(header)], dtype="<u8").tobytes() + header)
        stream.write(np.zeros(3, "<f4").tobytes() + bits.tobytes())


URI_WRITERS = WRITERS | {
    "f16bin": write_f16bin,
    "u8bin": write_u8bin,
    "bf16-safetensors": write_bf16_safetensors,
}


@pytest.mark.parametrize("kind", URI_WRITERS)
def test_a_uri_prefix_reads_the_rows_of_the_directory(tmp_path: Path, kind: str) -> None:
    """Every chunk and every row taken is the local reader's, bit for bit, whatever the kind."""
    folder = write_shards(tmp_path / "shards", rows(), URI_WRITERS[kind])
    local, remote = open_source(folder), open_source(folder.as_uri())
    assert (remote.n, remote.d, remote.dtype, remote.format) == (
        local.n,
        local.d,
        local.dtype,
        local.format,
    )
    assert remote.describe() | {"path": None} == local.describe() | {"path": None}
    stored = {"f16bin": "float16", "u8bin": "uint8", "bf16-safetensors": "bfloat16"}
    assert remote.describe()["dtype"] == stored.get(kind, "float32")
    for ours, theirs in zip(remote.chunks(333), local.chunks(333), strict=True):
        assert ours.start == theirs.start
        assert np.array_equal(ours.values, theirs.values, equal_nan=True)
    # Scattered rows, runs of neighbours, repeats and the order asked for.
    picked = np.array([2399, 0, 1500, 699, 700, 1499, 3, 4, 5, 700, 2399, 1200])
    assert np.array_equal(remote.take(picked), local.take(picked), equal_nan=True)
    revived = pickle.loads(pickle.dumps(remote))  # as a cluster's worker receives it
    assert np.array_equal(revived.take(picked), local.take(picked), equal_nan=True)


def test_a_uri_prefix_gives_the_report_of_the_directory(tmp_path: Path, cli: Any) -> None:
    folder = write_shards(tmp_path / "shards", rows(), write_npy)
    (folder / "_SUCCESS").write_text("")
    uri = folder.as_uri()
    report = embaudit.audit(uri, seed=2)
    assert comparable(report) == comparable(embaudit.audit(folder, seed=2))
    assert report.input["path"] == uri and report.input["ignored"] == ["_SUCCESS"]
    assert report.input["files"] == len(BOUNDS) - 1
    single = (folder / "part-00000.npy").as_uri()
    assert embaudit.audit(single).input["n"] == BOUNDS[1]
    result = cli("check", uri, "--format", "json", "--exit-zero")
    assert result.code == 0 and json.loads(result.stdout)["input"]["n"] == N


def _refused(cli: Any, *arguments: Any) -> str:
    result = cli("check", *arguments)
    assert result.code == 2 and result.stdout == "", result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_what_a_uri_cannot_serve_is_one_line_naming_it(tmp_path: Path, cli: Any) -> None:
    folder = write_shards(tmp_path / "mixed", rows(), write_npy)
    write_fbin(folder / "extra", rows()[:5])
    assert "mixed kinds (.fbin: 1, .npy: 4)" in _refused(cli, folder.as_uri())
    fortran = tmp_path / "fortran.npy"
    np.save(fortran, np.asfortranarray(rows()))
    assert f"{fortran.as_uri()}: a Fortran-order .npy" in _refused(cli, fortran.as_uri())
    archive = tmp_path / "x.npz"
    np.savez(archive, x=rows())
    assert f"{archive.as_uri()}: a .npz file: not read behind a URI" in _refused(
        cli, archive.as_uri()
    )
    notes = tmp_path / "notes.txt"
    notes.write_text("not vectors")
    assert "unknown file type '.txt': not read behind a URI" in _refused(cli, notes.as_uri())
    assert "no such file or directory" in _refused(cli, (tmp_path / "gone").as_uri())
    short = tmp_path / "short.fbin"
    write_fbin(short, rows())
    with short.open("r+b") as stream:
        stream.truncate(100)
    assert "short.fbin: truncated: the header promises 2,400 × 12" in _refused(cli, short.as_uri())
    npy = write_shards(tmp_path / "npy", rows(), write_npy)
    assert "--column applies to parquet" in _refused(cli, npy.as_uri(), "--column", "e")
    safetensors = write_shards(tmp_path / "st", rows(), write_bf16_safetensors)
    with_key = embaudit.audit(safetensors.as_uri(), key="emb", select=["EA001"])
    assert (
        with_key.check("EA001").value
        == embaudit.audit(safetensors, key="emb", select=["EA001"]).check("EA001").value
    )


def test_a_file_that_appears_behind_a_uri_during_the_run_stops_it(tmp_path: Path) -> None:
    folder = write_shards(tmp_path / "shards", rows(), write_npy)
    source = open_source(folder.as_uri())
    np.save(folder / "part-00009.npy", rows()[:10])
    with pytest.raises(InputError, match=r"part-00009\.npy appeared during the run"):
        embaudit.audit(source)


def test_a_file_behind_a_uri_cut_short_while_read_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "one.npy"
    np.save(path, rows())
    source = open_source(path.as_uri())
    chunks = source.read(Fragment(0, 0, N, None), 500)
    next(chunks)
    with path.open("r+b") as stream:
        stream.truncate(path.stat().st_size // 2)
    with pytest.raises(InputError, match=r"one\.npy: (truncated while read|changed during)"):
        list(chunks)


class _DeniedListing(pafs.FileSystemHandler):
    """A store that answers for files but refuses to list (an S3 role without ListBucket)."""

    def __init__(self, root: Path) -> None:
        self.inner = pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _DeniedListing) and other.inner.equals(self.inner)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return "denied"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        raise OSError("AWS Error ACCESS_DENIED during ListObjectsV2 operation: Access Denied\n…")

    def open_input_file(self, path: str) -> Any:
        return self.inner.open_input_file(path)

    def open_input_stream(self, path: str) -> Any:
        return self.inner.open_input_stream(path)

    def _refuse(self, *arguments: Any) -> None:
        raise NotImplementedError

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _refuse
    delete_file = move = copy_file = open_output_stream = open_append_stream = _refuse


@pytest.fixture
def bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``s3://bucket/…`` served from ``tmp_path/bucket``: paths inside the filesystem are not
    this machine's paths, as on object storage (``s3://denied/…``: a store that will not
    list)."""
    from embaudit.sources import remote

    def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
        scheme, _, path = uri.partition("://")
        assert scheme == "s3", uri
        if path.startswith("denied/"):
            return pafs.PyFileSystem(_DeniedListing(tmp_path)), path.replace("denied/", "bucket/")
        return pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), path

    monkeypatch.setattr(remote, "resolve", resolve)
    return tmp_path / "bucket"


def test_an_object_store_path_is_never_taken_for_a_local_one(bucket: Path) -> None:
    """On object storage the path inside the filesystem (``bucket/img_emb/part-00000.npy``) is
    no path of this machine: one file and a prefix are listed, checked and read through the
    store alone."""
    write_shards(bucket / "img_emb", rows(), write_npy)
    single = open_source("s3://bucket/img_emb/part-00001.npy")
    assert np.array_equal(single.take(np.array([799, 0])), rows()[[1499, 700]], equal_nan=True)
    assert embaudit.audit(single, select=["EA001"]).input["n"] == 800
    prefix = "s3://bucket/img_emb/"
    report = embaudit.audit(prefix, seed=2)
    assert comparable(report) == comparable(embaudit.audit(bucket / "img_emb", seed=2))
    from embaudit.sources import accepts

    assert not accepts(prefix, "column") and accepts("s3://bucket/img_emb", "id_column") is False


def test_a_store_that_will_not_list_is_one_line_naming_the_uri(bucket: Path, cli: Any) -> None:
    write_shards(bucket / "img_emb", rows(), write_npy)
    line = _refused(cli, "s3://denied/img_emb/")
    assert line.endswith(
        "s3://denied/img_emb/: cannot list (AWS Error ACCESS_DENIED during ListObjectsV2 "
        "operation: Access Denied)"
    )
    # A single file needs no listing.
    assert embaudit.audit("s3://denied/img_emb/part-00000.npy", select=["EA001"]).input["n"] == 700


def test_a_kind_not_read_behind_a_uri_says_to_copy_it(bucket: Path, cli: Any) -> None:
    (bucket / "npz").mkdir(parents=True)
    np.savez(bucket / "npz" / "a.npz", x=rows())
    assert _refused(cli, "s3://bucket/npz").endswith(
        ".npz files: not read behind a URI (read are .f16bin, .fbin, .i8bin, .npy, .parquet, "
        ".safetensors, .u8bin files and prefixes of them); copy it locally"
    )
    mixed = write_shards(bucket / "mixed", rows(), write_safetensors)
    write_bf16_safetensors(mixed / "part-00009", rows()[:4])
    assert "holds bfloat16, but" in _refused(cli, "s3://bucket/mixed")
    parquet = bucket / "parquet"
    parquet.mkdir()
    pq.write_table(pa.table({"e": [[1.0, 2.0], [2.0, 1.0], [0.5, 3.0]]}), parquet / "a.parquet")
    assert embaudit.audit("s3://bucket/parquet", column="e", select=["EA001"]).input["n"] == 3


def test_many_shards_are_opened_several_at_a_time_and_kept_in_order(tmp_path: Path) -> None:
    """Thousands of shards on object storage are a request or two of latency each: they are
    opened OPENING_THREADS at a time, and the dataset is still the files in path order."""
    import threading
    import time

    x = rows()
    folder = tmp_path / "many"
    folder.mkdir()
    bounds = [*range(0, N, 30), N]  # 80 shards
    for index, (start, stop) in enumerate(itertools.pairwise(bounds)):
        np.save(folder / f"part-{index:05d}.npy", x[start:stop])
    local = open_source(folder)
    assert isinstance(local, shards_module.ShardedSource)
    in_flight, most, lock = 0, 0, threading.Lock()

    def opener(path: Any) -> Any:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.005)  # a request's latency
        try:
            return local._opener(path)
        finally:
            with lock:
                in_flight -= 1

    files = sorted(folder.iterdir())
    source = shards_module.ShardedSource(str(folder), files, opener)
    assert 1 < most <= shards_module.OPENING_THREADS
    assert source.shard_rows == [stop - start for start, stop in itertools.pairwise(bounds)]
    read = np.concatenate([chunk.values for chunk in source.chunks(1000)])
    assert np.array_equal(read, x, equal_nan=True)


@pytest.mark.parametrize("via", ["path", "uri"])
@pytest.mark.parametrize("kind", ["npy", "fbin", "safetensors"])
def test_a_shard_of_no_rows_is_skipped_and_named(
    tmp_path: Path, cli: Any, kind: str, via: str
) -> None:
    """An empty partition (Spark writes them) holds no rows: the directory is the other shards'
    rows, the report names the empty file, and ids from metadata stay aligned; a directory of
    nothing but empty files is one line naming it."""
    x = rows()
    folder = tmp_path / "shards"
    folder.mkdir()
    bounds = (0, 700, 700, 1500, N)  # part-00001 holds no rows
    for index, (start, stop) in enumerate(itertools.pairwise(bounds)):
        WRITERS[kind](folder / f"part-{index:05d}", x[start:stop])
    location = str(folder) if via == "path" else folder.as_uri()
    whole = tmp_path / "whole.npy"
    np.save(whole, x)
    report = embaudit.audit(location, seed=2)
    assert comparable(report) == comparable(embaudit.audit(whole, seed=2))
    assert report.input["n"] == N and report.input["empty_file_count"] == 1
    [named] = report.input["empty_files"]  # as the shard names itself (a tensor: file[key])
    assert named.removesuffix("[emb]").endswith(f"part-00001.{kind}")
    if via == "path":
        metadata = write_metadata(tmp_path / "metadata", bounds)
        named = embaudit.audit(folder, ids_from=metadata, id_column="key", select=["EA001"])
        assert "img-000005" in json.dumps(named.check("EA001").to_dict())
    empty = tmp_path / "empty"
    empty.mkdir()
    for index in range(2):
        WRITERS[kind](empty / f"part-{index:05d}", x[:0])
    target = str(empty) if via == "path" else empty.as_uri()
    assert _refused(cli, target).endswith(f"{target}: no file holds any rows")

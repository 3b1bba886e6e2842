"""A directory of vector files (shards) read as one dataset, and row ids read from a parallel
directory of parquet metadata (``--ids-from``).

A directory is read whole or refused: its files are listed recursively and sorted by path; every
file must be of one kind (``.npy`` shards, ``.fbin`` shards, …) and agree on the dimension and
dtype. A directory that mixes kinds, or holds files that are not vectors, is an input error that
names them. Files no export holds data in are skipped and said in the report's input section:
hidden files (``.DS_Store``, ``.part-0.crc``) and ``_``-prefixed markers (``_SUCCESS``,
``_metadata``), as Spark and Hadoop write them. A file of no rows (an empty partition) adds no
rows and is named in the report's ``input.empty_files``.

Rows are numbered globally in that order (the first shard's rows, then the second's); errors name
the shard and its own row. The dataset is cut into fragments of about
:func:`~embaudit.sources.base.fragment_bytes` stored bytes, across file boundaries, so that a
cluster spreads a directory of small shards and a single large shard alike. A shard that
disappears, changes size or is rewritten during the run, and a vector file that appears in the
directory during it, are input errors: no report is made from part of the data.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from embaudit.array_types import Ints
from embaudit.errors import InputError, NoRows
from embaudit.sources.arrays import ArraySource
from embaudit.sources.base import (
    FRAGMENT_BYTES,
    IGNORED_SHOWN,
    Chunk,
    EmbeddingSource,
    Fragment,
    as_row_positions,
    exact_chunks,
    fragment_bytes,
    json_safe,
)
from embaudit.sources.parquet import list_parquet_files
from embaudit.sources.readers import ReadErrors, first_line

#: Shards a source keeps open (memory-mapped) at once.
OPEN_SHARDS = 8
#: Shards opened at once when a source is opened (see ShardedSource._opened).
OPENING_THREADS = 16


@dataclass(frozen=True)
class LocalFiles:
    """The files of this machine's filesystem below ``root``, as :class:`ShardedSource` lists,
    checks and opens them (:class:`~embaudit.sources.remote.RemoteFiles`: those behind a URI)."""

    root: Path

    def name(self, path: str) -> str:
        return path

    def stat(self, path: str) -> tuple[int, int | None]:
        """(size, modification time in ns); FileNotFoundError when gone."""
        status = Path(path).stat()
        return status.st_size, status.st_mtime_ns

    def walk(self) -> Iterator[tuple[str, Path]]:
        return _walk(self.root)


class Files(Protocol):
    """Where a directory's files are: listed (``walk``), checked (``stat``) and named."""

    def name(self, path: str) -> str: ...

    def stat(self, path: str) -> tuple[int, int | None]: ...

    def walk(self) -> Iterator[tuple[str, PurePath]]: ...


@dataclass(frozen=True)
class Listing:
    """The files of a directory: the vector files of its one kind, sorted by path, and the
    files skipped as never holding data (hidden files and ``_`` markers)."""

    root: PurePath
    kind: str  # the suffix of the vector files ('.npy'), as FORMATS names it
    files: list[PurePath]
    ignored: list[str] = field(default_factory=list)
    where: Files | None = None  # the files' filesystem (None: this machine's, below root)

    @property
    def storage(self) -> Files:
        return self.where if self.where is not None else LocalFiles(Path(self.root))


def _ignorable(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def list_directory(
    root: PurePath, kinds: dict[str, str], where: str, files: Files | None = None
) -> Listing:
    """The directory ``root`` (of ``files``; None: this machine's) as one kind of vector file
    (``kinds`` maps each suffix to its format's name: ``.h5`` and ``.hdf5`` are one kind); an
    input error naming the kinds and the files it will not read when they are several, or
    none."""
    found: dict[str, list[PurePath]] = {}
    stray: list[str] = []
    ignored: list[str] = []
    storage = files if files is not None else LocalFiles(Path(root))
    for relative, path in storage.walk():
        suffix = path.suffix.lower()
        if _ignorable(relative):
            ignored.append(relative)
        elif suffix in kinds:
            found.setdefault(kinds[suffix], []).append(path)
        else:
            stray.append(relative)
    if len(found) > 1 or stray:
        raise InputError(where, _refusal(found, stray))
    if not found:
        raise InputError(
            where, "directory holds no vector files (.npy, .fbin, .safetensors, .parquet, …)"
        )
    [kept] = found.values()
    suffixes = Counter(path.suffix.lower() for path in kept)
    return Listing(root, suffixes.most_common(1)[0][0], sorted(kept), ignored, files)


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """(path relative to ``root`` with ``/``, path) of every file below ``root``, sorted; a
    ``.lance`` dataset (a directory) counts as one file."""
    for directory, subdirectories, names in os.walk(root):
        here = Path(directory)
        for name in list(subdirectories):
            if name.lower().endswith(".lance"):
                subdirectories.remove(name)
                names.append(name)
        subdirectories.sort()
        for name in sorted(names):
            path = here / name
            yield path.relative_to(root).as_posix(), path


def _refusal(found: dict[str, list[PurePath]], stray: list[str]) -> str:
    """Why a directory is not read: its kinds of vector file, and the files that are none."""
    counts = Counter(
        path.suffix.lower() if path.suffix else "(no extension)"
        for paths in found.values()
        for path in paths
    )
    kinds = ", ".join(f"{suffix}: {count}" for suffix, count in sorted(counts.items()))
    parts = []
    if len(found) > 1:
        parts.append(f"mixed kinds ({kinds})")
    if stray:
        shown = ", ".join(stray[:5]) + (f" and {len(stray) - 5} more" if len(stray) > 5 else "")
        parts.append(f"files that hold no vectors ({shown})")
    return " and ".join(parts) + "; give one file or a directory of one kind"


@dataclass(frozen=True)
class _Shard:
    name: str  # as messages name it
    path: str
    start: int  # global position of its first row
    n: int
    size: int  # bytes, and the last modification (None: the store keeps none), when opened
    modified: int | None

    @property
    def stop(self) -> int:
        return self.start + self.n


class ShardedSource(EmbeddingSource):
    """The vector files of a directory, sorted by path, as one dataset (see the module).

    ``opener`` opens one shard (a picklable callable: the source travels to an engine's workers
    without its open shards, and each worker opens the shards of its fragments). With ``cut``
    false the fragments are the shards' own (a single file read through this class keeps the
    cut it has on its own)."""

    def __init__(
        self,
        location: str,
        files: Sequence[PurePath],
        opener: Callable[[Any], EmbeddingSource],
        *,
        listing: Listing | None = None,
        ids_from: str | None = None,
        id_column: str | None = None,
        cut: bool = True,
        storage: Files | None = None,
    ) -> None:
        """``storage``: where ``files`` are (default: the listing's, else this machine's)."""
        self.path = location
        self._opener = opener
        self._listing = listing
        if storage is None:
            storage = listing.storage if listing is not None else LocalFiles(Path(location))
        self._storage = storage
        self._open: dict[int, EmbeddingSource] = {}
        self._files = list(files)
        self._shards: list[_Shard] = []
        first: EmbeddingSource | None = None
        start = 0
        #: Files that hold no rows (an empty partition): kept in the order (their ids, if any,
        #: stay aligned) and named in the report, never read.
        self.empty: list[str] = []
        for index, (file, shard, (size, modified)) in enumerate(self._opened(files)):
            if isinstance(shard, NoRows):
                name = shard.where or str(file)
                self.empty.append(name)
                self._shards.append(_Shard(name, str(file), start, 0, size, modified))
                continue
            if first is None:
                first = shard
            else:
                _check_agrees(shard, first)
            self._shards.append(
                _Shard(shard.path or str(file), str(file), start, shard.n, size, modified)
            )
            start += shard.n
            if index < OPEN_SHARDS:
                self._open[index] = shard
        if first is None:
            raise NoRows(location, "no file holds any rows" if len(files) > 1 else "holds no rows")
        self.format, self.d, self.dtype = first.format, first.d, first.dtype
        self._stored_as = first.describe()["dtype"]  # as the shards name it (bfloat16, …)
        self.stored_dtype = first.stored_dtype
        self.n = start
        self._starts = np.array([shard.start for shard in self._shards], dtype=np.int64)
        self._fragments = self._cut() if cut else self._own_fragments()
        self._ids = None if ids_from is None else IdTable(ids_from, id_column, self)
        self.id_column = self._ids.column if self._ids is not None else first.id_column

    def _opened(
        self, files: Sequence[PurePath]
    ) -> Iterator[tuple[PurePath, EmbeddingSource | NoRows, tuple[int, int | None]]]:
        """Each file, opened (its header read; the error, for a file of no rows) and its size
        and modification time, in order.
        OPENING_THREADS at a time: on object storage each is a request or two of latency, which
        thousands of shards (LAION-5B's 2,314) would otherwise wait for one after another. A
        batch at a time, so that no more than a batch of shards is open at once."""

        def open_one(
            file: PurePath,
        ) -> tuple[PurePath, EmbeddingSource | NoRows, tuple[int, int | None]]:
            try:
                opened: EmbeddingSource | NoRows = self._opener(file)
            except NoRows as empty:  # an empty partition: skipped, and said
                opened = empty
            return file, opened, self._storage.stat(str(file))

        with ThreadPoolExecutor(OPENING_THREADS, thread_name_prefix="embaudit-open") as pool:
            for first in range(0, len(files), 2 * OPENING_THREADS):
                yield from pool.map(open_one, files[first : first + 2 * OPENING_THREADS])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = {}  # mapped shards stay with the process that mapped them
        return state

    @property
    def shard_rows(self) -> list[int]:
        return [shard.n for shard in self._shards]

    def _shard(self, index: int) -> EmbeddingSource:
        """Shard ``index``, opened (at most :data:`OPEN_SHARDS` stay open), after checking that
        it is still the file that was opened."""
        self._check_unchanged(self._shards[index])
        shard = self._open.pop(index, None)
        if shard is None:
            shard = self._opener(self._files[index])
            while len(self._open) >= OPEN_SHARDS:
                self._open.pop(next(iter(self._open)))
        self._open[index] = shard  # most recently used last
        return shard

    def _check_unchanged(self, shard: _Shard) -> None:
        try:
            size, modified = self._storage.stat(shard.path)
        except OSError as error:
            if isinstance(error, FileNotFoundError):
                raise InputError(
                    shard.name,
                    "disappeared during the run; no report is made from part of the data",
                ) from None
            raise InputError(shard.name, f"cannot read ({error.strerror or error})") from None
        if (size, modified) != (shard.size, shard.modified):
            raise InputError(
                shard.name,
                f"changed during the run ({shard.size:,} bytes when opened, {size:,} "
                "now); no report is made from part of the data",
            )

    def confirm_unchanged(self) -> None:
        for shard in self._shards:
            self._check_unchanged(shard)
        if self._listing is None:
            return
        listing = self._listing
        before = set(listing.files)
        appeared = [
            relative
            for relative, path in listing.storage.walk()
            if path.suffix.lower() == listing.kind
            and not _ignorable(relative)
            and path not in before
        ]
        if appeared:
            names = ", ".join(appeared[:5])
            raise InputError(
                self.path,
                f"{names} appeared during the run; no report is made from part of the data "
                "(audit again to include it)",
            )

    def _cut(self) -> list[Fragment]:
        """Runs of about FRAGMENT_BYTES stored bytes, across shard boundaries."""
        row_bytes = self.d * (self.stored_dtype or self.dtype).itemsize
        target = max(1, fragment_bytes(self.n * row_bytes, FRAGMENT_BYTES) // row_bytes)
        bounds = [*range(0, self.n, target), self.n]
        return [
            Fragment(index, start, stop, self._where(start, stop))
            for index, (start, stop) in enumerate(itertools.pairwise(bounds))
        ]

    def _own_fragments(self) -> list[Fragment]:
        """Each shard's own fragments, at its rows' global positions."""
        fragments: list[Fragment] = []
        for index, shard in enumerate(self._shards):
            for own in self._shard(index).fragments():
                start, stop = shard.start + own.start, shard.start + own.stop
                fragments.append(Fragment(len(fragments), start, stop, shard.name))
        return fragments

    def _where(self, start: int, stop: int) -> str:
        first, last = self._owner(start), self._owner(stop - 1)
        if first == last:
            return self._shards[first].name
        return f"{self._shards[first].name} … {self._shards[last].name}"

    def _owner(self, row: int) -> int:
        return int(np.searchsorted(self._starts, row, side="right")) - 1

    def fragments(self) -> list[Fragment]:
        return list(self._fragments)

    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        step = chunk_rows or self.default_chunk_rows()

        def blocks() -> Iterator[npt.NDArray[np.floating[Any]]]:
            for index in range(self._owner(fragment.start), self._owner(fragment.stop - 1) + 1):
                shard = self._shards[index]
                if not shard.n:
                    continue  # an empty file: nothing to read (and nothing to open)
                low = max(fragment.start, shard.start) - shard.start
                high = min(fragment.stop, shard.stop) - shard.start
                part = Fragment(0, low, high, shard.name)
                opened = self._shard(index)
                if isinstance(opened, ArraySource) and opened.copies_rows:
                    chunks = opened.read_copies(part, step)  # a shard cut short: an error
                else:
                    chunks = opened.read(part, step)
                for chunk in chunks:
                    yield chunk.values

        yield from exact_chunks(blocks(), fragment.start, step)

    def _by_shard(self, rows: npt.ArrayLike) -> Iterator[tuple[int, Ints, Ints]]:
        """(shard, shard-local rows, their indices in ``rows``) per shard that holds some."""
        positions = as_row_positions(rows, self.n)
        owners = np.searchsorted(self._starts, positions, side="right") - 1
        for index in np.unique(owners).tolist():
            where = np.flatnonzero(owners == index)
            yield index, positions[where] - self._shards[index].start, where

    def take(self, rows: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        positions = as_row_positions(rows, self.n)
        out = np.empty((len(positions), self.d), dtype=self.dtype)
        for index, local, where in self._by_shard(positions):
            out[where] = self._shard(index).take(local)
        return out

    def ids(self, rows: npt.ArrayLike) -> list[Any] | None:
        if self._ids is not None:
            return self._ids.ids(as_row_positions(rows, self.n))
        if self.id_column is None:
            return None
        positions = as_row_positions(rows, self.n)
        out: list[Any] = [None] * len(positions)
        for index, local, where in self._by_shard(positions):
            for slot, value in zip(
                where.tolist(), self._shard(index).ids(local) or [], strict=True
            ):
                out[slot] = value
        return out

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["dtype"] = self._stored_as
        info["files"] = len(self._shards)
        if self.empty:
            info["empty_files"] = self.empty[:IGNORED_SHOWN]
            info["empty_file_count"] = len(self.empty)
        if self._ids is not None:
            info["ids_from"] = self._ids.location
        return info


def _check_agrees(shard: EmbeddingSource, first: EmbeddingSource) -> None:
    """An input error naming ``shard`` when it is not the same kind of vectors as ``first``."""
    if shard.d != first.d:
        raise InputError(shard.path, f"has dimension {shard.d:,}, but {first.path} has {first.d:,}")
    stored, expected = shard.describe()["dtype"], first.describe()["dtype"]  # bfloat16 too
    if stored != expected:
        raise InputError(shard.path, f"holds {stored}, but {first.path} holds {expected}")
    if shard.id_column != first.id_column:
        raise InputError(
            shard.path,
            f"id column {shard.id_column!r} differs from {first.path}'s ({first.id_column!r})",
        )


class IdTable:
    """Row ids from a parquet file or a directory of parquet files beside the vectors
    (``--ids-from``): its rows in path order are the vectors' rows in order, file by file when
    both have as many files. The id column is ``column``, else one named ``id``, else the only
    column."""

    def __init__(self, location: str, column: str | None, vectors: ShardedSource) -> None:
        self.location = location
        path = Path(location)
        if not path.exists():
            raise InputError(location, "no such file or directory (--ids-from)")
        if path.is_dir():
            root = str(path.resolve())
            files = list_parquet_files(pafs.LocalFileSystem(), root, location)
            self._names = [location.rstrip("/") + file[len(root) :] for file in files]
        else:
            files, self._names = [str(path.resolve())], [location]
        self._files = files
        self.column = self._column(0, column)
        rows = [self._rows(index) for index in range(len(files))]
        self._starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        self._check_rows(rows, vectors)

    def _column(self, index: int, column: str | None) -> str:
        file = self._names[index]
        with _reading(file):
            names = pq.read_schema(self._files[index]).names
        if column is not None:
            if column not in names:
                raise InputError(
                    file, f"--id-column {column!r} not found; the file has {', '.join(names)}"
                )
            return column
        if "id" in names:
            return "id"
        if len(names) == 1:
            return names[0]
        raise InputError(
            file, f"which column holds the ids? name it with --id-column ({', '.join(names[:8])})"
        )

    def _rows(self, index: int) -> int:
        file = self._files[index]
        with _reading(self._names[index]):
            schema = pq.read_schema(file)
            if self.column not in schema.names:
                raise InputError(self._names[index], f"has no column {self.column!r}")
            return int(pq.read_metadata(file).num_rows)

    def _check_rows(self, rows: list[int], vectors: ShardedSource) -> None:
        shard_rows = vectors.shard_rows
        if len(rows) == len(shard_rows):
            for file, count, shard, expected in zip(
                self._names, rows, vectors._shards, shard_rows, strict=True
            ):
                if count != expected:
                    raise InputError(
                        file,
                        f"holds {count:,} ids, but its shard {shard.name} has {expected:,} rows",
                    )
        if sum(rows) != vectors.n:
            raise InputError(
                self.location, f"holds {sum(rows):,} ids, but the vectors have {vectors.n:,} rows"
            )

    def ids(self, positions: Ints) -> list[Any]:
        out: list[Any] = [None] * len(positions)
        owners = np.searchsorted(self._starts, positions, side="right") - 1
        for index in np.unique(owners).tolist():
            where = np.flatnonzero(owners == index)
            local = positions[where] - self._starts[index]
            with _reading(self._names[index]):
                column = pq.read_table(self._files[index], columns=[self.column]).column(0)
            picked = column.take(pa.array(local)).to_pylist()
            for slot, value in zip(where.tolist(), picked, strict=True):
                out[slot] = json_safe(value)
        return out


class _reading(ReadErrors):
    """Turn pyarrow's errors reading a metadata file into input errors naming it."""

    def __init__(self, file: str) -> None:
        self.file = file

    def problem(self, error: BaseException) -> InputError | None:
        if not isinstance(error, pa.ArrowException | OSError):
            return None
        return InputError(self.file, f"cannot read parquet: {first_line(error)}")

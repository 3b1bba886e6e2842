"""Parquet files and directories of parquet files, streamed by record batch.

The layouts (a list or fixed-size-list column, or one float column per dimension) and the id
column are those of :mod:`embaudit.sources.columns`.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from embaudit.array_types import Ints
from embaudit.errors import InputError
from embaudit.sources.base import FRAGMENT_BYTES as BASE_FRAGMENT_BYTES
from embaudit.sources.base import (
    Chunk,
    EmbeddingSource,
    Fragment,
    RaggedRow,
    as_row_positions,
    available_cores,
    check_shape,
    fragment_bytes,
    json_safe,
)
from embaudit.sources.columns import Layout, batch_matrix, id_candidates, layout_of
from embaudit.sources.readers import ReadErrors, first_line


@dataclass
class _File:
    name: str  # as reported: the path the user gave, or the URI
    path: str  # the path within the filesystem
    start: int  # global position of the file's first row
    n: int
    row_group_starts: npt.NDArray[np.int64]  # file-local position of each row group's first row


#: Parquet files a source keeps open at once.
OPEN_FILES = 8
#: At most this many row groups are decoded at once by :meth:`ParquetSource.take` (one per
#: core): decoding a row group is single-threaded in Arrow, and the rows drawn before a pass
#: touch most of a file's row groups.
TAKE_THREADS = 4

#: Target size of a fragment, in stored vector bytes: whole row groups of one file are grouped
#: until they reach it (see :func:`~embaudit.sources.base.fragment_bytes`).
FRAGMENT_BYTES = BASE_FRAGMENT_BYTES


def list_parquet_files(filesystem: pafs.FileSystem, path: str, name: str) -> list[str]:
    """The parquet files under a directory, in path order, skipping hidden and ``_`` files."""
    with _reading(name):
        infos = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
    base = path.rstrip("/")
    files = sorted(
        info.path
        for info in infos
        if info.type == pafs.FileType.File
        and info.path.endswith(".parquet")
        and not any(
            part.startswith((".", "_")) for part in info.path[len(base) :].strip("/").split("/")
        )
    )
    if not files:
        raise InputError(name, "directory holds no .parquet files")
    return files


class ParquetSource(EmbeddingSource):
    """A parquet file or a directory of parquet files (read in path order), on any pyarrow
    filesystem: a local path, or a URI such as ``s3://bucket/prefix`` or ``gs://bucket/prefix``.

    Files are opened lazily and the source pickles without its open handles, so an engine can
    ship it to workers that each open only the files of their fragments.
    """

    format = "parquet"

    def __init__(
        self,
        location: str | Path,
        *,
        column: str | None = None,
        id_column: str | None = None,
        filesystem: tuple[pafs.FileSystem, str] | None = None,
    ) -> None:
        """``location`` is a local path, or the URI that ``filesystem`` — (filesystem, path
        within it), as :func:`pyarrow.fs.FileSystem.from_uri` returns — resolves."""
        self.path = str(location)
        if filesystem is None:  # a local path: the filesystem wants it absolute
            filesystem = (pafs.LocalFileSystem(), str(Path(location).resolve()))
        self._filesystem, root = filesystem
        self._handles: dict[int, pq.ParquetFile] = {}
        with _reading(self.path):
            info = self._filesystem.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise InputError(self.path, "no such file or directory")
        if info.type == pafs.FileType.Directory:
            paths = list_parquet_files(self._filesystem, root, self.path)
            names = [_name(self.path, root, path) for path in paths]
        else:
            paths, names = [root], [self.path]
        self._files: list[_File] = []
        layout: Layout | None = None
        start = 0
        for index, (path, name) in enumerate(zip(paths, names, strict=True)):
            self._files.append(_File(name, path, start, 0, np.zeros(1, dtype=np.int64)))
            parquet_file = self._open(index)
            schema = parquet_file.schema_arrow
            file_layout, file_id_column = layout_of(schema, name, column, id_column)
            file_id_type = None if file_id_column is None else schema.field(file_id_column).type
            if layout is None:
                layout, self.id_column, id_type = file_layout, file_id_column, file_id_type
                self.id_candidates = id_candidates(schema, layout, self.id_column)
                first_file = name
            elif (merged := _common_layout(layout, file_layout)) is None:
                raise InputError(name, _mismatch(file_layout, layout, first_file))
            elif (file_id_column, file_id_type) != (self.id_column, id_type):
                raise InputError(
                    name,
                    f"id column {_describe_id(file_id_column, file_id_type)} differs from "
                    f"{first_file} ({_describe_id(self.id_column, id_type)})",
                )
            else:
                layout = merged
            metadata = parquet_file.metadata
            sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
            group_starts = np.concatenate([[0], np.cumsum(sizes[:-1])]).astype(np.int64)
            self._files[index] = _File(name, path, start, metadata.num_rows, group_starts)
            start += metadata.num_rows
        assert layout is not None
        self._layout = layout
        self.dtype = layout.dtype
        self.n = start
        d = layout.d if layout.d is not None else self._first_list_length()
        self.n, self.d = check_shape((self.n, d), self.path, "data")
        self._starts = np.array([f.start for f in self._files], dtype=np.int64)
        self._fragments = self._cut()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}  # open files stay with the process that opened them
        return state

    def _open(self, index: int) -> pq.ParquetFile:
        """The open file ``index``; at most :data:`OPEN_FILES` stay open (least recently used
        closed first), so a dataset of thousands of files needs a handful of descriptors."""
        handle = self._handles.pop(index, None)
        if handle is None:
            with _reading(self._files[index].name):
                handle = self._new_handle(index)
            while len(self._handles) >= OPEN_FILES:
                self._handles.pop(next(iter(self._handles))).close(force=True)
        self._handles[index] = handle  # most recently used last
        return handle

    def _new_handle(self, index: int) -> pq.ParquetFile:
        """A new handle on file ``index``, streamed (see :data:`_READ_BUFFER_BYTES`)."""
        return pq.ParquetFile(
            self._filesystem.open_input_file(self._files[index].path),
            pre_buffer=False,
            buffer_size=_READ_BUFFER_BYTES,
        )

    def _cut(self) -> list[Fragment]:
        """Fragments: runs of whole row groups of one file, of at least FRAGMENT_BYTES (or the
        rest of the file)."""
        row_bytes = self.d * self.dtype.itemsize
        target = max(1, fragment_bytes(self.n * row_bytes, FRAGMENT_BYTES) // row_bytes)
        fragments: list[Fragment] = []
        for file in self._files:
            bounds = [*file.row_group_starts.tolist(), file.n]
            first = 0
            for group in range(1, len(bounds)):
                if bounds[group] - bounds[first] >= target or group == len(bounds) - 1:
                    fragments.append(
                        Fragment(
                            len(fragments),
                            file.start + bounds[first],
                            file.start + bounds[group],
                            file.name,
                        )
                    )
                    first = group
        kept = [fragment for fragment in fragments if fragment.n]  # empty files read nothing
        return [replace(fragment, index=index) for index, fragment in enumerate(kept)]

    def fragments(self) -> list[Fragment]:
        return list(self._fragments)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["files"] = len(self._files)
        info["layout"] = self._layout.kind
        if self._layout.kind != "wide":
            info["column"] = self._layout.columns[0]
        return info

    def _first_list_length(self) -> int:
        """The length of the first vector that is not null (0 when there are no rows)."""
        column = self._layout.columns[0]
        for index, file in enumerate(self._files):
            local = 0
            with _reading(file.name):
                batches = self._open(index).iter_batches(batch_size=_PROBE_ROWS, columns=[column])
                for batch in batches:
                    vectors = batch.column(0)
                    present = np.flatnonzero(vectors.is_valid().to_numpy(zero_copy_only=False))
                    if len(present):
                        row = int(present[0])
                        length = int(pc.list_value_length(vectors.slice(row, 1))[0].as_py())
                        if length == 0:
                            raise InputError(
                                file.name, f"column {column!r}: empty vector at row {local + row}"
                            )
                        return length
                    local += batch.num_rows
        if self.n:
            raise InputError(self.path, f"column {column!r}: every vector is null")
        return 0

    # Reading ----------------------------------------------------------------------------------

    def _to_numpy(
        self, batch: pa.RecordBatch, file: _File, first_row: int
    ) -> npt.NDArray[np.floating[Any]]:
        """Convert a record batch to an (rows, d) array (see :func:`columns.batch_matrix`),
        naming a ragged row by its file-local position and row group."""
        try:
            return batch_matrix(batch, self._layout, self.d, self.dtype)
        except RaggedRow as ragged:
            row = first_row + ragged.row
            group = int(np.searchsorted(file.row_group_starts, row, side="right")) - 1
            raise InputError(
                file.name,
                f"column {self._layout.columns[0]!r}: ragged vectors ({ragged.found} values, "
                f"expected {self.d}) at row {row} (row group {group})",
            ) from None

    def _columns(self) -> list[str]:
        return list(self._layout.columns)

    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        step = chunk_rows or self.default_chunk_rows()
        index = int(np.searchsorted(self._starts, fragment.start, side="right")) - 1
        file = self._files[index]
        local_start, local_stop = fragment.start - file.start, fragment.stop - file.start
        groups = np.flatnonzero(
            (file.row_group_starts >= local_start) & (file.row_group_starts < local_stop)
        ).tolist()
        local = local_start
        if groups:
            handle = self._open(index)
            with _reading(file.name):
                for batch in handle.iter_batches(
                    batch_size=step, row_groups=groups, columns=self._columns()
                ):
                    values = self._to_numpy(batch, file, local)
                    yield Chunk(file.start + local, values)
                    local += batch.num_rows
        if local != local_stop:
            raise InputError(
                file.name,
                f"read {local - local_start} rows of row groups {groups[0] if groups else 0}.."
                f"{groups[-1] if groups else 0} but the footer promises {local_stop - local_start}",
            )

    def _by_row_group(self, rows: npt.ArrayLike) -> Iterator[tuple[int, int, Ints, Ints]]:
        """(file index, row group, file-local rows, their indices in ``rows``) per row group
        touched by the global positions ``rows``."""
        positions = as_row_positions(rows, self.n)
        order = np.argsort(positions, kind="stable")
        sorted_positions = positions[order]
        file_index = np.searchsorted(self._starts, sorted_positions, side="right") - 1
        for f in np.unique(file_index).tolist():
            file = self._files[f]
            in_file = np.flatnonzero(file_index == f)
            local = sorted_positions[in_file] - file.start
            group_index = np.searchsorted(file.row_group_starts, local, side="right") - 1
            for g in np.unique(group_index).tolist():
                in_group = np.flatnonzero(group_index == g)
                yield f, g, local[in_group], order[in_file[in_group]]

    def take(self, rows: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        """The rows at ``rows``, each row group that holds some of them decoded once; the row
        groups are decoded on one thread per core (each with its own handle on the file), and
        every thread writes its own rows of the result."""
        positions = as_row_positions(rows, self.n)
        out = np.empty((len(positions), self.d), dtype=self.dtype)
        work = list(self._by_row_group(positions))
        threads = min(len(work), TAKE_THREADS, available_cores())
        if threads > 1:
            with ThreadPoolExecutor(threads, thread_name_prefix="embaudit-take") as pool:
                for done in [pool.submit(self._take_from_group, *w, out, True) for w in work]:
                    done.result()
        else:
            for f, g, local, where in work:
                self._take_from_group(f, g, local, where, out)
        # The decoded row groups go back to the system: Arrow's pool would keep them, and the
        # pass that follows decodes its batches on other threads, which do not reuse them
        # (1.7 GiB instead of 1.2 at the peak of a 1M x 768 audit).
        pa.default_memory_pool().release_unused()
        return out

    def _take_from_group(
        self,
        f: int,
        g: int,
        local: Ints,
        where: Ints,
        out: npt.NDArray[np.floating[Any]],
        own_handle: bool = False,
    ) -> None:
        """Rows ``local`` (file-local positions, sorted) of row group ``g`` of file ``f`` into
        ``out[where]``; with ``own_handle``, through a handle of its own (another thread may be
        reading the file), closed after. The group is decoded _TAKE_BATCH_ROWS rows at a time:
        a whole 65,536-row group of 768-d vectors would hold about 900 MB at once (its values,
        their list levels and a combined copy)."""
        file = self._files[f]

        def pick(handle: pq.ParquetFile) -> None:
            first = int(file.row_group_starts[g])
            for batch in handle.iter_batches(
                batch_size=_TAKE_BATCH_ROWS, row_groups=[g], columns=self._columns()
            ):
                stop = first + batch.num_rows
                inside = slice(*np.searchsorted(local, [first, stop]))
                if inside.stop > inside.start:
                    values = self._to_numpy(batch, file, first)
                    out[where[inside]] = values[local[inside] - first]
                first = stop

        with _reading(file.name):
            if own_handle:
                handle = self._new_handle(f)
                try:
                    pick(handle)
                finally:
                    handle.close(force=True)
            else:
                pick(self._open(f))

    def ids(self, rows: npt.ArrayLike) -> list[Any] | None:
        """The ids of the given rows, reading only the row groups that hold them."""
        if self.id_column is None:
            return None
        positions = as_row_positions(rows, self.n)
        out: list[Any] = [None] * len(positions)
        for f, g, local, where in self._by_row_group(positions):
            file = self._files[f]
            with _reading(file.name):
                column = self._open(f).read_row_group(g, columns=[self.id_column]).column(0)
            picked = column.take(pa.array(local - int(file.row_group_starts[g]))).to_pylist()
            for index, value in zip(where.tolist(), picked, strict=True):
                out[index] = json_safe(value)
        return out


#: Rows read at a time while looking for the first vector that is not null.
_PROBE_ROWS = 1024
#: Rows of a row group decoded at a time by :meth:`ParquetSource.take`.
_TAKE_BATCH_ROWS = 8192

#: Read-ahead of the parquet reader. Pre-buffering whole column chunks (pyarrow's default)
#: keeps every row group read so far alive while a file is iterated; a bounded stream does not.
_READ_BUFFER_BYTES = 4 * 2**20


def _name(location: str, root: str, path: str) -> str:
    """How a file under a directory is named in messages: the location given, then the rest."""
    return location.rstrip("/") + "/" + path[len(root.rstrip("/")) :].lstrip("/")


class _reading(ReadErrors):
    """Turn pyarrow's read errors into input errors that name the file."""

    def __init__(self, file: str | Path) -> None:
        self.file = file

    def problem(self, error: BaseException) -> InputError | None:
        if not isinstance(error, pa.ArrowException | OSError):
            return None
        return InputError(self.file, f"cannot read parquet: {first_line(error)}")


def _describe_id(name: str | None, arrow_type: pa.DataType | None) -> str:
    return "absent" if name is None else f"{name!r} ({arrow_type})"


def _common_layout(first: Layout, other: Layout) -> Layout | None:
    """The layout that reads both files' vectors, or None. pandas writes ``list<float>`` and
    pyarrow ``fixed_size_list<float>`` for the same vectors: shards of one dataset may mix them
    when the column, dtype and dimension agree. They are then read as lists, whose lengths are
    checked row by row."""
    if first == other:
        return first
    kinds = {first.kind, other.kind}
    if kinds != {"list", "fixed_size_list"}:
        return None
    if first.columns != other.columns or first.dtype != other.dtype:
        return None
    fixed = first.d if first.kind == "fixed_size_list" else other.d
    listed = first.d if first.kind == "list" else other.d
    if listed is not None and listed != fixed:
        return None
    return Layout("list", first.columns, first.dtype, fixed)


def _mismatch(found: Layout, expected: Layout, first_file: str) -> str:
    if found.kind == expected.kind and found.columns == expected.columns and found.d != expected.d:
        return (
            f"column {found.columns[0]!r} has dimension {found.d}, but {first_file} has "
            f"{expected.d}"
        )
    return (
        f"schema differs from {first_file} ({found.kind} {list(found.columns)[:4]} "
        f"{found.dtype.name} vs {expected.kind} {list(expected.columns)[:4]} {expected.dtype.name})"
    )

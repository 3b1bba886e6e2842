"""Vector files behind a URI (``s3://bucket/prefix``, ``gs://…``, ``hdfs://…``, ``file://…``):
``.npy``, big-ann (``.fbin`` / ``.f16bin`` / ``.u8bin`` / ``.i8bin``) and ``.safetensors`` files,
one or a prefix of them, read by byte ranges through the filesystem pyarrow resolves from the URI.

Their rows lie at fixed offsets, so a fragment or a few rows are one or a few ranged reads: no
copy of the file is made, on the driver or on a cluster's workers (each reads its own
fragments). The headers are parsed as for local files (the same errors); the layouts a ranged
read cannot serve row by row (a Fortran-order ``.npy``, whose rows are scattered across the
file) are input errors that say to copy the file locally.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.fs as pafs

from embaudit.errors import InputError
from embaudit.sources.arrays import _read_npy_header, _validate_header
from embaudit.sources.base import (
    Chunk,
    EmbeddingSource,
    Fragment,
    as_row_positions,
    check_shape,
)
from embaudit.sources.tensors import DTYPES, _header, _pick, _validate
from embaudit.sources.vecs import BIGANN, bigann_shape

#: Bytes read at a time by :meth:`RemoteRows.take` when the rows asked for lie close together
#: (one ranged read instead of one per row), and the most one such read spans.
_GAP_BYTES = 1 << 16
_RUN_BYTES = 8 << 20


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem a URI names and the path within it (credentials from the usual places:
    the environment, ``~/.aws``, instance roles)."""
    return pafs.FileSystem.from_uri(uri)


@dataclass(frozen=True)
class Layout:
    """Where a file's rows lie: ``n`` rows of ``d`` values of ``stored`` dtype, the first at byte
    ``offset``, contiguous."""

    n: int
    d: int
    stored: np.dtype[Any]
    offset: int
    format: str
    bfloat16: bool = False


def layout(stream: Any, size: int, suffix: str, key: str | None, where: str) -> tuple[Layout, str]:
    """The layout of the file open as ``stream`` (``size`` bytes), and how messages name it (the
    tensor's name joins a ``.safetensors`` file's)."""
    if suffix == ".npy":
        shape, fortran, dtype = _read_npy_header(stream, where)
        offset = stream.tell()
        _validate_header(shape, dtype, size - offset, where)
        if fortran:
            raise InputError(
                where,
                "a Fortran-order .npy scatters each row across the file: copy it locally, or "
                "save it in C order (np.save(path, np.ascontiguousarray(x)))",
            )
        return Layout(shape[0], shape[1], dtype, offset, "npy"), where
    if suffix in BIGANN:
        n, d = bigann_shape(stream, size, BIGANN[suffix], where)
        return Layout(n, d, BIGANN[suffix], 8, suffix[1:]), where
    tensors, data_start = _header(stream, size, where)
    key = _pick(tensors, key, where)
    where = f"{where}[{key}]"
    entry = tensors[key]
    shape, dtype, begin = _validate(entry, size - data_start, where)
    check_shape(shape, where, "data")  # a tensor of no rows, as an empty array is
    bfloat16 = entry["dtype"] == "BF16"
    return (
        Layout(shape[0], shape[1], dtype, data_start + begin, "safetensors", bfloat16),
        where,
    )


def _stored_dtype(found: Layout) -> np.dtype[Any]:
    return DTYPES["BF16"] if found.bfloat16 else found.stored


class RemoteRows(EmbeddingSource):
    """The rows of one vector file on a pyarrow filesystem, read by byte ranges (see the
    module). Pickles as its filesystem and path: each worker opens the file itself."""

    def __init__(
        self, filesystem: pafs.FileSystem, path: str, name: str, found: Layout, size: int
    ) -> None:
        self._filesystem, self._file, self._layout, self.size = filesystem, path, found, size
        self.path, self.format, self.n, self.d = name, found.format, found.n, found.d
        stored = _stored_dtype(found)
        self.dtype = stored.newbyteorder("=")
        if found.bfloat16:  # its bits, read as float32 (described as bfloat16)
            self.dtype = np.dtype(np.float32)
        elif stored.kind in "iu":  # quantized: read as float32
            self.stored_dtype, self.dtype = stored, np.dtype(np.float32)
        self._row_bytes = found.d * stored.itemsize
        self._handle: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_handle": None}  # an open file stays with its process

    def _open(self) -> Any:
        if self._handle is None:
            try:
                self._handle = self._filesystem.open_input_file(self._file)
            except FileNotFoundError:
                raise InputError(
                    self.path, "disappeared during the run; no report is made from part of the data"
                ) from None
            except (pa.ArrowException, OSError) as exc:
                raise InputError(self.path, f"cannot read ({_first_line(exc)})") from None
        return self._handle

    def _bytes(self, first_row: int, count: int) -> Any:
        """The stored bytes of rows [first_row, first_row + count), or an input error when the
        file no longer holds them."""
        want = count * self._row_bytes
        where = self._layout.offset + first_row * self._row_bytes
        try:
            raw = self._open().read_at(want, where)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(self.path, f"cannot read ({_first_line(exc)})") from None
        if len(raw) != want:
            raise InputError(
                self.path,
                f"truncated while read: rows {first_row:,}–{first_row + count:,} end past the "
                "end of the file; no report is made from part of the data",
            )
        return raw  # a pyarrow Buffer: numpy reads it without a copy

    def _values(self, raw: Any, count: int) -> npt.NDArray[np.floating[Any]]:
        stored = _stored_dtype(self._layout)
        rows = np.frombuffer(raw, dtype=stored).reshape(count, self.d)
        if self._layout.bfloat16:
            return (rows.astype(np.uint32) << 16).view(np.float32)
        return np.ascontiguousarray(rows, dtype=self.dtype)

    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        step = chunk_rows or self.default_chunk_rows()
        for start in range(fragment.start, fragment.stop, step):
            count = min(step, fragment.stop - start)
            yield Chunk(start, self._values(self._bytes(start, count), count))

    def take(self, rows: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        """The rows at ``rows``: rows within _GAP_BYTES of each other are one ranged read of
        at most _RUN_BYTES (or one row)."""
        positions = as_row_positions(rows, self.n)
        wanted, back = np.unique(positions, return_inverse=True)
        out = np.empty((len(wanted), self.d), dtype=self.dtype)
        gap = max(1, _GAP_BYTES // self._row_bytes)
        span = max(1, _RUN_BYTES // self._row_bytes)
        index = 0
        while index < len(wanted):
            first = int(wanted[index])
            # The run: the next rows that follow within the gap and fit in one read.
            stop = index + 1
            while (
                stop < len(wanted)
                and wanted[stop] - wanted[stop - 1] <= gap
                and wanted[stop] - first < span
            ):
                stop += 1
            count = int(wanted[stop - 1]) - first + 1
            block = self._values(self._bytes(first, count), count)
            out[index:stop] = block[wanted[index:stop] - first]
            index = stop
        return out[back.reshape(-1)]

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self._layout.bfloat16:
            info["dtype"] = "bfloat16"
        return info


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass(frozen=True)
class RemoteFiles:
    """The files of a pyarrow filesystem, as :class:`~embaudit.sources.shards.ShardedSource`
    lists, checks and opens them (its local counterpart reads the OS's)."""

    filesystem: pafs.FileSystem
    uri: str  # the URI given, for messages
    root: str  # the path within the filesystem

    def name(self, path: str) -> str:
        """``path`` as messages name it: the URI's scheme and the path."""
        scheme = self.uri.partition("://")[0]
        return f"{scheme}://{path}" if scheme else path

    def stat(self, path: str) -> tuple[int, int | None]:
        """(size, modification time in ns, None where the store has none); FileNotFoundError
        when gone, OSError when the store cannot say."""
        try:
            info = self.filesystem.get_file_info(path)
        except (pa.ArrowException, OSError) as exc:
            raise OSError(_first_line(exc)) from None
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(path)
        return int(info.size or 0), info.mtime_ns

    def walk(self) -> Iterator[tuple[str, PurePosixPath]]:
        """(path relative to the root, path) of every file below the root, sorted; an input
        error naming the URI when the store will not list them."""
        selector = pafs.FileSelector(self.root, recursive=True)
        try:
            infos = self.filesystem.get_file_info(selector)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(self.uri, f"cannot list ({_first_line(exc)})") from None
        files = sorted(info.path for info in infos if info.type == pafs.FileType.File)
        for path in files:
            yield path[len(self.root) :].lstrip("/"), PurePosixPath(path)

    def opener(self, key: str | None) -> Callable[[PurePosixPath], EmbeddingSource]:
        """Opens one file of this filesystem as :class:`RemoteRows` (``key``: a safetensors
        file's tensor)."""
        return _Opener(self, key)


@dataclass(frozen=True)
class _Opener:
    files: RemoteFiles
    key: str | None

    def __call__(self, path: PurePosixPath) -> EmbeddingSource:
        files, where = self.files, self.files.name(str(path))
        try:
            with files.filesystem.open_input_file(str(path)) as stream:
                size = stream.size()  # what opening it learned: no second request for it
                found, where = layout(stream, size, path.suffix.lower(), self.key, where)
        except FileNotFoundError:
            raise InputError(where, "no such file") from None
        except (pa.ArrowException, OSError) as exc:
            raise InputError(where, f"cannot read ({_first_line(exc)})") from None
        return RemoteRows(files.filesystem, str(path), where, found, size)

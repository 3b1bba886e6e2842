"""Sources backed by one NumPy array: in memory, a memory-mapped ``.npy``, or a ``.npz`` member.

The array holds floats (float16/32/64), or quantized int8 / uint8 vectors, read as float32."""

from __future__ import annotations

import math
import mmap
import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import InputError
from embaudit.sources.base import (
    Chunk,
    EmbeddingSource,
    Fragment,
    as_row_positions,
    check_float_dtype,
    check_shape,
)

_PAGE = mmap.PAGESIZE
#: Whether rows can be read by offset without the mapping (POSIX).
_PREAD = hasattr(os, "preadv")


class ArraySource(EmbeddingSource):
    """Rows of a 2-D float array.

    When the array is a view of a read-only memory map, pages are released after each chunk has
    been consumed, so a pass over a file larger than memory keeps only a chunk resident.
    """

    def __init__(
        self,
        array: npt.NDArray[Any],
        *,
        path: str | None = None,
        format: str = "array",
        mapping: mmap.mmap | None = None,
        data_offset: int = 0,
        file: str | None = None,
    ) -> None:
        self.path = path
        self.format = format
        what = "array" if path is None else "data"
        check_float_dtype(array.dtype, path, what, quantized=True)
        self.n, self.d = check_shape(array.shape, path, what)
        self.dtype = array.dtype.newbyteorder("=")
        if self.dtype.kind in "iu":  # quantized vectors: read as float32
            self.stored_dtype, self.dtype = self.dtype, np.dtype(np.float32)
        self._array = array
        self._mapping = mapping
        self._data_offset = data_offset
        # Bytes from one row to the next when each row's values are contiguous (C order, or
        # rows with a header of their own such as .fvecs); None otherwise (Fortran order).
        row_major = array.strides[1] == array.itemsize and array.strides[0] >= self.d * (
            array.itemsize
        )
        self._row_stride: int | None = array.strides[0] if row_major else None
        # Where the first row starts in the mapped file (mappings start at the file's byte 0).
        self._first_byte: int | None = None
        self._file = file  # the file ``mapping`` maps, from its first byte
        if mapping is not None and file is not None:
            start = np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0]
            self._first_byte = array.__array_interface__["data"][0] - start
        #: Opens this source again from its file (set by ``open_source``): a memory map does
        #: not pickle, so a mapped source travels to an engine's workers as this call.
        self.reopen: Callable[[], EmbeddingSource] | None = None

    @property
    def mapped(self) -> bool:
        """Whether the rows are a memory map of a file (not an array in memory)."""
        return self._mapping is not None

    def __reduce_ex__(self, protocol: Any) -> Any:
        if self._mapping is not None and self.reopen is not None:
            return (_call, (self.reopen,))
        return super().__reduce_ex__(protocol)

    def _native(self, block: npt.NDArray[Any]) -> npt.NDArray[np.floating[Any]]:
        return np.ascontiguousarray(block, dtype=self.dtype)

    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        step = chunk_rows or self.default_chunk_rows()
        self._advise(mmap.MADV_SEQUENTIAL if hasattr(mmap, "MADV_SEQUENTIAL") else None)
        for start in range(fragment.start, fragment.stop, step):
            stop = min(start + step, fragment.stop)
            yield Chunk(start, self._native(self._array[start:stop]))
            self._release(start, stop)

    @property
    def copies_rows(self) -> bool:
        """Whether :meth:`read_copies` can read this source (a mapped file of row-major rows)."""
        return (
            self._first_byte is not None
            and self._row_stride is not None
            and _PREAD
            and type(self).read is ArraySource.read  # no checks of its own while reading
        )

    def read_copies(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        """The chunks of :meth:`read`, read with ``pread`` into arrays of their own instead of
        through the mapping: a file truncated while it is read is an input error naming it,
        where touching a page of the mapping past the file's new end kills the process (SIGBUS).
        Needs :attr:`copies_rows`."""
        assert self._file is not None and self._first_byte is not None and self._row_stride
        step = chunk_rows or self.default_chunk_rows()
        stride, itemsize = self._row_stride, self._array.dtype.itemsize
        descriptor = os.open(self._file, os.O_RDONLY)
        try:
            for start in range(fragment.start, fragment.stop, step):
                count = min(step, fragment.stop - start)
                span = (count - 1) * stride + self.d * itemsize
                raw = bytearray(span)
                where, got = self._first_byte + start * stride, 0
                while got < span:
                    read = os.preadv(descriptor, [memoryview(raw)[got:]], where + got)
                    if read == 0:
                        raise InputError(
                            self.path,
                            f"truncated while read: rows {start:,}–{start + count:,} end past "
                            "the end of the file; no report is made from part of the data",
                        )
                    got += read
                rows: npt.NDArray[Any] = np.ndarray(
                    (count, self.d), dtype=self._array.dtype, buffer=raw, strides=(stride, itemsize)
                )
                yield Chunk(start, self._native(rows))
        finally:
            os.close(descriptor)

    def take(self, rows: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        positions = as_row_positions(rows, self.n)
        if self._first_byte is not None and self._row_stride is not None and _PREAD:
            return self._native(self._read_rows(positions))
        taken = self._native(self._array[positions])
        self._release_rows(positions)
        return taken

    def _read_rows(self, positions: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
        """The rows at ``positions`` of a mapped file, read with ``pread`` rather than through
        the mapping: a fault maps a whole large folio of the file (up to 2 MiB), so a few
        thousand scattered rows touched through the mapping would make most of a 3 GB file
        resident in this process (2.4 GB for 44,000 rows of 1M × 768 float32)."""
        assert self._file is not None and self._first_byte is not None and self._row_stride
        wanted, back = np.unique(positions, return_inverse=True)
        row_bytes = self.d * self._array.dtype.itemsize
        out = np.empty((len(wanted), row_bytes), dtype=np.uint8)
        descriptor = os.open(self._file, os.O_RDONLY)
        try:
            for slot, row in enumerate(wanted.tolist()):
                where = self._first_byte + row * self._row_stride
                if os.preadv(descriptor, [out[slot]], where) != row_bytes:
                    raise InputError(self.path, f"row {row} ends past the end of the file")
        finally:
            os.close(descriptor)
        rows = out.view(self._array.dtype).reshape(len(wanted), self.d)
        if len(wanted) == len(positions) and np.array_equal(wanted, positions):
            return rows  # sorted and distinct already (a read-ahead's): no copy
        return rows[back.reshape(-1)]

    # Page management for memory-mapped arrays -------------------------------------------------

    def _advise(self, option: int | None, start: int = 0, length: int | None = None) -> None:
        if self._mapping is None or option is None or not hasattr(self._mapping, "madvise"):
            return
        begin = start - start % _PAGE
        end = len(self._mapping) if length is None else min(len(self._mapping), start + length)
        if end > begin:
            self._mapping.madvise(option, begin, end - begin)

    def _release_rows(self, rows: npt.NDArray[np.int64]) -> None:
        """Drop the mapped pages around scattered rows. A fault maps more than the page it
        needs (fault-around, large folios): without this, a thousand random rows keep hundreds
        of megabytes of the file resident."""
        if self._mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        if self._row_stride is None:
            self._advise(mmap.MADV_DONTNEED)
            return
        row_bytes = self._row_stride
        span = 2**21  # the largest fault-around or folio a fault may map
        for row in np.unique(rows).tolist():
            first = self._data_offset + row * row_bytes
            begin = max(0, first - first % span - span)
            self._advise(mmap.MADV_DONTNEED, begin, 3 * span)

    def _release(self, start: int, stop: int) -> None:
        """Drop the mapped pages of rows [start, stop) from this process (not from the cache)."""
        if self._mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        if self._row_stride is not None:
            row_bytes = self._row_stride
            # Keep the page holding the next row: it may be shared with this chunk's last row.
            first = self._data_offset + start * row_bytes
            last = self._data_offset + stop * row_bytes
            last -= last % _PAGE
            if last > first:
                self._advise(mmap.MADV_DONTNEED, first, last - first)
        else:  # Fortran order: a chunk of rows touches every column's pages.
            self._advise(mmap.MADV_DONTNEED)


def _call(function: Callable[[], EmbeddingSource]) -> EmbeddingSource:
    return function()


# .npy ---------------------------------------------------------------------------------------


#: numpy parses a .npy header with ast.literal_eval, which CPython 3.11 cannot always run on two
#: threads at once ("SystemError: AST constructor recursion depth mismatch", seen once in CI): a
#: directory of shards opens its files on several threads, so the headers are parsed one at a
#: time (a few microseconds each).
_HEADER_LOCK = threading.Lock()


def _read_npy_header(stream: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Parse a .npy header at the stream's position; leave the stream at the start of the data."""
    try:
        version = np.lib.format.read_magic(stream)
    except ValueError:
        raise InputError(where, "not a .npy file (missing or wrong magic string)") from None
    try:
        if version not in ((1, 0), (2, 0)):
            raise InputError(where, f".npy format version {version[0]}.{version[1]} not supported")
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        with _HEADER_LOCK:
            shape, fortran, dtype = read(stream)
    except (ValueError, SyntaxError, TypeError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]
        raise InputError(where, f"corrupt .npy header ({detail})") from None
    return tuple(shape), bool(fortran), dtype


def _validate_header(
    shape: tuple[int, ...], dtype: np.dtype[Any], available: int, where: str
) -> int:
    check_float_dtype(dtype, where, "data", quantized=True)
    check_shape(shape, where, "data")
    needed = math.prod(int(size) for size in shape) * dtype.itemsize  # exact: no overflow
    if available < needed:
        raise InputError(
            where,
            f"truncated: the header promises shape {shape} {dtype.name} ({needed:,} bytes of data) "
            f"but only {available:,} bytes follow",
        )
    return needed


def open_npy(path: Path) -> ArraySource:
    where = str(path)
    with path.open("rb") as stream:
        shape, fortran, dtype = _read_npy_header(stream, where)
        offset = stream.tell()
        _validate_header(shape, dtype, os.fstat(stream.fileno()).st_size - offset, where)
        mapping = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    array: npt.NDArray[Any] = np.ndarray(
        shape, dtype=dtype, buffer=mapping, offset=offset, order="F" if fortran else "C"
    )
    return ArraySource(
        array, path=where, format="npy", mapping=mapping, data_offset=offset, file=str(path)
    )


# .npz ---------------------------------------------------------------------------------------

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length


def open_npz(path: Path, key: str | None) -> ArraySource:
    where = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(where, f"not a readable .npz (zip) archive ({exc})") from None
    with archive:
        members = {n.removesuffix(".npy"): n for n in archive.namelist() if n.endswith(".npy")}
        if not members:
            raise InputError(where, "the .npz archive holds no arrays")
        if key is None:
            if len(members) > 1:
                names = ", ".join(sorted(members))
                raise InputError(
                    where, f"the archive holds {len(members)} arrays ({names}); pick one with --key"
                )
            key = next(iter(members))
        elif key not in members:
            names = ", ".join(sorted(members))
            raise InputError(where, f"--key {key!r} not found; the archive holds: {names}")
        where = f"{path}[{key}]"
        info = archive.getinfo(members[key])
        if info.compress_type == zipfile.ZIP_STORED:
            return _map_stored_member(path, info, where)
        try:
            with archive.open(info) as stream:
                shape, fortran, dtype = _read_npy_header(stream, where)
                needed = _validate_header(shape, dtype, info.file_size, where)
                data = stream.read(needed)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise InputError(where, f"corrupt archive member ({exc})") from None
        except (RuntimeError, NotImplementedError) as exc:  # encrypted, unknown compression
            raise InputError(where, f"cannot read archive member ({exc})") from None
    if len(data) < needed:
        raise InputError(where, f"truncated: {len(data):,} of {needed:,} bytes of data")
    array = np.frombuffer(data, dtype=dtype)
    array = array.reshape(shape, order="F" if fortran else "C")
    return ArraySource(array, path=where, format="npz")


def _map_stored_member(path: Path, info: zipfile.ZipInfo, where: str) -> ArraySource:
    """Memory-map an uncompressed archive member (what ``np.savez`` writes)."""
    with path.open("rb") as stream:
        header = b""
        if 0 <= info.header_offset < os.fstat(stream.fileno()).st_size:
            stream.seek(info.header_offset)
            header = stream.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise InputError(where, "corrupt archive: bad local file header")
        _, name_length, extra_length = _LOCAL_HEADER.unpack(header)
        member_start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        stream.seek(member_start)
        shape, fortran, dtype = _read_npy_header(stream, where)
        offset = stream.tell()
        header_length = offset - member_start
        file_left = os.fstat(stream.fileno()).st_size - offset
        _validate_header(shape, dtype, min(info.file_size - header_length, file_left), where)
        mapping = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    array: npt.NDArray[Any] = np.ndarray(
        shape, dtype=dtype, buffer=mapping, offset=offset, order="F" if fortran else "C"
    )
    return ArraySource(
        array, path=where, format="npz", mapping=mapping, data_offset=offset, file=str(path)
    )

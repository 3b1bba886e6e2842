"""The ANN-benchmark layouts, memory-mapped: TEXMEX and big-ann.

- TEXMEX (``.fvecs`` float32, ``.bvecs`` uint8): every row is ``<int32 d>`` followed by its ``d``
  values, little-endian. Every row repeats d: the first and the last row are checked on opening,
  every row when it is read.
- big-ann (``.fbin`` float32, ``.f16bin`` float16, ``.u8bin`` uint8, ``.i8bin`` int8): a header
  ``<uint32 n><uint32 d>``, then the n × d values, little-endian.

uint8 and int8 vectors are embeddings (quantized): their values are audited as float32 and the
report's ``input.dtype`` names the storage.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import InputError, NoRows
from embaudit.sources.arrays import ArraySource
from embaudit.sources.base import Chunk, Fragment, as_row_positions, check_shape

#: TEXMEX suffixes and the dtype of their values.
TEXMEX: dict[str, np.dtype[Any]] = {".fvecs": np.dtype("<f4"), ".bvecs": np.dtype("u1")}
#: big-ann suffixes and the dtype of their values.
BIGANN: dict[str, np.dtype[Any]] = {
    ".fbin": np.dtype("<f4"),
    ".f16bin": np.dtype("<f2"),
    ".u8bin": np.dtype("u1"),
    ".i8bin": np.dtype("i1"),
}

_INT32 = np.dtype("<i4")


def open_vectors(path: Path) -> ArraySource:
    """Open a TEXMEX or big-ann file by its suffix."""
    suffix = path.suffix.lower()
    if suffix in TEXMEX:
        return _open_texmex(path, TEXMEX[suffix])
    return _open_bigann(path, BIGANN[suffix])


def bigann_shape(stream: Any, size: int, dtype: np.dtype[Any], where: str) -> tuple[int, int]:
    """(n, d) from a big-ann file's header at the start of ``stream`` (a file of ``size`` bytes),
    checked against the size: an input error naming ``where`` when they disagree."""
    header = stream.read(8)
    if len(header) < 8:
        raise InputError(where, f"truncated: {size} bytes, shorter than the 8-byte header")
    n, d = (int(v) for v in np.frombuffer(header, dtype="<u4"))
    check_shape((n, d), where, "the header's shape")
    needed = n * d * dtype.itemsize
    if size - 8 != needed:
        problem = "truncated" if size - 8 < needed else "wrong header"
        raise InputError(
            where,
            f"{problem}: the header promises {n:,} × {d:,} {dtype.name} "
            f"({needed:,} bytes of data) but {size - 8:,} bytes follow",
        )
    return n, d


def _open_bigann(path: Path, dtype: np.dtype[Any]) -> ArraySource:
    where = str(path)
    with path.open("rb") as stream:
        n, d = bigann_shape(stream, os.fstat(stream.fileno()).st_size, dtype, where)
        mapping = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    array: npt.NDArray[Any] = np.ndarray((n, d), dtype=dtype, buffer=mapping, offset=8)
    return ArraySource(
        array,
        path=where,
        format=path.suffix.lower()[1:],
        mapping=mapping,
        data_offset=8,
        file=str(path),
    )


def _open_texmex(path: Path, dtype: np.dtype[Any]) -> TexmexSource:
    where = str(path)
    with path.open("rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        first = stream.read(4)
        if size == 0:
            raise NoRows(where, "empty file (no rows)")
        if len(first) < 4:
            raise InputError(where, f"truncated: {size} bytes, shorter than a row's 4-byte header")
        d = int(np.frombuffer(first, dtype=_INT32)[0])
        if d <= 0 or 4 + d * dtype.itemsize > size:
            raise InputError(
                where,
                f"wrong header: the first row declares d = {d:,}, which a file of {size:,} bytes "
                f"cannot hold (is it a {path.suffix} file?)",
            )
        row_bytes = 4 + d * dtype.itemsize
        if size % row_bytes:
            raise InputError(
                where,
                f"truncated or not {path.suffix}: {size:,} bytes is not a whole number of rows of "
                f"{row_bytes:,} bytes (4 + {d:,} × {dtype.itemsize}); {size % row_bytes:,} bytes "
                "left over",
            )
        mapping = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    n = size // row_bytes
    values: npt.NDArray[Any] = np.ndarray(
        (n, d), dtype=dtype, buffer=mapping, offset=4, strides=(row_bytes, dtype.itemsize)
    )
    dims: npt.NDArray[Any] = np.ndarray(
        (n,), dtype=_INT32, buffer=mapping, offset=0, strides=(row_bytes,)
    )
    source = TexmexSource(
        values, dims, path=where, format=path.suffix.lower()[1:], mapping=mapping, file=str(path)
    )
    source.check_dims(np.array([0, n - 1]))
    return source


class TexmexSource(ArraySource):
    """A ``.fvecs`` / ``.bvecs`` file: rows that each repeat their dimension, checked as they
    are read."""

    def __init__(
        self,
        values: npt.NDArray[Any],
        dims: npt.NDArray[Any],
        *,
        path: str,
        format: str,
        mapping: mmap.mmap,
        file: str | None = None,
    ) -> None:
        super().__init__(
            values, path=path, format=format, mapping=mapping, data_offset=4, file=file
        )
        self._dims = dims

    def check_dims(self, rows: npt.NDArray[np.int64] | slice) -> None:
        """Raise an InputError naming the first of ``rows`` whose header is not d."""
        declared = np.asarray(self._dims[rows])
        bad = np.flatnonzero(declared != self.d)
        if len(bad):
            row = int(rows.start + bad[0] if isinstance(rows, slice) else rows[bad[0]])
            raise InputError(
                self.path,
                f"inconsistent dimensions: row {row:,} declares d = {int(declared[bad[0]]):,}, "
                f"the first row d = {self.d:,} (truncated or corrupt file?)",
            )

    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        for chunk in super().read(fragment, chunk_rows):
            self.check_dims(slice(chunk.start, chunk.stop))
            yield chunk

    def take(self, rows: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        positions = as_row_positions(rows, self.n)
        self.check_dims(positions)
        return super().take(positions)

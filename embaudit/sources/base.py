"""The one interface every loader serves: a stream of chunks and random row access."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import InputError

#: Storage dtypes embaudit reads. Compute is float32, with float64 where sums grow.
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
#: Quantized vectors (int8 / uint8) are embeddings too: their values are audited, read as
#: float32 chunks, and the storage dtype is reported.
QUANTIZED_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8))

#: Default chunk size in bytes of float64 work per chunk (chunks are converted for accumulation).
CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Chunk:
    """A block of consecutive rows.

    ``values`` has shape ``(rows, d)``, the storage float dtype in native byte order, C order, and
    must be treated as read-only (it may be a view of a memory map). ``start`` is the global row
    position of its first row.
    """

    start: int
    values: npt.NDArray[np.floating[Any]]

    @property
    def stop(self) -> int:
        return self.start + len(self.values)


@dataclass(frozen=True)
class StoredIndex:
    """The vector index stored with the data (a pgvector or Lance index, ann-benchmarks'
    ``distance``): what ``--index`` and ``--index-metric`` default to, so that the index checks
    judge what is deployed.

    ``spec`` is the faiss ``index_factory`` string of the same structure (None when faiss has
    none, or the source names a metric only); ``metric`` ranks as ``--index-metric``'s names
    (``cosine``, ``l2``, ``ip``; None when it is none of them)."""

    spec: str | None
    metric: str | None
    #: What faiss's string does not carry: build settings (``efConstruction``) and the search
    #: knob's deployed default (``efSearch``, ``nprobe``), and where that default comes from.
    build: tuple[tuple[str, int], ...] = ()
    search: tuple[tuple[str, int], ...] = ()
    defaults_from: str = ""


@dataclass(frozen=True)
class Fragment:
    """A run of consecutive rows [start, stop) that can be read on its own: the piece of work an
    engine maps (a parquet file, or a run of its row groups). ``where`` names the file."""

    index: int
    start: int
    stop: int
    where: str | None

    @property
    def n(self) -> int:
        return self.stop - self.start


class EmbeddingSource(ABC):
    """``n`` vectors of dimension ``d`` stored as ``dtype``, read without loading them whole."""

    path: str | None
    format: str
    n: int
    d: int
    dtype: np.dtype[Any]  # the dtype of the chunks' values
    id_column: str | None = None
    #: Columns besides the vectors and the id column that could name the rows (integers or
    #: strings), for a hint where items are matched by row order.
    id_candidates: tuple[str, ...] = ()
    #: The dtype the values are stored in when the chunks convert them (int8 / uint8 read as
    #: float32); the report's ``input.dtype`` names it.
    stored_dtype: np.dtype[Any] | None = None

    def default_chunk_rows(self) -> int:
        return max(1, CHUNK_BYTES // (8 * self.d))

    def fragments(self) -> list[Fragment]:
        """The source cut into fragments, in row order; they cover every row exactly once.

        The cut depends on the data only, never on the engine, so that every engine reads the
        same chunks and folds the same partial statistics."""
        return [Fragment(0, 0, self.n, self.path)]

    @abstractmethod
    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        """Yield the rows of one fragment in order, ``chunk_rows`` at a time (fewer at the end of
        the fragment)."""

    def chunks(self, chunk_rows: int | None = None) -> Iterator[Chunk]:
        """Yield every row in order, fragment by fragment."""
        for fragment in self.fragments():
            yield from self.read(fragment, chunk_rows)

    @abstractmethod
    def take(self, rows: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.floating[Any]]:
        """Return the rows at the given global positions, in the order given, shape (len, d)."""

    def ids(self, rows: npt.NDArray[np.integer[Any]]) -> list[Any] | None:
        """The id-column values of the given rows, or None when the input has no id column."""
        return None

    def stored_index(self) -> StoredIndex | None:
        """The vector index stored with the data, reported in ``input.index``; None here."""
        return None

    def describe(self) -> dict[str, Any]:
        """The ``input`` section of the report."""
        info: dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "n": self.n,
            "d": self.d,
            "dtype": (self.stored_dtype or self.dtype).name,
        }
        if self.id_column is not None:
            info["id_column"] = self.id_column
        return info


def check_float_dtype(
    dtype: np.dtype[Any], where: str | None, what: str = "array", *, quantized: bool = False
) -> None:
    """Raise an InputError unless ``dtype`` is float16, float32 or float64 (any byte order), or
    with ``quantized`` int8 / uint8."""
    if dtype.fields is not None:
        raise InputError(where, f"{what} has a structured dtype {dtype}; expected float16/32/64")
    if quantized and dtype in QUANTIZED_DTYPES:
        return
    if dtype.kind != "f" or dtype.newbyteorder("=") not in FLOAT_DTYPES:
        kind = {
            "O": "Python objects",
            "U": "strings",
            "S": "bytes",
            "c": "complex numbers",
            "b": "booleans",
            "i": "integers",
            "u": "unsigned integers",
        }.get(dtype.kind, "non-float values")
        allowed = "float16, float32 or float64" + (" (or int8 / uint8)" if quantized else "")
        hint = "; convert with .astype(np.float32)" if dtype.kind in "iub" else ""
        raise InputError(
            where, f"{what} holds {kind} (dtype {dtype.name}); expected {allowed}{hint}"
        )


def check_shape(shape: tuple[int, ...], where: str | None, what: str = "array") -> tuple[int, int]:
    """Raise an InputError unless ``shape`` is (n >= 1, d >= 1); return (n, d)."""
    if len(shape) != 2:
        raise InputError(
            where,
            f"{what} has {len(shape)} dimension(s), shape {shape}; "
            "expected a 2-D array of shape (rows, dimensions)",
        )
    n, d = shape
    if n < 0 or d < 0:
        raise InputError(where, f"{what} has a negative dimension (shape {shape})")
    if n == 0:
        raise InputError(where, f"{what} has no rows (shape {shape})")
    if d == 0:
        raise InputError(where, f"{what} has zero dimensions (shape {shape})")
    return n, d


def exact_chunks(
    blocks: Iterable[npt.NDArray[np.floating[Any]]], start: int, step: int
) -> Iterator[Chunk]:
    """Re-cut blocks of consecutive rows (as a reader returns them, of any size) into chunks of
    exactly ``step`` rows (fewer at the end), the first at global position ``start``: the chunks
    of a source do not depend on how its reader happens to batch."""
    pending: list[npt.NDArray[np.floating[Any]]] = []
    held = 0
    for block in blocks:
        pending.append(block)
        held += len(block)
        while held >= step:
            joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
            yield Chunk(start, np.ascontiguousarray(joined[:step]))
            start += step
            pending, held = [joined[step:]], held - step
    if held:
        joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
        yield Chunk(start, np.ascontiguousarray(joined))


def as_row_positions(rows: npt.ArrayLike, n: int) -> npt.NDArray[np.int64]:
    """Validate global row positions for ``take``."""
    positions = np.asarray(rows, dtype=np.int64).reshape(-1)
    if positions.size and (positions.min() < 0 or positions.max() >= n):
        raise IndexError(f"row positions must lie in [0, {n})")
    return positions


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)

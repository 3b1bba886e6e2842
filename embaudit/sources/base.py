"""The one interface every loader serves: a stream of chunks and random row access."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import InputError, NoRows

#: Storage dtypes embaudit reads. Compute is float32, with float64 where sums grow.
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
#: Quantized vectors (int8 / uint8) are embeddings too: their values are audited, read as
#: float32 chunks, and the storage dtype is reported.
QUANTIZED_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8))

#: Default chunk size in bytes of float64 work per chunk (chunks are converted for accumulation).
CHUNK_BYTES = 64 * 2**20
#: Target size of a fragment, in stored vector bytes (whole row groups of a parquet file, a run of
#: rows of a directory of shards): large enough to amortise opening a file, small enough to
#: spread a single large file over a cluster.
FRAGMENT_BYTES = 256 * 2**20
#: Beyond FRAGMENT_BYTES × MAX_FRAGMENTS stored bytes, fragments grow instead of multiplying: a
#: cluster's driver tracks each fragment's task and its share of the duplicate shuffle.
MAX_FRAGMENTS = 2048


def fragment_bytes(total: int, target: int = FRAGMENT_BYTES) -> int:
    """The target size of a fragment of a source of ``total`` stored bytes."""
    return max(target, -(-total // MAX_FRAGMENTS))


#: At most this many skipped files of a directory are named in the report.
IGNORED_SHOWN = 20


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
class LiveResults:
    """What a stored index returned for a batch of queries at one search setting."""

    rows: npt.NDArray[np.int64]  # (queries, limit) row positions in rank order, -1 past the end
    server_ms: npt.NDArray[np.float64]  # (queries,) execution time of each query on the server
    index_used: int  # queries whose plan searched the index (the others scanned the rows)


class LiveIndex(ABC):
    """The vector index stored with the data, searched through the store's own query path
    (pgvector's ``ORDER BY … LIMIT``): what the index checks measure by default.

    ``knob`` is the search setting that trades recall for time, in the store's own name
    (``hnsw.ef_search``), ``default`` its value as the store sets it, ``ladder`` the settings a
    sweep tries; ``iterative`` the iterative-scan modes the store offers (empty: none)."""

    metric: str  # cosine, l2 or ip (--index-metric's names)
    knob: str
    default: int | None  # None: the store chooses (Lance's nprobes)
    ladder: tuple[int, ...]
    iterative: tuple[str, ...] = ()
    iterative_default: str | None = None
    where: str | None = None  # the filter every search carries (--where)
    #: Whose the default search setting is, and where a search's time is taken.
    settings_from: str = "the server's setting"
    timed: str = "on the server"

    @abstractmethod
    def title(self) -> str:
        """The index in a message: its kind, name, metric and parameters."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The index as the report shows it: its name, type, operator class, parameters and
        the search settings its queries get."""

    @abstractmethod
    def search(
        self,
        queries: npt.NDArray[np.floating[Any]],
        limit: int,
        setting: int | None = None,
        iterative: str | None = None,
    ) -> LiveResults:
        """The ``limit`` nearest rows of each query as the store returns them, at ``setting``
        of the knob (None: its default) and with the iterative scan ``iterative`` (None: the
        store's setting)."""

    @abstractmethod
    def set_statements(self, setting: int) -> list[str]:
        """The statements that make ``setting`` the knob's value: for the session, for
        every session."""

    def set_action(self, setting: int) -> str:
        """What to run to search at ``setting``."""
        session, *every = self.set_statements(setting)
        return f"Run {session}" + (f" (for every session: {every[0]})" if every else "")

    @abstractmethod
    def iterative_statement(self, mode: str) -> str:
        """The statement that turns the iterative scan ``mode`` on."""

    @abstractmethod
    def build_statement(self, where: str | None = None, metric: str | None = None) -> str:
        """The statement that builds a stronger index (when no setting of the knob reaches the
        recall wanted): of ``metric`` (None: the index's own), and with ``where`` a partial
        index of those rows."""


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
    #: Files of a directory skipped as holding no data (hidden files, ``_SUCCESS`` markers),
    #: named in the report's ``input.ignored``.
    ignored: tuple[str, ...] = ()

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

    def confirm_unchanged(self) -> None:  # noqa: B027 (optional hook)
        """Raise an InputError when the input is no longer what was opened (a file of a
        directory appeared, disappeared or changed): the engines call it after each pass, so
        that no report is made from part of the data. Nothing to confirm here."""

    def stored_index(self) -> StoredIndex | None:
        """The vector index stored with the data, reported in ``input.index``; None here."""
        return None

    def live_index(self) -> LiveIndex | None:
        """The stored index, searched through the store's own query path; None when the
        source has none this can search."""
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
        if self.ignored:
            info["ignored"] = list(self.ignored[:IGNORED_SHOWN])
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
        raise NoRows(where, f"{what} has no rows (shape {shape})")
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


class RaggedRow(Exception):
    """A vector of another length than the others: ``row`` within the batch, ``found`` values."""

    def __init__(self, row: int, found: int) -> None:
        self.row, self.found = row, found
        super().__init__(f"ragged vector at row {row} ({found} values)")


def json_safe(value: Any) -> Any:
    """Ids as JSON can carry them: numbers and strings as they are, anything else as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)

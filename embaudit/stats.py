"""One streaming pass over the source: defects, norms, per-dimension moments, duplicates.

Everything here is a mergeable statistic: each chunk is folded into the statistics of its
fragment (:func:`fold_fragment`, the map step an engine runs anywhere), and the fragments' parts
are merged in row order (:func:`finish`, the reduce), so the pass never holds more than a chunk
of vectors. Sums run in float64 (float16 and float32 values square exactly into float64, so norms
of values near 1e30 or 1e-30 stay finite).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import IncompleteError
from embaudit.sources import Chunk, EmbeddingSource, Fragment

#: How many offending rows a finding lists; the count is always complete.
ROW_LIST_CAP = 20
#: Bytes of float64 rows folded at a time within a chunk (see _FragmentFolder.reduce).
FOLD_BYTES = 2**20
#: Candidate duplicate rows fetched at a time for exact verification.
_VERIFY_BATCH = 8192
#: A dimension is dead when its standard deviation is at most this share of the root mean square
#: coordinate (EA004's default threshold): far below any informative spread, well above the
#: rounding noise of a constant float32 or float64 column.
DEAD_RATIO = 1e-6

Floats = npt.NDArray[np.float64]
Rows = npt.NDArray[np.int64]


@dataclass(frozen=True)
class RowSet:
    """Rows singled out by a check: the full count, the first positions and their ids."""

    count: int
    rows: list[int]
    ids: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "rows": self.rows}
        if self.ids is not None:
            out["ids"] = self.ids
        out["truncated"] = self.count > len(self.rows)
        return out


@dataclass
class Moments:
    """Count, mean and sum of squared deviations per dimension (Chan et al. 1979 merge)."""

    count: int
    mean: Floats
    m2: Floats

    @classmethod
    def empty(cls, d: int) -> Moments:
        return cls(0, np.zeros(d), np.zeros(d))

    @classmethod
    def of(cls, block: Floats) -> Moments:
        """Moments of one block, two-pass: the mean, then the squared deviations from it.

        The one-pass form sum x^2 - n mean^2 loses about eps * mean^2 of the variance, so a
        constant column of a value larger than the typical coordinate (a bias of 0.3 in unit
        rows of d = 384) came out with a spread above EA004's threshold. Here a constant column
        keeps only the rounding of its mean, about eps * |mean| in std. Magnitudes beyond
        ~1e154 overflow to inf, which reads as 'not constant'.
        """
        n = len(block)
        if not n:
            return cls.empty(block.shape[1])
        with np.errstate(over="ignore", invalid="ignore"):
            mean = block.sum(axis=0) / n
            centred = block - mean
            m2 = np.einsum("ij,ij->j", centred, centred)
        return cls(n, mean, np.where(np.isnan(m2), np.inf, m2))

    def merge(self, other: Moments) -> Moments:
        count = self.count + other.count
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        with np.errstate(over="ignore", invalid="ignore"):
            m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / count)
        return Moments(count, mean, m2)

    @property
    def std(self) -> Floats:
        """Population standard deviation per dimension (zeros when count < 1)."""
        return np.sqrt(self.m2 / max(self.count, 1))


@dataclass
class ScanStats:
    """What one pass learns about the source. Row positions are global, 0-based."""

    n: int
    d: int
    dtype: np.dtype[Any]
    norms: Floats  # L2 norm of every row; NaN for non-finite rows
    non_finite: RowSet
    nan_rows: int
    inf_rows: int
    zero: RowSet
    clean: npt.NDArray[np.bool_]  # finite and non-zero: what the diagnostics use
    moments: Moments  # over clean rows
    unit_sum: Floats  # sum of the clean rows scaled to unit norm, per dimension
    unit_sq_sum: Floats  # sum of their squares, per dimension
    duplicate_rows: int  # clean rows identical to an earlier clean row
    duplicate_groups: list[RowSet] = field(default_factory=list)  # first groups, capped
    duplicate_group_count: int = 0

    @property
    def n_clean(self) -> int:
        return int(self.clean.sum())

    @property
    def clean_norms(self) -> Floats:
        return self.norms[self.clean]

    @property
    def rms_coordinate(self) -> float:
        """sqrt(mean ||x||^2 / d) over the clean rows (see :func:`coordinate_rms`)."""
        return coordinate_rms(self.clean_norms, self.d)


def dead_dimension_mask(
    std: Floats, rms_coordinate: float, ratio: float = DEAD_RATIO
) -> npt.NDArray[np.bool_]:
    """The dead dimensions (EA004): standard deviation at most ``ratio`` times the root mean
    square coordinate sqrt(mean ||x||^2 / d). A constant dimension is dead whatever its value,
    and so is one whose spread is rounding noise (a constant float64 column can have a computed
    std near 1e-17 of its value): no per-dimension scale may be divided by such a spread."""
    return np.asarray(std <= ratio * rms_coordinate)


def coordinate_rms(norms: Floats, d: int) -> float:
    """sqrt(mean ||x||^2 / d) from the row norms: the typical magnitude of one coordinate.
    Computed relative to the largest norm so that it cannot overflow."""
    if not len(norms):
        return 0.0
    largest = float(norms.max())
    if largest == 0:
        return 0.0
    return largest * float(np.sqrt(np.mean((norms / largest) ** 2) / d))


def row_norms(values: npt.NDArray[np.floating[Any]]) -> Floats:
    """L2 norm of each row, accumulated in float64 and safe from overflow and underflow.

    float16/32 inputs square exactly into float64. float64 rows whose sum of squares leaves the
    normal range are recomputed scaled by their largest magnitude (as LAPACK's dnrm2 does).
    """
    wide = values.astype(np.float64, copy=False)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        sum_sq = np.einsum("ij,ij->i", wide, wide)
        norms: Floats = np.sqrt(sum_sq)
        at_risk = np.flatnonzero((sum_sq > np.finfo(np.float64).max / 2) | (sum_sq < 2.0**-900))
        if len(at_risk):
            at_risk = at_risk[np.isfinite(wide[at_risk]).all(axis=1)]
        if len(at_risk):
            block = wide[at_risk]
            scale = np.abs(block).max(axis=1)
            safe = np.where(scale > 0, scale, 1.0)
            ratio = block / safe[:, None]
            norms[at_risk] = safe * np.sqrt(np.einsum("ij,ij->i", ratio, ratio))
    return norms


def clean_mask(
    values: npt.NDArray[np.floating[Any]], dtype: np.dtype[Any]
) -> npt.NDArray[np.bool_]:
    """Rows that are finite, with a finite norm of at least the dtype's smallest normal number:
    the rows the diagnostics use (the same rule as the pass: EA001 and EA002 set the others
    apart)."""
    norms = row_norms(values)
    finite = np.isfinite(values).all(axis=1) & np.isfinite(norms)
    return np.asarray(finite & (norms >= np.finfo(dtype).tiny))


def _row_words(values: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.unsignedinteger[Any]]:
    """The bit patterns of the values (unsigned words of the same width), -0.0 folded into +0.0:
    what "identical rows" means for EA003."""
    # -0.0 + 0.0 == +0.0 under round-to-nearest; C order, so that the rows' words are contiguous
    folded = np.add(values, values.dtype.type(0), order="C")
    return folded.view(np.dtype(f"u{values.dtype.itemsize}"))


def _hash_rows(values: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.uint64]:
    """A 64-bit multiply-sum hash of each row's bits as stored (mod 2^64): equal rows hash equal;
    a prefilter only.

    Each value's word has its high half folded into its low half (w ^ (w >> half its width):
    one-to-one, so equal words stay equal and different ones different) before the sum of the
    words times their own odd weights. Without it, values of lower precision than their dtype
    leave the low bits of every word zero, and of the sum: a float32 value stored as float64
    (a float32 export written by pandas, or widened on the way) has 29 trailing zero bits, so
    every hash was a multiple of 2^29 — 35 bits of hash, colliding about n^2 / 2^36 times (28
    rows to fetch again and compare on a 1M-row export, 2.5 s on its parquet copy); int8 or
    bfloat16 values read as float32 keep 16-17 zero bits."""
    words = _row_words(values)  # a new array: folded in place
    words ^= words >> (4 * words.dtype.itemsize)
    hashes: npt.NDArray[np.uint64] = np.einsum(
        "ij,j->i", words, _hash_weights(words.shape[1]), dtype=np.uint64
    )  # one pass, wraps
    return hashes


@dataclass(frozen=True)
class CleanRows:
    """The finite, non-zero rows of one chunk, as the consumers of the pass see them."""

    positions: Rows  # global row positions
    values: npt.NDArray[np.floating[Any]]  # (r, d) as stored (float16, float32 or float64)
    norms: Floats  # (r,) L2 norms, float64
    unit: npt.NDArray[np.float32]  # (r, d) the rows scaled to unit norm, float32
    rows_read: int = 0  # rows of the chunk, clean or not


#: Called with the clean rows of the chunks one worker of a pass takes, in row order.
ChunkConsumer = Callable[[CleanRows], None]


@functools.cache
def _hash_weights(words: int) -> npt.NDArray[np.uint64]:
    """Fixed odd weights, one per word of a row (read-only: shared): the hash only proposes
    candidates, which are then compared exactly."""
    weights: npt.NDArray[np.uint64] = np.random.default_rng(0x5EED).integers(
        0, 2**64 - 1, size=words, dtype=np.uint64, endpoint=True
    ) | np.uint64(1)
    weights.flags.writeable = False
    return weights


@dataclass
class PartStats:
    """The mergeable statistics of one fragment: its rows' norms and hashes, the positions of its
    non-finite rows, and per-dimension sums.

    Fragments are merged in row order by :func:`finish` whichever engine produced them, so the
    floating-point sums are folded in the same order everywhere and agree to the last bit. Per
    row, a part carries 16 bytes (a norm and a hash), whatever the dimension."""

    start: int
    norms: Floats  # L2 norm of every row; NaN for non-finite rows
    hashes: npt.NDArray[np.uint64]  # row hashes of the clean rows (0 elsewhere)
    non_finite: Rows  # global positions of the rows with NaN or Inf (or a norm beyond range)
    nan_rows: int  # how many of them hold a NaN
    moments: Moments  # over clean rows
    unit_sum: Floats
    unit_sq_sum: Floats

    @property
    def stop(self) -> int:
        return self.start + len(self.norms)


def fold_fragment(
    source: EmbeddingSource,
    fragment: Fragment,
    *,
    consumers: Sequence[Sequence[ChunkConsumer]] = ((),),
    chunk_rows: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
    statistics: bool = True,
) -> PartStats | None:
    """Read one fragment and compute its mergeable statistics (None without ``statistics``:
    only the clean rows the consumers see).

    ``consumers`` holds one list of consumers per worker: the kNN search and the sample
    collector of that worker, which see the clean rows of the chunks it takes, in row order
    (each worker's own search and collector merge with the others' afterwards). With more than
    one worker, each runs on its own thread and takes the next chunk as it comes free (numpy
    and the float32 products release the GIL): every core reads, folds and searches. A chunk's
    statistics are folded into the fragment's in row order whatever worker computed them, so
    the result depends neither on the number of workers nor on their timing. The data is read
    once whatever is measured. ``on_chunk`` gets the number of rows of each chunk done.
    """
    folder = _FragmentFolder(
        source, fragment, keep_unit=any(map(len, consumers)), statistics=statistics
    )
    order = _InOrder(source.read(fragment, chunk_rows), folder, on_chunk)
    if len(consumers) == 1:
        order.work(consumers[0])
    else:
        threads = [
            threading.Thread(target=order.work, args=(own,), name=f"embaudit-pass-{i}", daemon=True)
            for i, own in enumerate(consumers)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException as error:  # Ctrl-C: the workers stop at their next chunk
            order.stop(error)
            raise
    if order.failure is not None:
        raise order.failure
    if order.read != fragment.n:  # a reader that yields fewer rows than it promised is a bug
        raise RuntimeError(f"fragment {fragment.index}: read {order.read} of {fragment.n} rows")
    return folder.finished() if statistics else None


class _InOrder:
    """The chunks of one fragment shared out among workers: each worker takes the next chunk
    under a lock, reduces it (:meth:`_FragmentFolder.reduce`) and feeds its consumers; the
    chunks' statistics are folded in row order as they become ready. The first exception of
    any worker stops the others (at their next chunk) and is kept in ``failure``."""

    def __init__(
        self,
        chunks: Iterator[Chunk],
        folder: _FragmentFolder,
        on_chunk: Callable[[int], None] | None,
    ) -> None:
        self.chunks, self.folder, self.on_chunk = chunks, folder, on_chunk
        self.lock = threading.Lock()
        self.taken = 0  # chunks handed out
        self.folded = 0  # chunks folded, in order
        self.ready: dict[int, _ChunkPart] = {}
        self.read = 0
        self.failure: BaseException | None = None

    def work(self, consumers: Sequence[ChunkConsumer]) -> None:
        try:
            while True:
                with self.lock:
                    if self.failure is not None:
                        return
                    chunk = next(self.chunks, None)
                    index, self.taken = self.taken, self.taken + 1
                    if chunk is None:
                        return
                    # Copied before the next chunk is read: a memory-mapped reader drops a
                    # chunk's pages then, and a later touch would fault them back in for good.
                    # Nothing of the chunk is kept (a view would keep a parquet reader's whole
                    # row group alive while the reader moves on to the next).
                    start, rows, values = (
                        chunk.start,
                        chunk.stop - chunk.start,
                        np.array(chunk.values, copy=True),
                    )
                    del chunk
                part, clean = self.folder.reduce(start, values)
                for consume in consumers:
                    consume(clean)
                with self.lock:
                    self.ready[index] = part
                    while self.folded in self.ready:
                        self.folder.fold(self.ready.pop(self.folded))
                        self.folded += 1
                    self.read += rows
                    if self.on_chunk is not None:
                        self.on_chunk(rows)
        except BaseException as error:  # raised by fold_fragment, in the caller's thread
            self.stop(error)

    def stop(self, error: BaseException) -> None:
        """Keep the first ``error``; every worker stops before its next chunk."""
        with self.lock:
            if self.failure is None:
                self.failure = error


@dataclass
class _ChunkPart:
    """The statistics of one chunk, before they are folded into its fragment's."""

    rows: slice  # the chunk's rows within the fragment
    norms: Floats
    non_finite: Rows  # global positions
    nan_rows: int
    clean_rows: npt.NDArray[np.bool_]
    moments: Moments | None = None  # None without statistics
    unit_sum: Floats | None = None
    unit_sq_sum: Floats | None = None
    hashes: npt.NDArray[np.uint64] | None = None


class _FragmentFolder:
    """The statistics of one fragment: :meth:`reduce` computes a chunk's (on any thread) and its
    clean rows for the consumers, :meth:`fold` adds them to the fragment's :class:`PartStats`,
    chunk after chunk in row order. ``keep_unit``:
    whether the clean rows carry their unit rows (someone consumes them)."""

    def __init__(
        self,
        source: EmbeddingSource,
        fragment: Fragment,
        *,
        keep_unit: bool,
        statistics: bool = True,
    ) -> None:
        d = source.d
        self.d, self.start, self.keep_unit = d, fragment.start, keep_unit
        self.statistics = statistics
        self.dtype, self.tiny = source.dtype, np.finfo(source.dtype).tiny
        self.non_finite: list[Rows] = []
        self.part = PartStats(
            start=fragment.start,
            norms=np.empty(fragment.n, dtype=np.float64),
            hashes=np.zeros(fragment.n, dtype=np.uint64),
            non_finite=np.empty(0, dtype=np.int64),
            nan_rows=0,
            moments=Moments.empty(d),
            unit_sum=np.zeros(d),
            unit_sq_sum=np.zeros(d),
        )

    def reduce(
        self, start: int, values: npt.NDArray[np.floating[Any]]
    ) -> tuple[_ChunkPart, CleanRows]:
        """The statistics of the chunk of rows from ``start`` whose stored values are ``values``,
        and its clean rows for the consumers (any thread).

        One sweep, a few hundred rows at a time: each block is widened to float64 (float16 and
        float32 widen exactly), and its norms, clean rows, sums, unit rows and the hashes of its
        stored bits are computed while it stays in the cache (the whole chunk widened would be
        read from memory once per sum)."""
        if values.dtype != self.dtype:  # a source's bug: the hashes would not compare
            raise RuntimeError(f"a chunk of {values.dtype} rows from a {self.dtype} source")
        n = len(values)
        step = max(1, FOLD_BYTES // (8 * self.d))
        chunk_norms = np.empty(n)
        clean_rows = np.empty(n, dtype=bool)
        nan_rows, kept = 0, 0
        unit_rows = np.empty((n if self.keep_unit else 0, self.d), np.float32)
        hashes = np.empty(n if self.statistics else 0, dtype=np.uint64)
        moments, unit_sum, unit_sq_sum = Moments.empty(self.d), np.zeros(self.d), np.zeros(self.d)
        for first in range(0, n, step):
            rows = slice(first, first + step)
            stored = values[rows]
            wide = stored.astype(np.float64)
            norms = row_norms(wide)
            # A NaN or an Inf makes the row's norm NaN or Inf (row_norms rescales only finite
            # rows), and a float64 row whose norm exceeds the float64 range is as unusable as
            # one with Inf: their norms are NaN from here on.
            finite = np.isfinite(norms)
            if not finite.all():
                nan_rows += int(np.isnan(wide[~finite]).any(axis=1).sum())
                norms[~finite] = np.nan
            clean = norms >= self.tiny  # NaN compares false
            chunk_norms[rows], clean_rows[rows] = norms, clean
            if not clean.all():
                stored, wide, norms = stored[clean], wide[clean], norms[clean]
            if not len(wide):
                continue
            out = slice(kept, kept + len(wide))
            kept += len(wide)
            if not (self.statistics or self.keep_unit):
                continue
            unit = wide / norms[:, None]  # float64: the cosine sums must be exact
            if self.keep_unit:
                unit_rows[out] = unit
            if self.statistics:
                moments = moments.merge(Moments.of(wide))
                unit_sum += unit.sum(axis=0)
                unit_sq_sum += np.einsum("ij,ij->j", unit, unit)
                hashes[out] = _hash_rows(stored)
        bad = np.flatnonzero(np.isnan(chunk_norms))
        part = _ChunkPart(
            slice(start - self.start, start + n - self.start),
            chunk_norms,
            start + bad,
            nan_rows,
            clean_rows,
        )
        if self.statistics:
            part.moments, part.unit_sum, part.unit_sq_sum = moments, unit_sum, unit_sq_sum
            part.hashes = hashes[:kept]
        positions = start + np.flatnonzero(clean_rows)
        clean_values = values if kept == n else values[clean_rows]
        clean = CleanRows(positions, clean_values, chunk_norms[clean_rows], unit_rows[:kept], n)
        return part, clean

    def fold(self, chunk: _ChunkPart) -> None:
        """Fold one chunk's statistics into the fragment's; called in row order."""
        part = self.part
        part.norms[chunk.rows] = chunk.norms
        if len(chunk.non_finite):
            self.non_finite.append(chunk.non_finite)
        part.nan_rows += chunk.nan_rows
        if chunk.moments is not None:
            assert chunk.unit_sum is not None and chunk.unit_sq_sum is not None
            assert chunk.hashes is not None
            part.moments = part.moments.merge(chunk.moments)
            part.unit_sum += chunk.unit_sum
            part.unit_sq_sum += chunk.unit_sq_sum
            part.hashes[chunk.rows][chunk.clean_rows] = chunk.hashes

    def finished(self) -> PartStats:
        """The statistics of the fragment, once every chunk is folded."""
        if self.non_finite:
            self.part.non_finite = np.concatenate(self.non_finite)
        return self.part


def finish(
    source: EmbeddingSource,
    parts: list[PartStats],
    take: Callable[[Rows], npt.NDArray[np.floating[Any]]] | None = None,
) -> ScanStats:
    """Merge the statistics of every fragment, in row order, into the statistics of the source.

    Consumes ``parts`` (the list is emptied as its per-row arrays are copied out, so the merge
    holds each row's data once). ``take`` fetches rows for the exact duplicate check (default:
    ``source.take``). Raises :class:`~embaudit.errors.IncompleteError` unless the parts cover
    every row exactly once: a report is never built from part of the data.
    """
    parts.sort(key=lambda part: part.start)
    covered = 0
    for part in parts:
        if part.start != covered:
            break
        covered = part.stop
    if covered != source.n:
        raise IncompleteError(source.path, f"only {covered:,} of {source.n:,} rows were read")
    d = source.d
    tiny = np.finfo(source.dtype).tiny
    moments, unit_sum, unit_sq_sum = Moments.empty(d), np.zeros(d), np.zeros(d)
    norms = np.empty(source.n)
    non_finite: list[Rows] = []
    nan_rows = 0
    hashes: list[npt.NDArray[np.uint64]] = []
    for part in parts:
        moments = moments.merge(part.moments)
        unit_sum += part.unit_sum
        unit_sq_sum += part.unit_sq_sum
        norms[part.start : part.stop] = part.norms
        non_finite.append(part.non_finite)
        nan_rows += part.nan_rows
        hashes.append(part.hashes)
    parts.clear()
    non_finite_rows = np.concatenate(non_finite)
    clean = norms >= tiny  # NaN (non-finite rows) compares false
    zero_rows = np.flatnonzero(~clean)
    zero_rows = zero_rows[~np.isnan(norms[zero_rows])]
    duplicate_rows, groups, group_count = _duplicates(source, hashes, clean, take or source.take)
    return ScanStats(
        n=source.n,
        d=d,
        dtype=source.dtype,
        norms=norms,
        non_finite=_row_set(source, non_finite_rows),
        nan_rows=nan_rows,
        inf_rows=len(non_finite_rows) - nan_rows,
        zero=_row_set(source, zero_rows),
        clean=clean,
        moments=moments,
        unit_sum=unit_sum,
        unit_sq_sum=unit_sq_sum,
        duplicate_rows=duplicate_rows,
        duplicate_groups=groups,
        duplicate_group_count=group_count,
    )


def scan(
    source: EmbeddingSource,
    *,
    chunk_rows: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
    consumers: Sequence[ChunkConsumer] = (),
) -> ScanStats:
    """Read the source once, fragment by fragment in this process, and compute every mergeable
    statistic (see :mod:`embaudit.engines` for the same pass on a cluster)."""
    parts = []
    for fragment in source.fragments():
        part = fold_fragment(
            source, fragment, consumers=[consumers], chunk_rows=chunk_rows, on_chunk=on_chunk
        )
        assert part is not None  # statistics were asked for
        parts.append(part)
    return finish(source, parts)


class RowCollector:
    """Keeps the clean rows at chosen positions as the chunks stream by (the geometry sample).

    Collectors of different fragments merge: the rows come back in the order they were drawn."""

    def __init__(self, positions: Rows) -> None:
        self.order = np.argsort(positions, kind="stable")
        self.positions = positions[self.order]
        self.rank: list[Rows] = []
        self.rows: list[Floats] = []

    def __call__(self, rows: CleanRows) -> None:
        # Both position lists are sorted: a merge by searchsorted finds the wanted clean rows.
        if not len(rows.positions):
            return
        at = np.searchsorted(rows.positions, self.positions).clip(max=len(rows.positions) - 1)
        found = rows.positions[at] == self.positions
        self.rank.append(self.order[found])
        self.rows.append(rows.values[at[found]].astype(np.float64))

    def fresh(self) -> RowCollector:
        """An empty collector of the same positions."""
        clone = RowCollector.__new__(RowCollector)
        clone.order, clone.positions, clone.rank, clone.rows = self.order, self.positions, [], []
        return clone

    def absorb(self, other: RowCollector) -> None:
        self.rank += other.rank
        self.rows += other.rows

    def collected(self, limit: int, d: int) -> Floats:
        """The first ``limit`` clean rows in the order they were drawn."""
        if not self.rows:
            return np.empty((0, d))
        rank, rows = np.concatenate(self.rank), np.concatenate(self.rows)
        return rows[np.argsort(rank, kind="stable")][:limit]


def _row_set(source: EmbeddingSource, rows: Rows) -> RowSet:
    listed = rows[:ROW_LIST_CAP]
    ids = source.ids(listed) if len(listed) else ([] if source.id_column else None)
    return RowSet(len(rows), [int(r) for r in listed], ids)


def _duplicates(
    source: EmbeddingSource,
    hashes: list[npt.NDArray[np.uint64]],
    clean: npt.NDArray[np.bool_],
    take: Callable[[Rows], npt.NDArray[np.floating[Any]]],
) -> tuple[int, list[RowSet], int]:
    """Exact duplicate rows among the clean rows.

    ``hashes`` are the row hashes of consecutive fragments. Hash values that occur more than once
    among the clean rows (found by sorting one copy of the hashes in place) make their rows
    candidates; candidates are fetched and grouped by a BLAKE2b-128 digest of their bits, so that
    only identical rows (up to -0.0 == 0.0) group. Returns the number of rows that repeat an
    earlier row, the first groups, and the group count. Beyond the hashes, it holds 8 bytes per
    row (the sorted copy) and the candidates.
    """
    bounds = np.cumsum([0, *(len(block) for block in hashes)])
    spans = list(zip(hashes, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    ordered = np.concatenate([block[clean[start:stop]] for block, start, stop in spans])
    ordered.sort()
    repeated_values = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    found: list[Rows] = [np.empty(0, dtype=np.int64)]
    for block, start, stop in spans:
        if len(repeated_values):
            at = np.searchsorted(repeated_values, block).clip(max=len(repeated_values) - 1)
            hit = (repeated_values[at] == block) & clean[start:stop]
            found.append(start + np.flatnonzero(hit))
    candidates = np.concatenate(found)
    groups: dict[bytes, list[int]] = {}
    for start in range(0, len(candidates), _VERIFY_BATCH):
        batch = candidates[start : start + _VERIFY_BATCH]
        words = _row_words(take(batch))
        for row, bits in zip(batch.tolist(), words, strict=True):
            digest = hashlib.blake2b(bits.tobytes(), digest_size=16).digest()
            groups.setdefault(digest, []).append(row)
    repeated = sorted((rows for rows in groups.values() if len(rows) > 1), key=lambda r: r[0])
    duplicate_rows = sum(len(rows) - 1 for rows in repeated)
    listed = [_row_set(source, np.asarray(rows, dtype=np.int64)) for rows in repeated[:5]]
    return duplicate_rows, listed, len(repeated)

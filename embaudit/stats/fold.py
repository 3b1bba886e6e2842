"""The map step of the pass: a fragment's chunks read once, each reduced to its mergeable
statistics (on any worker's thread) and folded into the fragment's :class:`PartStats` in row
order, while the consumers (the kNN search, the sample collector) see its clean rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.sources import Chunk, EmbeddingSource, Fragment
from embaudit.stats.dimensions import Moments
from embaudit.stats.norm_summary import NormParts, sketched
from embaudit.stats.rows import ChunkConsumer, CleanRows, _hash_rows, row_norms, scaled_to_unit
from embaudit.stats.scratch import Scratch

#: Bytes of float64 rows folded at a time within a chunk (see _FragmentFolder.reduce): about
#: fifty numpy calls a block, each of which takes the interpreter lock again when it ends, from
#: a worker that may be selecting neighbours in Python meanwhile. A trade: one thread alone
#: folds 768-d rows 6-8 % faster with 1 MiB blocks (3.8-3.9 s per 1M rows against 4.15), whose
#: arrays stay in a core's cache, but two threads at once, as in a pass, take 5.6 s each with
#: them and 4.7 s with 2 MiB (benchmarks/bench_fold.py; 7.2 s with 512 KiB, no better beyond).
FOLD_BYTES = 2**21

Floats = npt.NDArray[np.float64]
Rows = npt.NDArray[np.int64]


#: How many offending rows a finding lists; the count is always complete.
ROW_LIST_CAP = 20


@dataclass
class PartStats:
    """The mergeable statistics of one fragment: its rows' norms (or, for a source of more than
    :data:`~embaudit.stats.norm_summary.SKETCH_ROWS` rows, their moments and sketch), its clean
    rows and their hashes, the first positions and the counts of its non-finite and zero rows,
    and per-dimension sums.

    Fragments are merged in row order by :func:`finish` whichever engine produced them, so the
    floating-point sums are folded in the same order everywhere and agree to the last bit. Per
    row, a part carries 17 bytes (a norm, a hash, a clean flag), whatever the dimension; 9 when
    sketched, none once the engine has taken the hashes to find duplicates itself."""

    start: int
    rows: int
    norms: Floats | None  # L2 norm of every row, NaN for non-finite rows; None when sketched
    norm_parts: NormParts | None  # the clean norms' moments and sketch, when sketched
    clean: npt.NDArray[np.bool_]  # finite, non-zero rows (empty once the hashes are taken)
    hashes: npt.NDArray[np.uint64] | None  # row hashes of the clean rows (0 elsewhere)
    non_finite: Rows  # the first ROW_LIST_CAP rows with NaN or Inf (or a norm beyond range)
    non_finite_count: int
    nan_rows: int  # how many of them hold a NaN
    zero: Rows  # the first ROW_LIST_CAP finite rows of norm zero (below the dtype's tiny)
    zero_count: int
    moments: Moments  # over clean rows
    unit_sum: Floats
    unit_sq_sum: Floats

    @property
    def stop(self) -> int:
        return self.start + self.rows


def fold_fragment(
    source: EmbeddingSource,
    fragment: Fragment,
    *,
    consumers: Sequence[Sequence[ChunkConsumer]] = ((),),
    chunk_rows: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
    statistics: bool = True,
    sketch: bool | None = None,
    norms: Floats | None = None,
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
    ``sketch``: summarize the norms with a sketch (default: by the source's row count, see
    :func:`~embaudit.stats.norm_summary.sketched`). ``norms``: the fragment's row norms from an
    earlier pass of the same rows (NaN for non-finite rows, as :attr:`PartStats.norms`), for a
    pass without ``statistics``: its clean rows and unit rows come from them, and no row is
    widened to compute them again.
    """
    folder = _FragmentFolder(
        source,
        fragment,
        keep_unit=any(map(len, consumers)),
        statistics=statistics,
        sketch=sketched(source.n) if sketch is None else sketch,
        norms=norms,
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
        scratch = Scratch()  # this worker's chunk rows, unit rows and blocks, chunk after chunk
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
                    start, rows = chunk.start, chunk.stop - chunk.start
                    values = scratch.take("rows", chunk.values.dtype, *chunk.values.shape)
                    np.copyto(values, chunk.values)
                    del chunk
                part, clean = self.folder.reduce(start, values, scratch)
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
        finally:
            scratch.clear()

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
    zero: Rows  # global positions
    nan_rows: int
    clean_rows: npt.NDArray[np.bool_]
    moments: Moments | None = None  # None without statistics
    unit_sum: Floats | None = None
    unit_sq_sum: Floats | None = None
    hashes: npt.NDArray[np.uint64] | None = None


def _usable_norms(wide: Floats) -> tuple[Floats, int]:
    """The L2 norms of float64 rows, NaN where a row is unusable, and how many rows hold a NaN.

    A NaN or an Inf makes the row's norm NaN or Inf (row_norms rescales only finite rows), and a
    float64 row whose norm exceeds the float64 range is as unusable as one with Inf: their norms
    are NaN from here on."""
    norms = row_norms(wide)
    nan_rows = 0
    finite = np.isfinite(norms)
    if not finite.all():
        nan_rows = int(np.isnan(wide[~finite]).any(axis=1).sum())
        norms[~finite] = np.nan
    return norms, nan_rows


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
        sketch: bool = False,
        norms: Floats | None = None,
    ) -> None:
        if norms is not None and (statistics or len(norms) != fragment.n):
            raise ValueError("known norms: a pass without statistics, one norm a row")
        d = source.d
        self.known_norms = norms
        self.d, self.start, self.keep_unit = d, fragment.start, keep_unit
        self.statistics = statistics
        self.dtype, self.tiny = source.dtype, np.finfo(source.dtype).tiny
        self.listed: dict[str, list[Rows]] = {"non_finite": [], "zero": []}
        self.part = PartStats(
            start=fragment.start,
            rows=fragment.n,
            norms=None if sketch else np.empty(fragment.n, dtype=np.float64),
            norm_parts=NormParts.empty() if sketch else None,
            clean=np.zeros(fragment.n, dtype=bool),
            hashes=np.zeros(fragment.n, dtype=np.uint64),
            non_finite=np.empty(0, dtype=np.int64),
            non_finite_count=0,
            nan_rows=0,
            zero=np.empty(0, dtype=np.int64),
            zero_count=0,
            moments=Moments.empty(d),
            unit_sum=np.zeros(d),
            unit_sq_sum=np.zeros(d),
        )

    def reduce(
        self, start: int, values: npt.NDArray[np.floating[Any]], scratch: Scratch | None = None
    ) -> tuple[_ChunkPart, CleanRows]:
        """The statistics of the chunk of rows from ``start`` whose stored values are ``values``,
        and its clean rows for the consumers (any thread), whose unit rows and blocks are taken
        from the worker's ``scratch`` (default: new memory).

        One sweep, a block of FOLD_BYTES at a time: each block is widened to float64 (float16
        and float32 widen exactly), and its norms, clean rows, sums, unit rows and the hashes of
        its stored bits are computed while it is near the core (the whole chunk widened would be
        read from memory once per sum). A block's arrays are the same memory from one block to
        the next, and a worker's from one chunk to the next (see :class:`Scratch`)."""
        if values.dtype != self.dtype:  # a source's bug: the hashes would not compare
            raise RuntimeError(f"a chunk of {values.dtype} rows from a {self.dtype} source")
        if self.known_norms is not None:
            return self._reduce_known(start, values, scratch or Scratch())
        n = len(values)
        step = max(1, FOLD_BYTES // (8 * self.d))
        chunk_norms = np.empty(n)
        clean_rows = np.empty(n, dtype=bool)
        nan_rows, kept = 0, 0
        scratch = scratch or Scratch()
        unit_rows = scratch.take("unit rows", np.float32, n if self.keep_unit else 0, self.d)
        hashes = np.empty(n if self.statistics else 0, dtype=np.uint64)
        moments, unit_sum, unit_sq_sum = Moments.empty(self.d), np.zeros(self.d), np.zeros(self.d)
        block = (min(n, step), self.d)
        widened = scratch.take("block", np.float64, *block)  # its deviations, then its units
        words = scratch.take("words", self.dtype, 2, *block)  # a hash's words, then shifted
        for first in range(0, n, step):
            rows = slice(first, first + step)
            stored = values[rows]
            wide = widened[: len(stored)]
            np.copyto(wide, stored)
            norms, nans = _usable_norms(wide)
            nan_rows += nans
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
            if self.keep_unit:
                scaled_to_unit(stored, norms, unit_rows[out])
            if self.statistics:
                taken = slice(0, len(wide))
                hashes[out] = _hash_rows(stored, (words[0][taken], words[1][taken]))
                moments = moments.merge(Moments.of(wide, scratch=wide))  # centred in place
                np.copyto(wide, stored)  # widened again
                # float64: the cosine sums must be exact. In place: a second array of the
                # block's size would double what the block's sums read from memory.
                unit = np.divide(wide, norms[:, None], out=wide)
                unit_sum += unit.sum(axis=0)
                unit_sq_sum += np.einsum("ij,ij->j", unit, unit)
        part = self._part(start, chunk_norms, clean_rows, nan_rows)
        if self.statistics:
            part.moments, part.unit_sum, part.unit_sq_sum = moments, unit_sum, unit_sq_sum
            part.hashes = hashes[:kept]
        positions = start + np.flatnonzero(clean_rows)
        clean_values = values if kept == n else values[clean_rows]
        clean = CleanRows(positions, clean_values, chunk_norms[clean_rows], unit_rows[:kept], n)
        return part, clean

    def _reduce_known(
        self, start: int, values: npt.NDArray[np.floating[Any]], scratch: Scratch
    ) -> tuple[_ChunkPart, CleanRows]:
        """:meth:`reduce` of a pass given the rows' norms (``known_norms``): the clean rows by
        the same rule, and their unit rows scaled by those norms, no row widened."""
        assert self.known_norms is not None
        n = len(values)
        at = start - self.start
        chunk_norms = self.known_norms[at : at + n]
        clean_rows = chunk_norms >= self.tiny  # NaN compares false
        clean_values = values if clean_rows.all() else values[clean_rows]
        norms = chunk_norms[clean_rows]
        kept = len(norms) if self.keep_unit else 0
        unit_rows = scratch.take("unit rows", np.float32, kept, self.d)
        if self.keep_unit:
            scaled_to_unit(clean_values, norms, unit_rows)
        # The part is folded as any pass's (its rows read in order), though no statistics are
        # returned: its non-finite rows are few, and counting those with a NaN costs nothing.
        bad = np.isnan(chunk_norms)
        nan_rows = int(np.isnan(values[bad]).any(axis=1).sum()) if bad.any() else 0
        part = self._part(start, chunk_norms, clean_rows, nan_rows)
        positions = start + np.flatnonzero(clean_rows)
        return part, CleanRows(positions, clean_values, norms, unit_rows, n)

    def _part(
        self, start: int, norms: Floats, clean_rows: npt.NDArray[np.bool_], nan_rows: int
    ) -> _ChunkPart:
        """A chunk's part of the fragment's rows: its norms and clean, non-finite and zero rows."""
        bad = np.isnan(norms)
        return _ChunkPart(
            slice(start - self.start, start + len(norms) - self.start),
            norms,
            start + np.flatnonzero(bad),
            start + np.flatnonzero(~clean_rows & ~bad),
            nan_rows,
            clean_rows,
        )

    def fold(self, chunk: _ChunkPart) -> None:
        """Fold one chunk's statistics into the fragment's; called in row order."""
        part = self.part
        if part.norms is not None:
            part.norms[chunk.rows] = chunk.norms
        elif part.norm_parts is not None:
            part.norm_parts.add(chunk.norms[chunk.clean_rows])
        part.clean[chunk.rows] = chunk.clean_rows
        for name, rows in (("non_finite", chunk.non_finite), ("zero", chunk.zero)):
            counted = f"{name}_count"
            listed = getattr(part, counted)
            if len(rows) and listed < ROW_LIST_CAP:
                self.listed[name].append(rows[: ROW_LIST_CAP - listed])
            setattr(part, counted, listed + len(rows))
        part.nan_rows += chunk.nan_rows
        if chunk.moments is not None:
            assert chunk.unit_sum is not None and chunk.unit_sq_sum is not None
            assert chunk.hashes is not None
            part.moments = part.moments.merge(chunk.moments)
            part.unit_sum += chunk.unit_sum
            part.unit_sq_sum += chunk.unit_sq_sum
            assert part.hashes is not None
            part.hashes[chunk.rows][chunk.clean_rows] = chunk.hashes

    def finished(self) -> PartStats:
        """The statistics of the fragment, once every chunk is folded."""
        for name, rows in self.listed.items():
            if rows:
                setattr(self.part, name, np.concatenate(rows))
        return self.part

"""The map step of a pass: what it computes besides the statistics (:class:`PassPlan`), the
workers that feed one fragment's clean rows to their searches and sample, and
:func:`map_fragment`, which every engine runs on every fragment (see :mod:`embaudit.engines`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.knn import TILE, NeighborList, NeighborSearch, Scratch, SharedBars
from embaudit.sources import EmbeddingSource, Fragment
from embaudit.stats import CleanRows, PartStats, RowCollector, ScanStats, fold_fragment

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Values = npt.NDArray[np.floating[Any]]


@dataclass(frozen=True, eq=False)
class Searched:
    """A kNN search a pass feeds (its lists fill as rows stream by), and the rows it sees:
    every clean row, or only the clean rows at ``rows`` (sorted global positions)."""

    search: NeighborSearch
    rows: Ints | None = None


@dataclass
class PassPlan:
    """What one pass computes besides the statistics; broadcast to every fragment.

    ``searches`` are kNN searches of query samples, each over every row or over a set of rows
    (:class:`Searched`). ``sample`` collects the clean rows at chosen positions. Without
    ``statistics`` the pass only finds the clean rows for the searches and the sample (a
    measurement taken again on more queries: its statistics are those of the pass before), and
    the result has no stats. ``norms``, for such a pass: every row's norm from the pass before
    (:attr:`~embaudit.stats.ScanStats.norms`), from which it takes its clean and unit rows
    rather than computing them again (see :func:`~embaudit.stats.fold_fragment`)."""

    searches: tuple[Searched, ...] = ()
    sample: RowCollector | None = None
    statistics: bool = True
    norms: Floats | None = None

    def chunk_rows(self, source: EmbeddingSource) -> int:
        """Rows per chunk of ``source`` when none is asked for: what a chunk costs is its
        rows times the queries stacked against them, so a chunk is at most one step of the
        widest search (:meth:`~embaudit.knn.NeighborSearch.step_rows`), and at most the
        source's own chunk of bytes. At small d a chunk of bytes holds many rows (524,288 at
        d = 16): one chunk would be one thread's work while the others wait. A whole number of
        the search's tiles: a chunk's last slab is then multiplied as it is, not copied with
        zero rows after it (10,922 rows of 768-d made a copy of 2,730 rows each chunk)."""
        steps = [searched.search.step_rows() for searched in self.searches]
        rows = min([source.default_chunk_rows(), *steps])
        return rows if rows < TILE else rows // TILE * TILE


@dataclass
class PassResult:
    stats: ScanStats | None  # None when the plan asked for no statistics
    sample: RowCollector | None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per consumer


@dataclass
class FragmentResult:
    part: PartStats | None
    lists: list[list[NeighborList]]  # per search of the plan
    sample: RowCollector | None
    timings: dict[str, float]


@dataclass
class Worker:
    """What one worker of a pass feeds: its own searches and sample collector (the plan's, or
    fresh ones merged into the plan's at the end) and the seconds it spent in each."""

    searches: list[NeighborSearch]
    sample: RowCollector | None
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, plan: PassPlan) -> Worker:
        """The worker that fills the plan's own searches and collector."""
        return cls([searched.search for searched in plan.searches], plan.sample)

    @classmethod
    def fresh(cls, plan: PassPlan) -> Worker:
        searches = [searched.search.fresh() for searched in plan.searches]
        return cls(searches, plan.sample and plan.sample.fresh())

    @classmethod
    def team(cls, plan: PassPlan, count: int) -> list[Worker]:
        """``count`` workers of one pass: the first fills the plan's own searches, the others
        fresh ones merged into them at the end. The workers of a search prune by the best bar
        any of them has reached (:class:`~embaudit.knn.select.SharedBars`) until released."""
        workers = [cls.of(plan)] + [cls.fresh(plan) for _ in range(count - 1)]
        if count > 1:
            for searches in zip(*(worker.searches for worker in workers), strict=True):
                shared = SharedBars.of(searches[0])
                for search in searches:
                    search.shared_bars = shared
        return workers

    def consumers(self, plan: PassPlan) -> list[Callable[[CleanRows], None]]:
        consumers: list[Callable[[CleanRows], None]] = []
        for search, searched in zip(self.searches, plan.searches, strict=True):
            add = search.add if searched.rows is None else _Restricted(search, searched.rows)
            consumers.append(_Timed(add, "knn", self.timings))
        if self.sample is not None:
            consumers.append(_Timed(self.sample, "sample", self.timings))
        return consumers

    def __post_init__(self) -> None:
        # The worker runs its searches one after the other: their products share memory.
        scratch = Scratch()
        for search in self.searches:
            search.scratch = scratch

    def release(self) -> None:
        """Drop the memory the searches keep from one chunk to the next (the worker is done)."""
        for search in self.searches:
            search.scratch.clear()
            search.shared_bars = None

    def merge_into(self, plan: PassPlan) -> None:
        """Merge this worker's lists and rows into the plan's own searches and collector."""
        for search, searched in zip(self.searches, plan.searches, strict=True):
            if search is not searched.search:
                searched.search.absorb(search.lists)
        if plan.sample is not None and self.sample is not None and self.sample is not plan.sample:
            plan.sample.absorb(self.sample)


def map_fragment(
    source: EmbeddingSource,
    fragment: Fragment,
    plan: PassPlan,
    *,
    workers: list[Worker] | None = None,
    chunk_rows: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
    sketch: bool | None = None,
) -> FragmentResult:
    """The map step: read one fragment and fold it into its statistics, and into each worker's
    search and sample (one worker with fresh ones from the plan when not given, whose lists
    and rows the result carries). ``sketch``: as :func:`fold_fragment`'s."""
    own = workers is None  # workers of this fragment alone: done with it
    workers = workers if workers is not None else [Worker.fresh(plan)]
    started = time.perf_counter()
    try:
        part = fold_fragment(
            source,
            fragment,
            consumers=[worker.consumers(plan) for worker in workers],
            chunk_rows=chunk_rows or plan.chunk_rows(source),
            on_chunk=on_chunk,
            statistics=plan.statistics,
            sketch=sketch,
            norms=None if plan.norms is None else plan.norms[fragment.start : fragment.stop],
        )
    finally:
        for worker in workers if own else []:
            worker.release()
    timings = {"map": time.perf_counter() - started}  # wall seconds of this fragment
    for worker in workers:
        add_timings(timings, worker.timings)
        worker.timings.clear()
    first = workers[0]
    return FragmentResult(part, [search.lists for search in first.searches], first.sample, timings)


@dataclass(frozen=True, eq=False)
class _Restricted:
    """Feeds ``search`` only the rows at ``rows`` (sorted global positions)."""

    search: NeighborSearch
    rows: Ints

    def __call__(self, rows: CleanRows) -> None:
        positions = rows.positions
        if not len(positions):
            return
        # The chunk's rows are in order: only the positions within its range can be among them.
        low, high = np.searchsorted(self.rows, (positions[0], positions[-1] + 1))
        wanted = np.isin(positions, self.rows[low:high], assume_unique=True)
        if wanted.all():
            self.search.add(rows)
            return
        unit = rows.unit[wanted]
        self.search.add(CleanRows(positions[wanted], rows.values[wanted], rows.norms[wanted], unit))


@dataclass(frozen=True, eq=False)
class _Timed:
    """``consume``, adding its time to ``timings[name]`` (reports show time per stage)."""

    consume: Callable[[CleanRows], None]
    name: str
    timings: dict[str, float]

    def __call__(self, rows: CleanRows) -> None:
        mark = time.perf_counter()
        self.consume(rows)
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - mark


def add_timings(total: dict[str, float], part: dict[str, float]) -> None:
    for name, seconds in part.items():
        total[name] = total.get(name, 0.0) + seconds

"""Index readiness end to end: :func:`build_index` builds a plan's index on a source
(:class:`BuiltIndex`), whose :meth:`~BuiltIndex.search` searches a query sample at the default
setting and along the knob and compares what it returns with the exact lists
(:class:`IndexMeasurement`: EA701 ann-recall, EA702 index-vs-objective).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from embaudit.array_types import Floats, Ints
from embaudit.index.build import (
    _add_all,
    _add_sample,
    _Database,
    _file_database,
    _lists,
    _Prepare,
    _sample_database,
    _sample_rows,
    _train_on,
    _training_rows,
    new_index,
    training_sample,
)
from embaudit.index.faiss_import import _faiss
from embaudit.index.live_report import LiveReport
from embaudit.index.plan import EXACT_METRIC, IndexMetric, IndexPlan
from embaudit.index.sweep import SweepPoint, _Knob, _knob, _Queries, _Scorer, _sweep
from embaudit.knn import NeighborSearch
from embaudit.sources import EmbeddingSource


@dataclass(frozen=True)
class IndexMeasurement:
    """The index built and searched, and its per-query overlaps at faiss's defaults."""

    spec: str
    metric: IndexMetric
    objective: str  # the exact metric of the declared objective (cosine, l2, dot)
    k: int
    rows: int  # rows the index holds
    sampled: bool  # built on a sample of the clean rows (``--index-sample``)
    trained_on: int  # training rows (0: the index needs no training)
    lists: int | None  # inverted lists of an IVF index (faiss asks for 39 training rows each)
    knob: str | None  # efSearch, nprobe, or None (nothing to tune: flat, SQ, PQ)
    default_setting: int | None  # the knob at its default (faiss's, or the store's)
    recall: Floats  # per query, against the exact lists under the index's metric
    objective_overlap: Floats  # per query, against the exact lists under the objective's
    exact_agreement: Floats  # per query, exact index-metric lists against objective ones
    ms_per_query: float
    sweep: list[SweepPoint]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    defaults_from: str = "faiss's default"  # whose default search setting ``recall`` is at
    live: LiveReport | None = None  # a stored index searched through its own query path


@dataclass(frozen=True)
class BuiltIndex:
    """An index built on a source, and the rows it holds: what a larger query sample searches
    again (the audit's later rounds) without building it again."""

    plan: IndexPlan
    index: Any  # the faiss index
    source: EmbeddingSource
    positions: Ints  # row position of each index entry, in index order
    prepare: _Prepare  # rows as the index took them (queries are prepared the same way)
    trained_on: int  # training rows (0: the index needs no training)
    timings: dict[str, float]  # seconds per stage of the build
    knob: _Knob | None  # the search knob at its default (faiss's, or the deployed index's)
    sample: Floats | None = None  # the rows of an index built on a sample, in position order

    def database(self, search: NeighborSearch) -> _Database:
        """The rows of the index, with the exact lists of ``search``'s queries against them."""
        if self.sample is not None:
            return _sample_database(search, self.positions, self.sample, self.source.dtype)
        return _file_database(self.source, search, self.positions)

    def search(self, search: NeighborSearch, objective: str) -> IndexMeasurement:
        """Search the queries of ``search`` and compare with its exact lists (``objective``:
        the exact metric of the declared objective)."""
        measured = _compare(self, self.database(search), objective)
        return replace(
            measured, trained_on=self.trained_on, timings=self.timings | measured.timings
        )


def build_index(
    source: EmbeddingSource,
    plan: IndexPlan,
    pow2_scale: float,
    *,
    chunk_rows: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> BuiltIndex:
    """Build ``plan``'s index on ``source`` (every clean row, or a sample); ``pow2_scale`` is
    the exact search's power-of-two row scale, ``on_rows`` is told of the rows added."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    index = new_index(source.d, plan)
    prepare = _Prepare(plan.metric, pow2_scale)
    sample: Floats | None = None
    if plan.sample is not None:
        positions, sample = _sample_rows(source, plan)
        timings["index_sample"] = time.perf_counter() - started
        trained_on = _train_on(index, sample, prepare, plan, timings)
        mark = time.perf_counter()
        _add_sample(index, sample, prepare, on_rows)
    else:
        count = _training_rows(index, source.n)
        train_values = training_sample(source, count, plan.seed) if count else np.empty((0, 0))
        trained_on = _train_on(index, train_values, prepare, plan, timings)
        del train_values
        mark = time.perf_counter()
        positions = _add_all(index, source, prepare, chunk_rows, on_rows)
    timings["index_add"] = time.perf_counter() - mark
    timings["index_build"] = time.perf_counter() - started
    space = _faiss().ParameterSpace()
    for name, value in plan.search:  # the deployed index's default search setting
        space.set_index_parameter(index, name, float(value))
    knob = _knob(index)
    return BuiltIndex(plan, index, source, positions, prepare, trained_on, timings, knob, sample)


def measure_index(
    source: EmbeddingSource,
    search: NeighborSearch,
    plan: IndexPlan,
    objective: str,
    *,
    chunk_rows: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> IndexMeasurement:
    """Build ``plan``'s index on ``source`` (every clean row, or a sample), search the queries
    of ``search`` with it, and compare with the exact lists. ``objective`` is the exact metric
    of the declared objective; ``on_rows`` is told of the rows added."""
    built = build_index(source, plan, search.pow2_scale, chunk_rows=chunk_rows, on_rows=on_rows)
    return built.search(search, objective)


def _compare(built: BuiltIndex, database: _Database, objective: str) -> IndexMeasurement:
    """Search the queries at the defaults and along the knob; overlap with the exact lists."""
    started = time.perf_counter()
    index, plan, exact = built.index, built.plan, database.search
    queries = _Queries(
        rows=built.prepare(exact.queries),
        positions=np.asarray(exact.query_rows, dtype=np.int64),
        k=exact.k,
        index_list=exact.list_for(EXACT_METRIC[plan.metric]),
        objective_list=exact.list_for(objective),
    )
    knob = built.knob
    if knob is not None:  # a search before this one left the knob where its sweep ended
        _faiss().ParameterSpace().set_index_parameter(index, knob.name, float(knob.default))
    scorer = _Scorer(database)
    default_rows, default_ms = queries.search(index, database)
    default_list = scorer.as_list(default_rows)
    sweep = _sweep(index, knob, queries, database, scorer)
    return IndexMeasurement(
        spec=plan.spec,
        metric=plan.metric,
        objective=objective,
        k=exact.k,
        rows=len(database.positions),
        sampled=plan.sample is not None,
        trained_on=0,
        lists=_lists(index),
        knob=knob.name if knob else None,
        default_setting=knob.default if knob else None,
        recall=exact.overlap(queries.index_list, default_list),
        objective_overlap=exact.overlap(queries.objective_list, default_list),
        exact_agreement=exact.overlap(queries.objective_list, queries.index_list),
        ms_per_query=default_ms,
        sweep=sweep,
        timings={"index_search": time.perf_counter() - started},
        defaults_from=plan.defaults_from if plan.search else "faiss's default",
    )

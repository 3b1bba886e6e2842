"""The index stored with the data, searched live through the store's own query path
(:class:`~embaudit.sources.base.LiveIndex`: pgvector's ``ORDER BY … LIMIT``): the query sample
at the store's own search settings, along its knob (``hnsw.ef_search``, ``ivfflat.probes``) and,
under a filter, with each iterative-scan mode; each compared with the exact lists as
:mod:`embaudit.index.readiness` compares a faiss index's.

The store is asked for k + 1 rows and the query's own row is left out, as the exact lists leave
it out; an index that returns fewer rows (an HNSW search under a filter) leaves the rest
empty: a miss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from embaudit.array_types import Floats, Ints
from embaudit.index.build import _file_database
from embaudit.index.live_report import LiveReport
from embaudit.index.plan import EXACT_METRIC, IndexMetric
from embaudit.index.readiness import IndexMeasurement
from embaudit.index.sweep import PLATEAU, SweepPoint, _Queries, _Scorer
from embaudit.knn import NeighborSearch
from embaudit.sources import EmbeddingSource
from embaudit.sources.base import LiveIndex


def without_own_row(rows: Ints, own: Ints, k: int) -> Ints:
    """The first ``k`` rows per query other than the query's own row (``own``), in rank
    order; -1 where fewer remain."""
    keep = (rows != own[:, None]) & (rows >= 0)
    order = np.argsort(~keep, axis=1, kind="stable")
    kept = np.take_along_axis(np.where(keep, rows, -1), order, axis=1)[:, :k]
    if kept.shape[1] < k:
        kept = np.pad(kept, ((0, 0), (0, k - kept.shape[1])), constant_values=-1)
    return kept


@dataclass(frozen=True)
class _Probed:
    """One batch of the query sample at one setting, compared with the exact lists."""

    point: SweepPoint
    recall: Floats  # per query, under the index's metric
    objective_overlap: Floats  # per query, under the objective's
    returned: Ints  # rows returned per query (the query's own left out)
    index_used: int


@dataclass(frozen=True)
class LiveProbe:
    """A stored index to search live: what :func:`embaudit.pipelines.check` searches in place
    of a faiss index it builds (the same :meth:`search`)."""

    source: EmbeddingSource
    live: LiveIndex

    def search(self, search: NeighborSearch, objective: str) -> IndexMeasurement:
        """Search the queries of ``search`` through the store at its settings, along the knob
        and (under a filter) with each iterative-scan mode; compare with its exact lists."""
        started = time.perf_counter()
        live, metric = self.live, IndexMetric(self.live.metric)
        database = _file_database(self.source, search, np.arange(self.source.n, dtype=np.int64))
        queries = _Queries(
            rows=np.asarray(search.queries, dtype=np.float32),
            positions=np.asarray(search.query_rows, dtype=np.int64),
            k=search.k,
            index_list=search.list_for(EXACT_METRIC[metric]),
            objective_list=search.list_for(objective),
        )
        scorer = _Scorer(database)
        default = self._probe(queries, scorer, None, None)
        sweep = self._sweep(queries, scorer)
        iterative, iterative_sweep = self._iterative(queries, scorer)
        info = live.describe()
        swept = sorted({point.value for point in [*sweep, *iterative_sweep]})
        report = LiveReport(
            name=str(info["name"]),
            info=info,
            default=default.point,
            returned=default.returned,
            index_used=default.index_used,
            queries=len(queries.rows),
            title=live.title(),
            statements={value: live.set_statements(value) for value in swept},
            actions={value: live.set_action(value) for value in swept},
            settings_from=live.settings_from,
            timed=live.timed,
            build=live.build_statement(),
            build_for={m.value: live.build_statement(metric=m.value) for m in IndexMetric},
            where=live.where,
            partial=None if live.where is None else live.build_statement(where=live.where),
            iterative=iterative,
            iterative_sweep=iterative_sweep,
        )
        return IndexMeasurement(
            spec=report.name,
            metric=metric,
            objective=objective,
            k=search.k,
            rows=self.source.n,
            sampled=False,
            trained_on=0,
            lists=info.get("lists"),
            knob=live.knob,
            default_setting=live.default,
            recall=default.recall,
            objective_overlap=default.objective_overlap,
            exact_agreement=search.overlap(queries.objective_list, queries.index_list),
            ms_per_query=float(default.point.p50_ms or 0.0),
            sweep=sweep,
            timings={"index_probe": time.perf_counter() - started},
            defaults_from=live.settings_from,
            live=report,
        )

    def _probe(
        self, queries: _Queries, scorer: _Scorer, setting: int | None, mode: str | None
    ) -> _Probed:
        started = time.perf_counter()
        k = queries.k
        found = self.live.search(queries.rows, k + 1, setting, mode)
        wall_ms = (time.perf_counter() - started) * 1000 / max(len(queries.rows), 1)
        rows = without_own_row(found.rows, queries.positions, k)
        returned = (rows >= 0).sum(axis=1).astype(np.int64)
        scored = scorer.as_list(rows)
        exact = scorer.search
        recall = exact.overlap(queries.index_list, scored)
        objective_overlap = exact.overlap(queries.objective_list, scored)
        has_times = len(found.server_ms) > 0
        point = SweepPoint(
            param=self.live.knob,
            value=setting if setting is not None else (self.live.default or 0),
            recall=float(recall.mean()),
            objective_overlap=float(objective_overlap.mean()),
            ms_per_query=wall_ms,
            p50_ms=float(np.percentile(found.server_ms, 50)) if has_times else None,
            p95_ms=float(np.percentile(found.server_ms, 95)) if has_times else None,
            returned=float(returned.mean()) if len(returned) else 0.0,
            short=float((returned < k).mean()) if len(returned) else 0.0,
            mode=mode,
        )
        return _Probed(point, recall, objective_overlap, returned, found.index_used)

    def _iterative(
        self, queries: _Queries, scorer: _Scorer
    ) -> tuple[list[tuple[SweepPoint, str]], list[SweepPoint]]:
        """Under a filter: each iterative-scan mode the store offers (other than the one it
        sets) at its default setting, with the statement that turns it on; and along the knob
        with the mode of the best recall, when that one misses neighbours."""
        live = self.live
        if live.where is None:
            return [], []
        iterative = [
            (self._probe(queries, scorer, None, mode).point, live.iterative_statement(mode))
            for mode in live.iterative
            if mode != live.iterative_default
        ]
        if not iterative:
            return [], []
        best = max(iterative, key=lambda found: found[0].recall)[0]
        return iterative, [] if best.recall >= 1.0 else self._sweep(queries, scorer, best.mode)

    def _sweep(
        self, queries: _Queries, scorer: _Scorer, mode: str | None = None
    ) -> list[SweepPoint]:
        """Recall and server time along the knob's ladder (with the iterative scan ``mode``,
        None: the store's), until every exact neighbour is found or recall stops rising."""
        points: list[SweepPoint] = []
        for value in self.live.ladder:
            points.append(self._probe(queries, scorer, value, mode).point)
            recalls = [point.recall for point in points]
            if recalls[-1] >= 1.0 or (len(recalls) >= 3 and recalls[-1] - recalls[-3] < PLATEAU):
                break
        return points

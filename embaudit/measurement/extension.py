"""How a round extends the previous measurement instead of measuring again from the start.

A round grows the sizes an undecided check rests on (:mod:`embaudit.pipelines.check`). Draws
nest (:mod:`embaudit.draw`, :func:`~embaudit.measurement.gauges.gauge_scales`): the first m
queries of a larger draw are the m searched before, the first r gauges of a level the r drawn
before. So a round searches what the previous measurement lacks, and its lists and overlaps
follow the previous ones: a query's list does not depend on the other queries searched with
it, nor a gauge's overlaps on the other gauges. The result equals a measurement at the grown
sizes from the start (``tests/test_adaptive.py``).

- The base search: the new queries alone, with the previous search's blocks
  (:func:`extendable`, then :meth:`~embaudit.knn.NeighborSearch.extended`).
- The gauges (:func:`gauge_growth`): the new draws of each level for the same gauge queries,
  or every draw for the new gauge queries. A round that asks for the canonical gauge searches
  it whole (its scale is then every row's, not the first pass's estimate), and one that grows
  both draws and queries searches the level whole.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from embaudit.array_types import Floats, Ints
from embaudit.knn import Block, NeighborSearch
from embaudit.measurement.gauges import BASE_BLOCK, GAUGE_BLOCK, level_queries
from embaudit.measurement.neighbors import Neighbors

#: What a round's gauge search adds to the previous overlaps (see :func:`gauge_growth`).
DRAWS, QUERIES = "draws", "queries"


def extendable(before: Neighbors | None, query_rows: Ints, k: int) -> NeighborSearch | None:
    """The previous search of the first of the queries at ``query_rows``, when it searched
    fewer of them with the same k: its lists are kept and the queries after them searched
    alone. None: search every query."""
    prior = before.search if before is not None else None
    if prior is None or prior.k != k:
        return None
    searched = len(prior.query_rows)
    if searched >= len(query_rows) or any(b.n_queries != searched for b in prior.blocks):
        return None
    return prior if np.array_equal(prior.query_rows, query_rows[:searched]) else None


def gauge_growth(
    before: Neighbors | None,
    measures_canonical: bool,
    gauges: list[tuple[float, Floats]],
    gauge_queries: int,
    levels: tuple[float, ...],
) -> str | None:
    """How a round's gauge search extends ``before``'s overlaps: DRAWS (the same gauge queries
    under the new draws of each level searched), QUERIES (every draw for the new gauge
    queries, when each level searched takes all of them), None (search every gauge)."""
    if before is None or measures_canonical or not gauges or not before.gauge:
        return None
    draws = Counter(s for s, _ in gauges)
    had = {s: before.gauge.get(s, []) for s in draws}
    if not all(had.values()):
        return None
    sizes = {s: {len(overlap) for overlap in had[s]} for s in draws}
    old_queries = before.gauge_queries
    if gauge_queries == old_queries and all(
        sizes[s] == {level_queries(s, levels, gauge_queries)} and len(had[s]) < draws[s]
        for s in draws
    ):
        return DRAWS
    if gauge_queries > old_queries and all(
        level_queries(s, levels, gauge_queries) == gauge_queries
        and sizes[s] == {old_queries}
        and len(had[s]) == draws[s]
        for s in draws
    ):
        return QUERIES
    return None


@dataclass(frozen=True)
class GrownGauges:
    """The gauge search of a round that extends the previous overlaps."""

    search: NeighborSearch
    gauges: list[tuple[float, Floats]]  # the gauges it holds, in the order of its blocks


def grown_gauge_search(
    queries: Floats,
    query_rows: Ints,
    gauges: list[tuple[float, Floats]],
    k: int,
    grow: str,
    before: Neighbors,
) -> GrownGauges:
    """The search of what ``before`` lacks (``grow``, of :func:`gauge_growth`): the gauge
    queries (``queries`` at ``query_rows``, all of them) under each level's new draws, or the
    queries after ``before``'s under every draw of ``gauges``."""
    if grow == DRAWS:
        seen: Counter[float] = Counter()
        new = []
        for s, scale in gauges:
            seen[s] += 1
            if seen[s] > len(before.gauge[s]):
                new.append((s, scale))
    else:
        new = gauges
        queries, query_rows = queries[before.gauge_queries :], query_rows[before.gauge_queries :]
    count = len(query_rows)
    blocks = [Block(BASE_BLOCK, count)]
    blocks += [Block(f"{GAUGE_BLOCK}{s:g}", count, scale) for s, scale in new]
    return GrownGauges(NeighborSearch(queries, query_rows, k, blocks, ("cosine",)), new)


def with_grown_gauges(measured: Neighbors, before: Neighbors, grow: str) -> Neighbors:
    """``measured`` (a round's, which searched what ``grow`` says) with ``before``'s overlaps
    in front: the earlier draws before the new ones, or the earlier gauge queries before the
    new ones."""
    if grow == DRAWS:
        return replace(
            measured, gauge={s: before.gauge[s] + new for s, new in measured.gauge.items()}
        )
    gauge = {
        s: [np.concatenate([old, more]) for old, more in zip(before.gauge[s], new, strict=True)]
        for s, new in measured.gauge.items()
    }
    queries = before.gauge_queries + measured.gauge_queries
    if measured.search is not None:
        return replace(measured, gauge=gauge, gauge_queries=queries)
    # A round of the gauges alone: its queries are the gauge queries, as in a whole measurement.
    rows = np.concatenate([before.query_rows[: before.gauge_queries], measured.query_rows])
    return replace(measured, gauge=gauge, gauge_queries=queries, queries=queries, query_rows=rows)

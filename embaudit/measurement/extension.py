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
- The gauges of a level: the previous overlaps of the first gauge queries under the first
  draws are kept, and the rest of the grown rectangle (gauge queries × draws) is searched
  (:func:`gauge_growth`, :func:`grown_gauge_search`): the new draws for every gauge query, the
  kept draws for the new queries. The canonical gauge is searched whole, apart, at EA302's sizes
  (a round takes its scale from every row, not from the first pass's estimate).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from embaudit.array_types import Floats, Ints
from embaudit.knn import Block, NeighborSearch
from embaudit.measurement.gauges import BASE_BLOCK, GAUGE_BLOCK, level_queries
from embaudit.measurement.neighbors import Neighbors


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


@dataclass(frozen=True)
class GaugeGrowth:
    """What a round's gauge search reuses of the previous overlaps of each level it searches:
    those of its first ``queries`` gauge queries under its first ``draws[s]`` draws. The rest
    of the grown rectangle (queries × draws) is searched: the new draws for every gauge query,
    the reused draws for the queries after the reused ones."""

    queries: int
    draws: dict[float, int]


def gauge_growth(
    before: Neighbors | None,
    gauges: list[tuple[float, Floats]],
    query_rows: Ints,
    levels: tuple[float, ...],
) -> GaugeGrowth | None:
    """What a round's search of the random ``gauges`` for the gauge queries at ``query_rows``
    reuses of ``before``'s overlaps (None: search every gauge: levels that would reuse
    different queries, queries drawn again rather than grown, or nothing to reuse or to
    search)."""
    if before is None or not gauges:
        return None
    gauge_queries = len(query_rows)
    draws = Counter(s for s, _ in gauges)
    had = {s: before.gauge.get(s, []) for s in draws}
    searched = {level_queries(s, levels, gauge_queries) for s in draws}
    sizes = {len(overlap) for s in draws for overlap in had[s]}
    if not all(had.values()) or searched != {gauge_queries} or len(sizes) != 1:
        return None
    reused = min(sizes.pop(), gauge_queries)
    # A draw nests while it takes at most half the rows; one that grows past it is drawn
    # again (draw_positions): the previous overlaps are then those of other queries.
    if not np.array_equal(before.query_rows[:reused], query_rows[:reused]):
        return None
    growth = GaugeGrowth(reused, {s: min(len(had[s]), draws[s]) for s in draws})
    if reused == gauge_queries and all(growth.draws[s] == draws[s] for s in draws):
        return None  # nothing to search: measure it whole, as a first measurement would
    return growth


@dataclass(frozen=True)
class GrownGauges:
    """The gauge search of a round that extends the previous overlaps."""

    search: NeighborSearch
    gauges: list[tuple[float, Floats]]  # the gauges it holds, in the order of its blocks
    reused: list[bool]  # per gauge it holds: a reused draw, searched for the new queries alone
    growth: GaugeGrowth


def grown_gauge_search(
    queries: Floats,
    query_rows: Ints,
    gauges: list[tuple[float, Floats]],
    k: int,
    growth: GaugeGrowth,
    listed: bool = True,
) -> GrownGauges:
    """The search of what the previous overlaps lack (see :class:`GaugeGrowth`): the gauge
    queries (``queries`` at ``query_rows``, all of them; those after the reused ones first)
    under each new draw, and the queries after the reused ones under each reused draw. Its
    base block searches their own cosine lists unless not ``listed`` (another search holds
    them: see :func:`embaudit.measurement.steps._gauge_search`)."""
    first, count = growth.queries, len(query_rows)
    seen: Counter[float] = Counter()
    held, reused = [], []
    for s, scale in gauges:
        seen[s] += 1
        old = seen[s] <= growth.draws[s]
        if not (old and first == count):  # else every query of this draw is reused
            held.append((s, scale))
            reused.append(old)
    blocks = [Block(BASE_BLOCK, count, listed=listed)]
    blocks += [
        Block(f"{GAUGE_BLOCK}{s:g}", count - first if old else count, scale)
        for (s, scale), old in zip(held, reused, strict=True)
    ]
    order = np.r_[first:count, 0:first]
    search = NeighborSearch(queries[order], query_rows[order], k, blocks, ("cosine",))
    return GrownGauges(search, held, reused, growth)


def with_grown_gauges(measured: Neighbors, before: Neighbors, grown: GrownGauges) -> Neighbors:
    """``measured`` (a round's, of ``grown``'s search) with the overlaps in query order and
    ``before``'s reused ones in front: a reused draw's first queries, then the new draws."""
    first = grown.growth.queries
    count = len(grown.search.query_rows)
    new = count - first  # the search's first queries are the new ones
    gauge: dict[float, list[Floats]] = {
        s: [overlap[:first] for overlap in before.gauge[s][:draws]]
        for s, draws in grown.growth.draws.items()
    }
    overlaps = {s: iter(found) for s, found in measured.gauge.items()}
    extended: Counter[float] = Counter()  # reused draws of each level given their new queries
    for (s, _), reused in zip(grown.gauges, grown.reused, strict=True):
        overlap = next(overlaps[s])
        if reused:  # the queries after the reused ones, of the next reused draw
            draw = extended[s]
            extended[s] += 1
            gauge[s][draw] = np.concatenate([gauge[s][draw], overlap])
        else:
            gauge[s].append(np.concatenate([overlap[new:], overlap[:new]]))
    return replace(measured, gauge=gauge, gauge_queries=max(measured.gauge_queries, count))

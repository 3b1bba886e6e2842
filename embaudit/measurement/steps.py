"""``measure``: everything the checks read, as a short sequence of named steps.

    draw the queries ──> plan the searches ──> one pass over the source ──┬──> sample geometry
                                                                          ├──> more graphs
                                                                          └──> neighbour lists

One pass reads every fragment once, in this process or on a cluster (:mod:`embaudit.engines`);
the engine does not change the result. A later round (for checks left undecided) measures only
the parts those checks read, and takes the others from the previous measurement.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit import geometry
from embaudit.draw import Take, draw_clean_rows, draw_positions, first_positions, read_ahead
from embaudit.engines import Engine, LocalEngine
from embaudit.knn import EXTERNAL_ROW, Block, NeighborSearch
from embaudit.map_step import PassPlan, PassResult, Searched
from embaudit.measurement.extension import (
    GrownGauges,
    extendable,
    gauge_growth,
    grown_gauge_search,
    with_grown_gauges,
)
from embaudit.measurement.gauges import (
    BASE_BLOCK,
    CANONICAL_BLOCK,
    GAUGE_BLOCK,
    JITTER_BLOCK,
    JITTER_DRAWS,
    SCALE_ROWS_PER_SAMPLE,
    TRUNCATE_BLOCK,
    ColumnSpread,
    canonical_queries,
    gauge_scales,
    level_queries,
    scale_of_spread,
    truncation_scale,
)
from embaudit.measurement.graphs import averaged_graph, more_graphs
from embaudit.measurement.neighbors import External, Neighbors, neighbor_lists
from embaudit.measurement.sample import Geometry, sample_geometry
from embaudit.measurement.sampling import Sampling, gauge_corpus
from embaudit.random_streams import Stream, generator
from embaudit.sources import EmbeddingSource
from embaudit.stats import DEAD_RATIO, RowCollector, ScanStats, clean_mask, row_norms

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: The parts of a measurement a sampled check's value comes from (its ``reads``): the base
#: lists of every query (EA4xx, EA005, EA503), the random gauges' lists (EA301), the canonical
#: gauge's and its jitter's (EA302), the truncations' (EA303), the sample's statistics (EA203,
#: EA205) and its graphs (EA501, EA502). Measuring again for undecided checks measures only the
#: parts they read (:func:`measure`'s ``parts``, the others taken from ``previous``): without
#: ``lists`` or ``truncation`` the base queries are not searched (the gauges' references are
#: the gauge queries' own lists: the previous measurement's base lists, or, where those are not
#: the same queries', the gauge search's own); without a searched part nor ``sample``
#: there is no pass (the statistics are the previous measurement's); with ``graphs`` alone the
#: sample's graphs grow to ``sampling.graphs`` by new samples added to the previous ones. The
#: gauge levels a round does not search (:func:`measure`'s ``levels``) keep the previous ones.
PARTS = ("lists", "gauges", "canonical", "truncation", "sample", "graphs")
_SEARCHED = frozenset(("lists", "gauges", "canonical", "truncation"))
#: The parts measured in a pass over the source (the others read a few rows by position).
PASS_PARTS = _SEARCHED | {"sample"}


@dataclass(frozen=True)
class Measurements:
    stats: ScanStats
    geometry: Geometry | None
    neighbors: Neighbors | None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    #: Set when the audit measured again (undecided checks): rounds, the checks that asked for
    #: it, those still undecided at the cap.
    adaptive: dict[str, Any] | None = None


def measure(
    source: EmbeddingSource,
    *,
    k: int,
    seed: int,
    sampling: Sampling,
    chunk_rows: int | None = None,
    on_rows: Callable[[int], None] | None = None,
    engine: Engine | None = None,
    dead_ratio: float = DEAD_RATIO,
    truncate: tuple[int, ...] = (),
    on_geometry: Callable[[int], None] | None = None,
    queries_from: EmbeddingSource | None = None,
    parts: Collection[str] = PARTS,
    previous: Measurements | None = None,
    levels: Collection[float] | None = None,
    part_sizes: Mapping[str, Sampling] | None = None,
) -> Measurements:
    """Measure everything the checks read, with ``engine`` (default: in this process).
    ``on_rows`` is called with the rows of each chunk or fragment read; ``dead_ratio`` is
    EA004's threshold, which decides the dimensions the canonical gauge leaves out;
    ``truncate`` the dimension counts M (below d) whose cosine neighbours EA303 compares;
    ``on_geometry`` is called with 1 after each of the GEOMETRY_STEPS stages on the sample.

    With ``queries_from`` (``--query-file``), the query rows are drawn from that source
    instead of the corpus: every list is what those queries see of the corpus (nothing to
    exclude: they are not corpus rows). Corpus rows drawn as well, searched in the same pass
    after them, give EA503 the corpus's own floor of nearest cosines.

    ``parts`` (of :data:`PARTS`) are what to measure; the others are taken from ``previous``,
    a measurement of the same source with the same seed (:data:`PARTS` says what each
    needs). ``levels`` (of ``sampling.gauge_levels``; None: all of them) are the rescaling
    levels whose gauges are searched, each with the draws it has in a measurement of every
    level; the others keep ``previous``'s overlaps. ``part_sizes``: the sizes a part is measured
    at when they differ from ``sampling``'s (a round's: each part at the largest its undecided
    readers ask for, so that EA301's gauges do not grow with EA302's gauge queries, nor the
    canonical gauge with EA301's); ``sampling`` gives the rest (the queries drawn, the sample)."""
    wanted = frozenset(parts)
    if not wanted <= set(PARTS) or (previous is None and wanted != set(PARTS)):
        raise ValueError(f"parts {sorted(wanted)}: a subset of {PARTS}, all without previous")
    engine = engine or LocalEngine()
    if previous is not None and wanted.isdisjoint(PASS_PARTS):
        return _more_graphs(source, previous, k=k, seed=seed, sampling=sampling, take=engine.take)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    every_row = _exact_columns(previous)
    drawn = _draw_queries(
        source,
        sampling,
        seed,
        queries_from,
        scale_count=0 if every_row is not None else SCALE_ROWS_PER_SAMPLE * sampling.sample,
        take=engine.take if not wanted.isdisjoint(_SEARCHED) else None,
    )
    timings["queries"] = time.perf_counter() - started
    sizes = dict.fromkeys(PARTS, sampling) | dict(part_sizes or {})
    gauges = _gauges(source.d, sizes["gauges"], seed, levels)
    # A round extends the previous measurement's searches (its draws nest in this one's) by
    # what they lack; with a query file it searches anew (the file's queries come first).
    before = previous.neighbors if previous is not None and queries_from is None else None
    planned = _plan_searches(
        source, drawn, gauges, k=k, seed=seed, sampling=sampling, wanted=wanted,
        truncate=truncate, dead_ratio=dead_ratio, every_row=every_row, before=before, sizes=sizes,
    )  # fmt: skip
    mark = time.perf_counter()
    plan = _pass_plan(source, planned, sampling, seed, wanted, previous)
    result = engine.run(source, plan, chunk_rows=chunk_rows, on_rows=on_rows)
    stats = result.stats if previous is None else previous.stats
    assert stats is not None
    timings |= result.timings
    timings["pass"] = time.perf_counter() - mark
    mark = time.perf_counter()
    kept = previous.geometry if previous is not None else None
    measured = Measurements(
        stats,
        _geometry(result, stats, k, gauges, sampling, seed, on_geometry, dead_ratio, kept, wanted),
        None,
        timings,
    )
    if "graphs" in wanted:
        measured = _more_graphs(
            source, measured, k=k, seed=seed, sampling=sampling, take=engine.take
        )
    timings["geometry"] = time.perf_counter() - mark
    neighbors = previous.neighbors if previous is not None else None
    if planned.searched and k < stats.n_clean - 1:
        searched = _neighbors(planned, drawn, truncate, stats, source, before)
        neighbors = _levels_kept(searched, neighbors)
    return replace(measured, neighbors=neighbors)


def _pass_plan(
    source: EmbeddingSource,
    planned: _Planned,
    sampling: Sampling,
    seed: int,
    wanted: frozenset[str],
    previous: Measurements | None,
) -> PassPlan:
    """What the pass feeds: the planned searches, and the sample when it is wanted. The
    statistics of every row are those of the first measurement: a later one's pass only feeds
    the searches and the sample, and takes the rows' norms from the first one (unless they were
    sketched) instead of computing them again."""
    sample_rows = draw_positions(source.n, sampling.sample + 64, generator(seed, Stream.SAMPLE))
    return PassPlan(
        planned.searches,
        RowCollector(sample_rows) if "sample" in wanted else None,
        statistics=previous is None,
        norms=previous.stats.norms if previous is not None else None,
    )


def _levels_kept(measured: Neighbors, previous: Neighbors | None) -> Neighbors:
    """``measured`` with the gauge levels it did not search taken from ``previous``: a round
    for an undecided EA301 searches the level it judges alone, the
    other levels (s50's) keep the first measurement's overlaps (:func:`measure`'s ``levels``)."""
    if previous is None or not measured.gauge:
        return measured
    levels = previous.gauge | measured.gauge
    return replace(measured, gauge={s: levels[s] for s in sorted(levels)})


def _gauges(
    d: int, sampling: Sampling, seed: int, levels: Collection[float] | None
) -> list[tuple[float, Floats]]:
    """The random gauges of the ``levels`` searched (None: every level), each the draw it is in
    a measurement of every level."""
    every = gauge_scales(d, sampling.gauge_levels, sampling.gauge_draws, seed)
    return [(s, scale) for s, scale in every if levels is None or s in levels]


def _exact_columns(previous: Measurements | None) -> ScanStats | None:
    """The statistics whose column spreads give a later round's canonical gauge exactly (every
    row's, from the first pass), when they are finite (values beyond ~1e154 overflow their
    squares); None: estimate it on drawn rows."""
    if previous is None or not np.isfinite(previous.stats.moments.std).all():
        return None
    return previous.stats


@dataclass(frozen=True)
class _Drawn:
    """The query rows (a query file's, followed by EA503's corpus floor rows) and the corpus
    rows the canonical gauge is estimated on, drawn before the pass."""

    query_rows: Ints  # corpus positions; EXTERNAL_ROW for a query file's
    queries: Floats
    external: External | None = None
    scale_positions: Ints = field(default_factory=lambda: np.zeros(0, np.int64))
    scale: ColumnSpread | None = None  # the spread of the rows at scale_positions

    @property
    def own(self) -> int:
        """The queries the checks read: the query file's, when the corpus's follow them."""
        return len(self.query_rows) if self.external is None else len(self.external.rows)


def _draw_queries(
    source: EmbeddingSource,
    sampling: Sampling,
    seed: int,
    queries_from: EmbeddingSource | None,
    scale_count: int,
    take: Take | None,
) -> _Drawn:
    """The rows drawn before the pass; none when nothing is searched (``take`` None: a later
    round for the sample alone). The corpus rows (the queries or EA503's floor rows, and the
    canonical gauge's) are read together: a parquet file's row groups once."""
    n, d = source.n, source.d
    if take is None:
        return _Drawn(np.empty(0, np.int64), np.empty((0, d)))
    query_rng = generator(seed, Stream.QUERIES)
    corpus_rng = query_rng if queries_from is None else generator(seed, Stream.FLOOR)
    scale_rng = generator(seed, Stream.SCALE)
    ahead = [first_positions(n, sampling.queries, corpus_rng)]
    if scale_count:
        ahead.append(first_positions(n, scale_count, scale_rng))
    take = read_ahead(source, np.concatenate(ahead), take)
    external = None
    if queries_from is None:
        query_rows, queries, _ = draw_clean_rows(source, sampling.queries, query_rng, take)
    else:
        drawn, queries, _ = draw_clean_rows(queries_from, sampling.queries, query_rng)
        floor_rows, floor_queries, _ = draw_clean_rows(source, sampling.queries, corpus_rng, take)
        # Every clean row of the query file when fewer were found than asked for.
        population = len(drawn) if len(drawn) < sampling.queries else queries_from.n
        external = External(queries_from, drawn, len(floor_rows), population)
        query_rows = np.concatenate([np.full(len(drawn), EXTERNAL_ROW), floor_rows])
        queries = np.concatenate([queries, floor_queries])
    if not scale_count:
        return _Drawn(query_rows, queries, external)
    # The canonical gauge standardizes the corpus's columns, estimated on scale_count rows: only
    # their spread is kept, and the rows as stored until then.
    scale_positions, scale_rows, _ = draw_clean_rows(
        source, scale_count, scale_rng, take, stored=True
    )
    spread = ColumnSpread.of(scale_rows) if len(scale_rows) else None
    return _Drawn(query_rows, queries, external, scale_positions, spread)


@dataclass(frozen=True)
class _Planned:
    """The searches of the pass: every query against every row (the metrics' lists and the
    truncations), and the gauge queries against the gauge rows (the gauges' lists)."""

    search: NeighborSearch | None = None
    gauge_search: NeighborSearch | None = None  # the random gauges' (and the canonical's)
    #: The canonical gauge's search when apart from the random gauges' (see _plan_searches).
    canonical_search: NeighborSearch | None = None
    gauge_positions: Ints | None = None  # the gauge rows; None: every row
    canonical: Floats = field(default_factory=lambda: np.zeros(0))  # the canonical gauge's D
    #: The previous measurement's search of the first queries, which ``search`` (of the queries
    #: after them) extends; None: ``search`` searches every query.
    extends: NeighborSearch | None = None
    gauges: list[tuple[float, Floats]] = field(default_factory=list)  # those gauge_search holds
    #: How ``gauge_search`` extends the previous gauges' overlaps (None: it searches them all).
    gauges_grow: GrownGauges | None = None

    @property
    def searched(self) -> bool:
        return any(s is not None for s in (self.search, self.gauge_search, self.canonical_search))

    @property
    def searches(self) -> tuple[Searched, ...]:
        planned = [] if self.search is None else [Searched(self.search)]
        for gauged in (self.gauge_search, self.canonical_search):
            if gauged is not None:
                planned.append(Searched(gauged, self.gauge_positions))
        return tuple(planned)


def _plan_searches(
    source: EmbeddingSource,
    drawn: _Drawn,
    gauges: list[tuple[float, Floats]],
    *,
    k: int,
    seed: int,
    sampling: Sampling,
    wanted: frozenset[str],
    truncate: tuple[int, ...],
    dead_ratio: float,
    every_row: ScanStats | None,
    before: Neighbors | None,
    sizes: Mapping[str, Sampling],
) -> _Planned:
    """The searches the wanted parts read, with the canonical gauge (every row's, from
    ``every_row``'s statistics, else estimated on the drawn scale rows). With k >= n - 1 every
    row is every row's neighbour: nothing to compare, nothing searched (the checks skip).

    ``before`` (a previous measurement's, in a round) is extended rather than searched again
    (:mod:`embaudit.measurement.extension`)."""
    n, d = source.n, source.d
    if not drawn.own or (every_row is None and drawn.scale is None) or k >= n - 1:
        return _Planned(canonical=np.zeros(d))
    canonical = _canonical_gauge(drawn.scale, every_row, dead_ratio)
    search, extends = None, None
    # L2 and inner-product lists, and the base search, only where a check reads them (a
    # round for the gauges alone searches their own sample of the corpus).
    if not wanted.isdisjoint(("lists", "truncation")):
        extends = extendable(before, drawn.query_rows, k)
        search = _base_search(drawn, k, truncate if "truncation" in wanted else (), d, extends)
    if wanted.isdisjoint(("gauges", "canonical")):
        return _Planned(search, canonical=canonical, extends=extends)
    positions = gauge_corpus(n, sampling.gauge_rows, seed)
    level_queries_drawn = min(sizes["gauges"].gauge_queries, drawn.own)
    canonical_count = min(canonical_queries(sizes["canonical"].gauge_queries), drawn.own)
    # In a round the canonical gauge (at EA302's sizes) and the random gauges (at EA301's) are
    # searched apart, the random gauges extending the previous ones.
    apart = before is not None and "canonical" in wanted and "gauges" in wanted
    planned = _Planned(search, gauge_positions=positions, canonical=canonical, extends=extends)
    blocks = []
    if "canonical" in wanted:
        estimated = every_row is None and SCALE_ROWS_PER_SAMPLE * sampling.sample < n
        blocks = _canonical_blocks(drawn, canonical, canonical_count, estimated, seed)
    # Over every row the gauge queries' own cosine lists are the base search's: the gauge
    # searches do not search them again (_listed).
    if blocks and (apart or "gauges" not in wanted):  # a search of the canonical gauge alone
        listed = _listed(positions, search, before, drawn, k, canonical_count)
        canonical_search = _gauge_search(drawn, k, blocks, listed)
        planned = replace(planned, canonical_search=canonical_search)
        blocks = []
    if "gauges" not in wanted:
        return planned
    gauge_rows = drawn.query_rows[:level_queries_drawn]
    grow = gauge_growth(before, gauges, gauge_rows, sampling.gauge_levels)
    if grow is not None:
        queries = drawn.queries[:level_queries_drawn]
        listed = _listed(positions, search, before, drawn, k, len(queries))
        grown = grown_gauge_search(queries, gauge_rows, gauges, k, grow, listed)
        return replace(planned, gauge_search=grown.search, gauges=grown.gauges, gauges_grow=grown)
    blocks = [
        Block(
            f"{GAUGE_BLOCK}{s:g}", level_queries(s, sampling.gauge_levels, level_queries_drawn), g
        )
        for s, g in gauges
    ] + blocks
    listed = _listed(positions, search, before, drawn, k, max(b.n_queries for b in blocks))
    return replace(planned, gauge_search=_gauge_search(drawn, k, blocks, listed), gauges=gauges)


def _listed(
    gauge_rows: Ints | None,
    search: NeighborSearch | None,
    before: Neighbors | None,
    drawn: _Drawn,
    k: int,
    count: int,
) -> bool:
    """Whether a gauge search of the first ``count`` gauge queries searches their own cosine
    lists: over a sample of rows (``gauge_rows``) it does; over every row they are the base
    search's (this pass's ``search``, which holds every query drawn, or the previous
    measurement's), unless that does not hold them."""
    if gauge_rows is not None:
        return True
    if search is not None:  # with the search it extends, if any: every query drawn
        return False
    prior = before.search if before is not None else None
    own = (drawn.queries[:count], drawn.query_rows[:count], k)
    return prior is None or prior.query_indices(*own) is None


def _canonical_blocks(
    drawn: _Drawn, canonical: Floats, count: int, estimated: bool, seed: int
) -> list[Block]:
    """The canonical gauge's block for the first ``count`` gauge queries, and its jitters by
    its estimation error when the scale is ``estimated`` (a scale of every row is exact)."""
    blocks = [Block(CANONICAL_BLOCK, count, canonical)]
    if estimated:
        rng = generator(seed, Stream.JITTER)
        assert drawn.scale is not None  # estimated: drawn
        jittered = drawn.scale.jitter(canonical, rng, JITTER_DRAWS)
        blocks += [Block(f"{JITTER_BLOCK} {r}", count, scale) for r, scale in enumerate(jittered)]
    return blocks


def _gauge_search(drawn: _Drawn, k: int, blocks: list[Block], listed: bool) -> NeighborSearch:
    """The search of gauge ``blocks``, with the cosine lists of their queries without a gauge
    (the first block: the gauges' references), unless not ``listed``: the base search holds
    those (over every row), and the first block only gives the gauge lists' candidates their
    cosine. It is its own search (every row, or the gauge rows), not blocks of the base
    search: each list of a search keeps a feature column per block, and the base search's
    lists are every query's under three metrics."""
    count = max(block.n_queries for block in blocks)
    queries, rows = drawn.queries[:count], drawn.query_rows[:count]
    base = Block(BASE_BLOCK, count, listed=listed)
    return NeighborSearch(queries, rows, k, [base, *blocks], ("cosine",))


def _base_search(
    drawn: _Drawn,
    k: int,
    truncate: tuple[int, ...],
    d: int,
    extends: NeighborSearch | None,
) -> NeighborSearch:
    """The search of every query under the three metrics and the ``truncate`` truncations; with
    ``extends`` (the previous search of the first queries), of the queries after them alone,
    with its blocks."""
    if extends is not None:
        first, count = len(extends.query_rows), len(drawn.query_rows)
        blocks = [replace(block, n_queries=count - first) for block in extends.blocks]
        queries, rows = drawn.queries[first:], drawn.query_rows[first:]
        return NeighborSearch(queries, rows, k, blocks, extends.metrics)
    blocks = [Block(BASE_BLOCK, len(drawn.query_rows))]
    blocks += [Block(f"{TRUNCATE_BLOCK}{m}", drawn.own, truncation_scale(d, m)) for m in truncate]
    return NeighborSearch(drawn.queries, drawn.query_rows, k, blocks)


def _canonical_gauge(
    drawn: ColumnSpread | None, every_row: ScanStats | None, dead_ratio: float
) -> Floats:
    """The canonical gauge's D: every row's, from the first pass's column statistics, else
    estimated on the drawn scale rows (their spread: ``drawn``)."""
    if every_row is not None:
        return scale_of_spread(every_row.moments.std, every_row.rms_coordinate, dead_ratio)
    assert drawn is not None  # _plan_searches plans no canonical gauge without it
    return drawn.canonical(dead_ratio)


def _geometry(
    result: PassResult,
    stats: ScanStats,
    k: int,
    gauges: list[tuple[float, Floats]],
    sampling: Sampling,
    seed: int,
    on_geometry: Callable[[int], None] | None,
    dead_ratio: float,
    kept: Geometry | None,
    wanted: frozenset[str],
) -> Geometry | None:
    """The sample's geometry when the pass collected a sample (of at least two rows), else
    ``kept``'s, its cosine changes measured under this round's gauges."""
    if result.sample is None:
        if "gauges" in wanted and kept is not None:
            return kept.with_gauges(gauges)  # the gauges of this round
        return kept
    sample = result.sample.collected(sampling.sample, stats.d)
    sample = sample * (geometry.pow2_scale(row_norms(sample)) if len(sample) else 1.0)
    if len(sample) < 2:
        return None
    rngs = (generator(seed, Stream.PAIRS), generator(seed, Stream.REFERENCE))
    measured = sample_geometry(
        sample, stats, k, gauges, sampling.pairs, rngs, on_geometry, dead_ratio, kept=kept
    )
    if kept is not None:
        # The graph is the first sample's, and so are the gauges' cosine changes (EA301's, whose
        # sizes do not grow the sample): measured under this round's gauges on that sample,
        # whether or not another check grew the sample in the same round.
        change = (kept.with_gauges(gauges) if "gauges" in wanted else kept).cosine_change
        return replace(measured, graph_positions=kept.graph_positions, cosine_change=change)
    positions = result.sample.collected_positions(sampling.sample)
    return replace(measured, graph_positions=positions)


def _more_graphs(
    source: EmbeddingSource,
    measured: Measurements,
    *,
    k: int,
    seed: int,
    sampling: Sampling,
    take: Take,
) -> Measurements:
    """``measured`` with its sample's graph averaged with those of further independent samples
    of its size, ``sampling.graphs`` in all (the ones it averages already are kept)."""
    sample = measured.geometry
    if sample is None or sample.graph.m >= measured.stats.n_clean:
        return measured  # a graph of every row is exact: nothing to average
    graph = sample.graph
    count = sampling.graphs - graph.graphs
    if count <= 0:
        return measured
    more = more_graphs(
        source, graph, graph.m, k=k, seed=seed, count=count, start=graph.graphs - 1, take=take
    )
    return replace(measured, geometry=replace(sample, graph=averaged_graph([graph, *more])))


def _neighbors(
    planned: _Planned,
    drawn: _Drawn,
    truncate: tuple[int, ...],
    stats: ScanStats,
    source: EmbeddingSource,
    before: Neighbors | None,
) -> Neighbors:
    """What the checks read of the searches (after ``before``'s lists and overlaps where they
    extend them), with the canonical gauge they searched and the count of clean rows among the
    gauge rows (the search saw those)."""
    search = planned.search
    if search is not None and planned.extends is not None:
        search = planned.extends.extended(search)
    prior = before.search if before is not None else None
    measured = neighbor_lists(
        search,
        planned.gauge_search,
        planned.gauges,
        truncate,
        stats,
        source,
        drawn.external,
        planned.canonical_search,
        search if search is not None else prior,
    )
    if planned.gauges_grow is not None and before is not None:
        measured = with_grown_gauges(measured, before, planned.gauges_grow)
    if search is None:  # a round of the gauges alone: its queries are the gauge queries
        count = max(measured.gauge_queries, len(measured.canonical))
        # The base search it read their lists from stays the next round's reference.
        measured = replace(
            measured, queries=count, query_rows=drawn.query_rows[:count], search=prior
        )
    positions = planned.gauge_positions
    return replace(
        measured,
        canonical_scale=planned.canonical,
        canonical_rows=drawn.scale_positions,
        gauge_rows_searched=None if positions is None else _clean_among(stats, source, positions),
    )


def _clean_among(stats: ScanStats, source: EmbeddingSource, positions: Ints) -> int:
    """How many of the rows at ``positions`` are clean: from the pass's clean rows, or (when the
    engine did not bring them back: a source of billions of rows) from the rows themselves."""
    if stats.clean is not None:
        return int(stats.clean[positions].sum())
    ordered, clean = np.sort(positions), 0
    for start in range(0, len(ordered), 8192):  # a few MB of rows at a time
        clean += int(clean_mask(source.take(ordered[start : start + 8192]), source.dtype).sum())
    return clean

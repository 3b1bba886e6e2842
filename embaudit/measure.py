"""Everything the checks read, measured in one pass over the source plus work on small samples.

    source ──┬── statistics (PartStats per fragment) ─────┐
             ├── kNN of the query sample (NeighborSearch) ├──> Measurements ──> checks
             └── geometry sample (collected in the pass) ─┘

One pass reads every fragment once, in this process or on a cluster (:mod:`embaudit.engines`);
the engine does not change the result.

Random choices (query rows, sample rows, gauge draws, pairs, the isotropic reference) each have
their own stream spawned from ``seed``, so changing one sample size never changes the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_info, threadpool_limits

from embaudit import geometry
from embaudit.draw import Take, draw_clean_rows, draw_positions, first_positions, read_ahead
from embaudit.engines import Engine, LocalEngine, PassPlan, Searched
from embaudit.estimates import (
    cluster_share_standard_error,
    log_scale_spread_standard_error,
    pair_r2_standard_error,
    robin_hood_jackknife,
    top_share_standard_error,
)
from embaudit.index import IndexMeasurement
from embaudit.knn import EXTERNAL_ROW, Block, NeighborList, NeighborSearch
from embaudit.params import (
    GAUGE_DRAWS,
    GAUGE_LEVELS,
    GAUGE_QUERIES,
    GAUGE_ROWS,
    GRAPHS,
    PAIRS,
    QUERIES,
    SAMPLE,
    declare,
    validate,
)
from embaudit.sources import EmbeddingSource
from embaudit.sources.base import available_cores
from embaudit.stats import (
    DEAD_RATIO,
    RowCollector,
    ScanStats,
    coordinate_rms,
    dead_dimension_mask,
    row_norms,
)

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: The parts of a measurement a sampled check's value comes from (its ``reads``): the base
#: lists of every query (EA4xx, EA005, EA503), the random gauges' lists (EA301), the canonical
#: gauge's and its jitter's (EA302), the truncations' (EA303), the sample's statistics (EA203,
#: EA205) and its graphs (EA501, EA502). Measuring again for undecided checks measures only the
#: parts they read (:func:`measure`'s ``parts``).
PARTS = ("lists", "gauges", "canonical", "truncation", "sample", "graphs")
_SEARCHED = frozenset(("lists", "gauges", "canonical", "truncation"))
#: The parts measured in a pass over the source (the others read a few rows by position).
PASS_PARTS = _SEARCHED | {"sample"}


@dataclass(frozen=True)
class Sampling:
    """Sample sizes. Defaults keep a 1M x 768 audit within seconds; see the README for the
    statistical error they imply."""

    queries: int = declare(QUERIES)  # query rows of the cosine / L2 / dot comparison (EA4xx)
    gauge_queries: int = declare(GAUGE_QUERIES)  # the first queries, searched under each gauge
    gauge_draws: int = declare(GAUGE_DRAWS)  # random gauges per rescaling level
    gauge_rows: int = declare(GAUGE_ROWS)  # corpus rows the gauge queries search (all if fewer)
    gauge_levels: tuple[float, ...] = declare(GAUGE_LEVELS)  # s in D = exp(N(0, s^2))
    sample: int = declare(SAMPLE)  # rows for the spectrum, pair cosines and hubness graph
    pairs: int = declare(PAIRS)  # random pairs of sample rows
    graphs: int = declare(GRAPHS)  # independent `sample`-row graphs EA501 / EA502 average

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "gauge_queries": self.gauge_queries,
            "gauge_draws": self.gauge_draws,
            "gauge_rows": self.gauge_rows,
            "gauge_levels": list(self.gauge_levels),
            "sample": self.sample,
            "pairs": self.pairs,
            "graphs": self.graphs,
        }


@dataclass(frozen=True)
class Reference:
    """The same statistics on an isotropic Gaussian sample of the same size and dimension."""

    m: int
    d: int
    isoscore: float
    effective_rank: float
    top_share: float
    hubness: geometry.Hubness | None
    island_share: float = float("nan")  # rows in small mutual-kNN groups (EA502)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sample": self.m,
            "isoscore": self.isoscore,
            "effective_rank": self.effective_rank,
            "top_share": self.top_share,
        }
        if self.hubness is not None:
            hub = self.hubness
            out |= {"skewness": hub.skewness, "robin_hood": hub.robin_hood}
            out["antihub_rate"] = hub.antihub_rate
            out["island_share"] = self.island_share
        return out


@dataclass(frozen=True)
class SampleGraph:
    """Hubness and islands of the cosine kNN graph of a sample of ``m`` rows (EA501, EA502),
    or their means over ``graphs`` independent samples of that size.

    Their values depend on ``m`` (a larger graph has other hubs and islands): a check that
    needs a smaller error averages more graphs of the same size (:func:`more_graphs`), it does
    not grow the graph."""

    hubness: geometry.Hubness | None
    hubness_k: int
    robin_hood_error: float | None  # the Robin Hood index's jackknife error (EA501)
    island_share: float  # rows in mutual-kNN components of 2 to island_k rows (EA502)
    island_error: float | None  # its standard error, the components as units (EA502)
    single_share: float  # rows without a mutual neighbour
    island_k: int  # the degree of that graph: ISLAND_K, whatever k
    graphs: int = 1
    m: int = 0  # rows of each graph


@dataclass(frozen=True)
class Geometry:
    m: int  # sample rows used
    column_std: Floats  # per-dimension standard deviation of the (power-of-two scaled) sample
    scale_spread_error: float | None  # standard error of EA205's spread of their logs
    rms_coordinate: float  # sqrt(mean ||x||^2 / d) of the same rows
    eigenvalues: Floats
    isoscore: float
    effective_rank: float
    top_share: float
    top_share_error: float | None  # its standard error over the sample (EA203)
    pair_cosines: Floats
    graph: SampleGraph  # the sample's cosine kNN graph (EA501, EA502)
    rogue_dimensions: list[int]  # the three largest contributions to the expected cosine
    rogue_r2: float  # r^2 of pair cosines with and without them
    rogue_r2_error: float | None  # its standard error over the sample's rows and pairs
    cosine_change: dict[float, float]  # mean |cos_D - cos| of the pairs per rescaling level
    reference: Reference
    #: The sample and its pairs' rows, which a later round's gauges change the cosines of.
    rows: Floats = field(default_factory=lambda: np.zeros((0, 0)), repr=False, compare=False)
    pairs: tuple[Ints, Ints] = field(
        default_factory=lambda: (np.zeros(0, np.int64), np.zeros(0, np.int64)), repr=False
    )

    def with_gauges(self, gauges: list[tuple[float, Floats]]) -> Geometry:
        """The same sample, its cosine changes measured under ``gauges``."""
        return replace(self, cosine_change=_cosine_change(self, gauges))


def _cosine_change(sample: Geometry, gauges: list[tuple[float, Floats]]) -> dict[float, float]:
    """Mean |cos_D - cos| of the sample's pairs per rescaling level, over its draws."""
    first, second = sample.pairs
    if not gauges or not len(first):
        return {s: float("nan") for s, _ in gauges}
    # Every gauge at once: cos_D(u, v) = sum_i u_i v_i D_i^2 / (|u D| |v D|), from the unit rows
    # (a cosine does not change when a row is scaled), one product per pair and per row.
    unit = geometry.unit_rows(sample.rows)
    squares = np.stack([scale**2 for _, scale in gauges], axis=1)  # (d, gauges)
    gauged_norms = np.sqrt((unit * unit) @ squares)  # (rows, gauges); D > 0: no zero
    products = np.empty((len(first), len(gauges)))  # (pairs, gauges)
    for block in geometry.pair_blocks(len(first)):  # the pairs' rows in the cache
        products[block] = (unit[first[block]] * unit[second[block]]) @ squares
    rescaled = products / (gauged_norms[first] * gauged_norms[second])
    shift = np.abs(rescaled - sample.pair_cosines[:, None]).mean(axis=0)
    change: dict[float, list[float]] = {}
    for (s, _), value in zip(gauges, shift.tolist(), strict=True):
        change.setdefault(s, []).append(value)
    return {s: float(np.mean(v)) for s, v in change.items()}


@dataclass(frozen=True)
class Neighbors:
    k: int  # neighbours per query that exist (k, or fewer on tiny inputs)
    queries: int
    gauge_queries: int
    query_rows: Ints  # row positions of the queries; the gauge blocks use the first ones
    overlap: dict[tuple[str, str], Floats]  # per-query overlap@k of metric pairs
    top1_differs: dict[tuple[str, str], float]
    by_k: dict[tuple[str, str], dict[int, float]]  # mean overlap@j for j = 1, 5, ..., k
    gauge: dict[float, list[Floats]]  # level -> per-draw, per-query overlap@k
    canonical: Floats  # per-query overlap@k against the column-standardised data
    canonical_scale: Floats = field(repr=False)  # the standardising D
    #: Per draw, the per-query overlap@k against the same gauge jittered by its own estimation
    #: error (:func:`scale_jitter`): how far one more such error moves the value, which is how
    #: far the estimated scale may have moved it from that of the exact one (EA302's error).
    canonical_jitter: list[Floats] = field(default_factory=list)
    #: The corpus rows the canonical gauge's column scales are estimated on (none in a later
    #: round: its scales are those of every clean row, from the first pass's statistics).
    canonical_rows: Ints = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    truncation: dict[int, Floats] = field(default_factory=dict)  # M -> per-query overlap@k
    #: How many clean rows the gauge queries searched (EA301, EA302) when they are a random
    #: draw of the corpus's (:func:`gauge_corpus`); None when they searched every row.
    gauge_rows: int | None = None
    hygiene: QueryHygiene | None = None  # nearest and mean cosines per query (EA005, EA206, EA503)
    search: NeighborSearch | None = field(default=None, repr=False, compare=False)  # its lists
    #: The gauge queries' search on the gauge rows (EA301, EA302 read its lists).
    gauge_search: NeighborSearch | None = field(default=None, repr=False, compare=False)
    index: IndexMeasurement | None = None  # the index of ``--index``, searched (EA701, EA702)


#: The random stream of the corpus rows drawn for EA503's floor next to a query file (after
#: measure's five and the index's two).
_FLOOR_STREAM = 7
#: The random streams of the rows the canonical gauge is estimated on (EA302) and of its
#: jitter (EA302's scale error), and the jitter's draws.
_SCALE_STREAM = 8
_JITTER_STREAM = 9
#: The random stream of the further independent samples whose graphs EA501 and EA502 average.
_GRAPH_STREAM = 10
#: The random stream of the corpus rows the gauge queries search (:func:`gauge_corpus`).
_GAUGE_ROWS_STREAM = 11
JITTER_DRAWS = 3
#: The canonical gauge is estimated on this many times ``sample`` rows: rows read by position
#: cost little next to the search, and its error and its bias (an estimated scale is a small
#: random gauge, which lowers the overlap) shrink as 1/sqrt of their count (on a log-normal
#: 1M x 768 export, EA302 0.826 at 5,000 rows, 0.868 at 20,000, 0.881 with every row's). A
#: later round, for an undecided EA302, takes every row's scale from the first pass.
SCALE_ROWS_PER_SAMPLE = 4
#: Names of the search's blocks the checks read (:func:`_neighbors`).
BASE_BLOCK = "base"
GAUGE_BLOCK = "gauge s="
CANONICAL_BLOCK = "canonical"
JITTER_BLOCK = "canonical jitter"


@dataclass(frozen=True)
class _External:
    """Queries from another source: where they come from, their positions there, and how many
    corpus rows follow them in the search (EA503's floor)."""

    source: EmbeddingSource
    rows: Ints
    floor_queries: int


@dataclass(frozen=True)
class QueryHygiene:
    """What each query sees of the corpus beyond its neighbour list: the cosine of its nearest
    other row, whether that row is an exact copy (EA003's, not a near-duplicate), and its mean
    cosine to every other clean row (exact, from the pass's sum of unit rows)."""

    nearest_cosine: Floats  # (queries,); -inf when the corpus has no other row
    nearest_row: Ints  # (queries,); -1 when none
    exact_copy: npt.NDArray[np.bool_]  # nearest cosine 1 and the same norm, up to rounding
    mean_cosine: Floats  # (queries,) mean cosine to the other clean rows
    #: Names of the queries and corpus rows the examples show: ids where the source has an id
    #: column, else row positions (in the query file for external queries).
    query_names: dict[int, Any] = field(default_factory=dict)
    row_names: dict[int, Any] = field(default_factory=dict)
    external: bool = False  # the queries come from --query-file
    floor_cosine: Floats | None = None  # nearest cosines of corpus rows (with a query file)
    returned: dict[str, Any] | None = None  # how the queries' results spread (query file)

    def query_name(self, query: int) -> Any:
        return self.query_names.get(query, query)

    def row_name(self, row: int) -> Any:
        return self.row_names.get(row, row)


@dataclass(frozen=True)
class Measurements:
    stats: ScanStats
    geometry: Geometry | None
    neighbors: Neighbors | None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    #: Set when the audit measured again (undecided checks): rounds, the checks that asked for
    #: it, those still undecided at the cap.
    adaptive: dict[str, Any] | None = None


def gauge_scales(
    d: int, levels: tuple[float, ...], draws: int, rng: np.random.Generator
) -> list[tuple[float, Floats]]:
    """Random diagonal gauges D = exp(N(0, s^2)), ``draws`` per level s."""
    return [(s, np.exp(rng.normal(0.0, s, size=d))) for s in levels for _ in range(draws)]


def gauge_corpus(n: int, rows: int, seed: int) -> Ints | None:
    """The sorted positions of the corpus rows that the gauge queries search (EA301, EA302):
    ``rows`` of the ``n`` drawn uniformly at random from their own stream of ``seed``, or
    None (every row) when ``n <= rows``. The same rows in every round of an audit, so that
    every round estimates the same overlap.

    Why a sample: searching every row under the 16 gauges would multiply 800 more query rows
    with every row, more than the 500 queries of the other checks. What it changes: an overlap
    depends on how many rows are searched, since they decide how near the neighbours are, in
    either direction (a 1M x 768 clustered export: EA301 0.43 on 25,000 rows, 0.30 on
    100,000, 0.16 on every row, benchmarks/gauge_rows.py; clusters of 10 rows: lower on a
    third of the rows than on all, where fewer of each cluster remain). A sample of a fixed
    size measures every export larger than it at the same density."""
    if n <= rows:
        return None
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_GAUGE_ROWS_STREAM,)))
    return np.sort(draw_positions(n, rows, rng))


def truncation_scale(d: int, m: int) -> Floats:
    """The gauge of a truncation to the first ``m`` of ``d`` dimensions: D = (1…1, 0…0). Cosine
    under it is cosine on the first m columns. (d,)"""
    scale = np.zeros(d)
    scale[:m] = 1.0
    return scale


def canonical_scale(rows: Floats, dead_ratio: float = DEAD_RATIO) -> Floats:
    """The canonical gauge: D scaling every live column to unit standard deviation, and the
    dead ones (EA004's rule, :func:`~embaudit.stats.dead_dimension_mask`) to 0: they carry no
    information about which rows are near and their spread, if any, is rounding noise. D is
    divided by its largest entry: cosine does not see an overall factor, and D^2 then stays
    within float32 range.

    Gauge-invariant: for rows X D', the scale is D'^-1 times this one (up to that overall factor),
    so X D' D_c = X D_c. (m, d) -> (d,)
    """
    std = rows.std(axis=0)
    return scale_of_spread(std, coordinate_rms(row_norms(rows), rows.shape[1]), dead_ratio)


def scale_of_spread(std: Floats, rms_coordinate: float, dead_ratio: float = DEAD_RATIO) -> Floats:
    """:func:`canonical_scale` from the columns' standard deviations and the root mean square
    coordinate of the rows they are measured on (a sample's, or every row's from the pass)."""
    dead = dead_dimension_mask(std, rms_coordinate, dead_ratio)
    scale = np.zeros(len(std))
    if not dead.all():
        scale[~dead] = 1.0 / std[~dead]
        scale /= scale.max()
    return scale


def scale_jitter(
    rows: Floats, scale: Floats, rng: np.random.Generator, draws: int = 1
) -> list[Floats]:
    """``draws`` draws of ``scale`` (a canonical gauge estimated on ``rows``) times exp(e),
    e_j ~ N(0, v_j) with v_j the sampling variance of log std_j on those rows,
    (m4 / m2^2 - 1) / (4 m) by the delta method (m2, m4: the column's central moments): each a
    gauge as far from this one as this one is, in distribution, from the gauge of every row.
    Dead columns stay 0. (m, d), (d,) -> [(d,)] * draws"""
    m = rows.shape[0]
    live = scale > 0
    columns = rows if live.all() else rows[:, live]
    squared = columns - columns.mean(axis=0)  # centred, then squared in place
    np.square(squared, out=squared)
    m2 = np.mean(squared, axis=0)
    m4 = np.mean(np.square(squared, out=squared), axis=0)
    variance = np.maximum(m4 / m2**2 - 1.0, 0.0) / (4 * max(m, 1))
    out = []
    for _ in range(draws):
        jittered = np.zeros_like(scale)
        jittered[live] = scale[live] * np.exp(rng.normal(0.0, np.sqrt(variance)))
        peak = jittered.max()
        out.append(jittered / peak if peak > 0 else jittered)
    return out


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
    a measurement of the same source with the same seed. Without ``lists`` or ``truncation``
    nothing searches every row (the gauges' references are the gauge queries' own lists on
    the gauge rows, :func:`gauge_corpus`); without
    a searched part nor ``sample`` there is no pass (the statistics are ``previous``'s); with
    ``graphs`` alone the sample's graphs grow to ``sampling.graphs`` by new samples added to
    ``previous``'s."""
    wanted = frozenset(parts)
    if not wanted <= set(PARTS) or (previous is None and wanted != set(PARTS)):
        raise ValueError(f"parts {sorted(wanted)}: a subset of {PARTS}, all without previous")
    if previous is not None and wanted.isdisjoint(PASS_PARTS):
        return _more_graphs(source, previous, k=k, seed=seed, sampling=sampling, engine=engine)
    engine = engine or LocalEngine()
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    query_rng, sample_rng, gauge_rng, pair_rng, reference_rng = streams
    n, d = source.n, source.d
    timings: dict[str, float] = {}
    started = time.perf_counter()

    floor_rng, scale_rng, jitter_rng = (
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))
        for stream in (_FLOOR_STREAM, _SCALE_STREAM, _JITTER_STREAM)
    )
    # The corpus rows drawn before the pass (the queries or EA503's floor rows, and the rows
    # of the canonical gauge) are read together: a parquet file's row groups once. A pass
    # that searches nothing (a later round for the sample alone) reads none of them.
    external = None
    query_rows, queries = np.empty(0, np.int64), np.empty((0, d))
    scale_positions, scale_rows = np.empty(0, np.int64), np.empty((0, d))
    # A later round's canonical gauge is every row's: the first pass's column statistics
    # (finite unless values beyond ~1e154 overflowed their squares) give it exactly.
    exact_scale = previous is not None and bool(np.isfinite(previous.stats.moments.std).all())
    scale_count = 0 if exact_scale else SCALE_ROWS_PER_SAMPLE * sampling.sample
    if not wanted.isdisjoint(_SEARCHED):
        corpus_rng = query_rng if queries_from is None else floor_rng
        take = read_ahead(
            source,
            np.concatenate(
                [
                    first_positions(n, sampling.queries, corpus_rng),
                    first_positions(n, scale_count, scale_rng)
                    if scale_count
                    else np.empty(0, np.int64),
                ]
            ),
            engine.take,
        )
        if queries_from is None:
            query_rows, queries, _ = draw_clean_rows(source, sampling.queries, query_rng, take)
        else:
            drawn, queries, _ = draw_clean_rows(queries_from, sampling.queries, query_rng)
            floor_rows, floor_queries, _ = draw_clean_rows(
                source, sampling.queries, floor_rng, take
            )
            external = _External(queries_from, drawn, len(floor_rows))
            query_rows = np.concatenate([np.full(len(drawn), EXTERNAL_ROW), floor_rows])
            queries = np.concatenate([queries, floor_queries])
        # The canonical gauge standardizes the corpus's columns, estimated on scale_count rows.
        if scale_count:
            scale_positions, scale_rows, _ = draw_clean_rows(source, scale_count, scale_rng, take)
        del take  # its rows read ahead are not kept through the pass
    timings["queries"] = time.perf_counter() - started
    gauges = gauge_scales(d, sampling.gauge_levels, sampling.gauge_draws, gauge_rng)
    search: NeighborSearch | None = None  # every query, every row: lists, truncations
    gauge_search: NeighborSearch | None = None  # the gauge queries on gauge_corpus's rows
    gauge_rows: Ints | None = None
    searches: list[Searched] = []
    # With k >= n - 1 every row is every row's neighbour: nothing to compare, the checks skip.
    # The queries the checks read: the query file's, when the corpus's follow them.
    own = len(query_rows) if external is None else len(external.rows)
    canonical = np.zeros(d)
    if own and (exact_scale or len(scale_rows)) and k < n - 1:
        gauge_queries = min(sampling.gauge_queries, own)
        if exact_scale:
            assert previous is not None
            every_row = previous.stats
            canonical = scale_of_spread(every_row.moments.std, every_row.rms_coordinate, dead_ratio)
        else:
            # Scale-free statistics are computed on rows divided by one power of two (exact), so
            # that squares of values near 1e±30 (float32) or 1e±200 (float64) stay in range.
            scale_rows = scale_rows * geometry.pow2_scale(row_norms(scale_rows))
            canonical = canonical_scale(scale_rows, dead_ratio)
        # L2 and inner-product lists, and the base search, only where a check reads them (a
        # round for the gauges alone searches their own sample of the corpus).
        if not wanted.isdisjoint(("lists", "truncation")):
            blocks = [Block(BASE_BLOCK, len(query_rows))]
            if "truncation" in wanted:
                blocks += [Block(f"truncate {m}", own, truncation_scale(d, m)) for m in truncate]
            search = NeighborSearch(queries, query_rows, k, blocks)
            searches.append(Searched(search))
        gauge_blocks = []
        if "gauges" in wanted:
            gauge_blocks += [Block(f"{GAUGE_BLOCK}{s:g}", gauge_queries, g) for s, g in gauges]
        if "canonical" in wanted:
            gauge_blocks.append(Block(CANONICAL_BLOCK, gauge_queries, canonical))
            # A scale of every row is exact: nothing to jitter.
            if 0 < scale_count < n:
                jittered = scale_jitter(scale_rows, canonical, jitter_rng, JITTER_DRAWS)
                gauge_blocks += [
                    Block(f"{JITTER_BLOCK} {r}", gauge_queries, scale)
                    for r, scale in enumerate(jittered)
                ]
        if gauge_blocks:
            # The gauge queries' cosine lists without a gauge are the gauges' references.
            gauge_search = NeighborSearch(
                queries[:gauge_queries],
                query_rows[:gauge_queries],
                k,
                [Block(BASE_BLOCK, gauge_queries), *gauge_blocks],
                ("cosine",),
            )
            gauge_rows = gauge_corpus(n, sampling.gauge_rows, seed)
            searches.append(Searched(gauge_search, gauge_rows))
    del scale_rows  # not kept through the pass
    sample_rows = draw_positions(n, sampling.sample + 64, sample_rng)
    collector = RowCollector(sample_rows) if "sample" in wanted else None
    # The statistics of every row are those of the first measurement: a later one's pass only
    # feeds the search and the sample.
    plan = PassPlan(tuple(searches), collector, statistics=previous is None)

    mark = time.perf_counter()
    result = engine.run(source, plan, chunk_rows=chunk_rows, on_rows=on_rows)
    stats = result.stats if previous is None else previous.stats
    assert stats is not None
    timings |= result.timings
    timings["pass"] = time.perf_counter() - mark
    mark = time.perf_counter()
    geometry_summary = previous.geometry if previous is not None else None
    if result.sample is not None:
        sample = result.sample.collected(sampling.sample, d)
        sample = sample * (geometry.pow2_scale(row_norms(sample)) if len(sample) else 1.0)
        geometry_summary = (
            _geometry(
                sample,
                stats,
                k,
                gauges,
                sampling.pairs,
                (pair_rng, reference_rng),
                on_geometry,
                dead_ratio,
                kept=previous.geometry if previous is not None else None,
            )
            if len(sample) >= 2
            else None
        )
    if result.sample is None and "gauges" in wanted and geometry_summary is not None:
        geometry_summary = geometry_summary.with_gauges(gauges)  # the gauges of this round
    measured = Measurements(stats, geometry_summary, None, timings)
    if "graphs" in wanted:
        measured = _more_graphs(source, measured, k=k, seed=seed, sampling=sampling, engine=engine)
    timings["geometry"] = time.perf_counter() - mark
    neighbors = previous.neighbors if previous is not None else None
    if (search is not None or gauge_search is not None) and k < stats.n_clean - 1:
        neighbors = replace(
            _neighbors(search, gauge_search, gauges, truncate, stats, source, external),
            canonical_scale=canonical,
            canonical_rows=scale_positions,
            # The search saw the clean rows among those drawn.
            gauge_rows=None if gauge_rows is None else int(stats.clean[gauge_rows].sum()),
        )
    return replace(measured, neighbors=neighbors)


def _more_graphs(
    source: EmbeddingSource,
    measured: Measurements,
    *,
    k: int,
    seed: int,
    sampling: Sampling,
    engine: Engine | None,
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
    take = (engine or LocalEngine()).take
    more = more_graphs(
        source, graph, graph.m, k=k, seed=seed, count=count, start=graph.graphs - 1, take=take
    )
    return replace(measured, geometry=replace(sample, graph=averaged_graph([graph, *more])))


#: The degree of the mutual kNN graph whose islands EA502 counts, whatever k: islands are a
#: property of the index's graph (an HNSW layer links 16 to 32 rows), not of the list size the
#: user compares, and the share falls steeply with the degree (calibrated at 10).
ISLAND_K = 10

#: Stages of the work on the sample after the pass: spectrum, pairs, hubness graph, reference.
GEOMETRY_STEPS = 4


def _geometry(
    sample: Floats,
    stats: ScanStats,
    k: int,
    gauges: list[tuple[float, Floats]],
    pair_count: int,
    rngs: tuple[np.random.Generator, np.random.Generator],
    step: Callable[[int], None] | None = None,
    dead_ratio: float = DEAD_RATIO,
    kept: Geometry | None = None,
) -> Geometry:
    """The statistics of the sample, in GEOMETRY_STEPS stages (``step`` told of each);
    ``dead_ratio`` is EA004's threshold, whose dead dimensions EA205's error leaves out.

    With ``kept`` (the first measurement's geometry, when a later round measures a larger
    sample for EA203 or EA205) the graphs and their isotropic reference are ``kept``'s: their
    value is that of a graph of the first sample's size (EA501, EA502)."""
    pair_rng, reference_rng = rngs
    advance = step or (lambda _: None)
    m, d = sample.shape
    # The isotropic reference depends on the sample's shape and k alone: it is computed on a
    # second thread while this one measures the sample (numpy releases the GIL), from its own
    # random stream, so the result does not depend on which finishes first.
    hub_k, island_k = (
        (kept.graph.hubness_k, kept.graph.island_k) if kept is not None else _graph_degrees(m, k)
    )
    # Each of the two threads' BLAS calls gets half the cores (or fewer, if so limited): as
    # many BLAS threads as cores in each would oversubscribe them (and OpenBLAS's eigh of a
    # 768 x 768 covariance alone takes 0.56 s on two threads against 0.20 s on one, on a
    # 2-core AMD EPYC).
    blas_threads = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    half = max(1, min([available_cores() // 2, *blas_threads]))
    blas = threadpool_limits(half, user_api="blas")
    with blas, ThreadPoolExecutor(1, thread_name_prefix="embaudit-reference") as pool:
        pending = pool.submit(_reference, m, d, hub_k, island_k, reference_rng, kept is None)

        def reference() -> Reference:
            finished = pending.result()
            if kept is not None:
                hubness, island_share = kept.reference.hubness, kept.reference.island_share
                finished = replace(finished, hubness=hubness, island_share=island_share)
            advance(1)
            return finished

        measured = _sample_geometry(
            sample, stats, k, (pair_count, pair_rng), advance, dead_ratio, kept, reference
        )
    return measured.with_gauges(gauges)


def _sample_geometry(
    sample: Floats,
    stats: ScanStats,
    k: int,
    pairs: tuple[int, np.random.Generator],
    advance: Callable[[int], None],
    dead_ratio: float,
    kept: Geometry | None,
    reference: Callable[[], Reference],
) -> Geometry:
    """The geometry of the sample (:func:`_geometry`), with the reference ``reference()``
    gives once the sample's own statistics are done."""
    pair_count, pair_rng = pairs
    m, d = sample.shape
    eigenvalues, top = geometry.covariance_spectrum(sample)
    column_std, rms = sample.std(axis=0), coordinate_rms(row_norms(sample), d)
    dead = dead_dimension_mask(column_std, rms, dead_ratio)
    # A sample of every clean row measures the corpus itself: its statistics carry no error.
    complete = m >= stats.n_clean
    advance(1)
    unit = geometry.unit_rows(sample)
    first, second = geometry.random_pairs(m, min(pair_count, m * (m - 1)), pair_rng)
    cosines = geometry.pair_cosines(unit, first, second)

    rogue, rogue_r2, rogue_r2_error = _rogue(sample, stats, first, second, cosines, complete)
    advance(1)

    graph = sample_graph(unit, k, complete) if kept is None else kept.graph
    advance(1)
    isotropic = reference()
    return Geometry(
        m=m,
        column_std=column_std,
        scale_spread_error=None if complete else log_scale_spread_standard_error(sample[:, ~dead]),
        rms_coordinate=rms,
        eigenvalues=eigenvalues,
        isoscore=geometry.isoscore(eigenvalues),
        effective_rank=geometry.effective_rank(eigenvalues),
        top_share=_top_share(eigenvalues),
        top_share_error=None if complete else top_share_standard_error(sample, top),
        pair_cosines=cosines,
        graph=graph,
        rogue_dimensions=rogue,
        rogue_r2=rogue_r2,
        rogue_r2_error=rogue_r2_error,
        cosine_change={},
        reference=isotropic,
        rows=sample,
        pairs=(first, second),
    )


def _graph_degrees(m: int, k: int) -> tuple[int, int]:
    """The degrees of a sample's kNN graphs of ``m`` rows: hubness's (k) and the islands'
    (ISLAND_K), each at most m - 1."""
    return min(k, m - 1), min(ISLAND_K, m - 1)


def sample_graph(unit: Floats, k: int, complete: bool) -> SampleGraph:
    """The hubness (k-NN) and islands (ISLAND_K-NN, mutual) of the cosine graph of the unit
    rows ``unit``, with their errors unless the rows are every clean row (``complete``)."""
    m = len(unit)
    hub_k, island_k = _graph_degrees(m, k)
    extended = geometry.cosine_knn_graph(unit, hub_k, following=True)
    graph = extended[:, :hub_k]
    hubness = geometry.hubness_from_neighbors(graph, m)
    if island_k != hub_k:
        graph = geometry.cosine_knn_graph(unit, island_k)
    labels, small, alone = geometry.island_rows(graph, island_k)
    return SampleGraph(
        hubness=hubness,
        hubness_k=hub_k,
        robin_hood_error=None if complete else robin_hood_jackknife(extended, hub_k),
        island_share=float(small.mean()),
        island_error=None if complete else cluster_share_standard_error(labels, small),
        single_share=float(alone.mean()),
        island_k=island_k,
        m=m,
    )


def more_graphs(
    source: EmbeddingSource,
    first: SampleGraph,
    m: int,
    *,
    k: int,
    seed: int,
    count: int,
    start: int = 0,
    take: Take | None = None,
) -> list[SampleGraph]:
    """The graphs of ``count`` further independent samples of ``m`` clean rows of ``source``,
    the ``start``-th onwards of their random stream (each its own, so a later round adds to the
    earlier ones): what EA501 and EA502 average when one graph leaves them undecided."""
    rngs = [
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_GRAPH_STREAM, start + i)))
        for i in range(count)
    ]
    # The rows of every sample are read together (a parquet file's row groups once).
    positions = [first_positions(source.n, m, rng) for rng in rngs]
    ahead = read_ahead(source, np.concatenate(positions), take)
    graphs = []
    for rng in rngs:
        _, rows, _ = draw_clean_rows(source, m, rng, ahead)
        rows = rows * geometry.pow2_scale(row_norms(rows))
        graph = sample_graph(geometry.unit_rows(rows), k, complete=False)
        graphs.append(replace(graph, hubness_k=first.hubness_k, island_k=first.island_k))
    return graphs


def averaged_graph(graphs: list[SampleGraph]) -> SampleGraph:
    """The mean of independent graphs' values, with the error of a mean of independent
    estimates (none when one graph's is none); the k-occurrences of every graph pooled. A
    graph that is itself a mean of ``g.graphs`` graphs counts as that many."""
    if len(graphs) == 1:
        return graphs[0]
    weights = np.array([g.graphs for g in graphs], dtype=np.float64)
    total = float(weights.sum())
    hubs = [g.hubness for g in graphs if g.hubness is not None]

    def mean(values: list[float]) -> float:
        return float(np.dot(weights, values) / total)

    def mean_error(errors: list[float | None]) -> float | None:
        # A mean of g graphs with error e: the sum of its graphs' squared errors is (g e)^2.
        known = [e for e in errors if e is not None]
        if len(known) < len(errors):
            return None
        return float(np.sqrt(np.sum(np.square(weights * np.asarray(known))))) / total

    hubness = None
    if len(hubs) == len(graphs):
        hubness = geometry.Hubness(
            skewness=mean([h.skewness for h in hubs]),
            robin_hood=mean([h.robin_hood for h in hubs]),
            antihub_rate=mean([h.antihub_rate for h in hubs]),
            max_occurrence=max(h.max_occurrence for h in hubs),
            k_occurrence=np.concatenate([h.k_occurrence for h in hubs]),
        )
    return replace(
        graphs[0],
        hubness=hubness,
        robin_hood_error=mean_error([g.robin_hood_error for g in graphs]),
        island_share=mean([g.island_share for g in graphs]),
        island_error=mean_error([g.island_error for g in graphs]),
        single_share=mean([g.single_share for g in graphs]),
        graphs=int(total),
    )


def _rogue(
    sample: Floats, stats: ScanStats, first: Ints, second: Ints, cosines: Floats, complete: bool
) -> tuple[list[int], float, float | None]:
    """The three dimensions that contribute most to the expected cosine (from every clean row),
    and the r^2 of the pair cosines with and without them (NaN when too few pairs are left)
    with its standard error (over the pairs alone when the sample is every clean row:
    ``complete``)."""
    d = sample.shape[1]
    cc = geometry.rogue_contributions(stats.unit_sum, stats.unit_sq_sum, stats.n_clean)
    rogue = [int(j) for j in np.argsort(-cc, kind="stable")[: min(3, d)]]
    if d <= len(rogue):
        return rogue, float("nan"), None
    reduced = sample.copy()
    reduced[:, rogue] = 0.0
    alive = np.abs(reduced).max(axis=1) > 0
    keep = alive[first] & alive[second]
    if keep.sum() < 2:
        return rogue, float("nan"), None
    reduced_unit = np.zeros_like(reduced)
    reduced_unit[alive] = geometry.unit_rows(reduced[alive])
    without = geometry.pair_cosines(reduced_unit, first[keep], second[keep])
    r2 = geometry.pearson_r2(cosines[keep], without)
    error = pair_r2_standard_error(
        cosines[keep], without, first[keep], second[keep], rows_sampled=not complete
    )
    return rogue, r2, error  # None where a cosine is constant (r^2 NaN) or below 3 pairs


def _reference(
    m: int, d: int, hub_k: int, island_k: int, rng: np.random.Generator, graphs: bool = True
) -> Reference:
    """The geometry statistics of an isotropic Gaussian sample of the same shape (without
    ``graphs``, not those of its kNN graphs: no hubness, a NaN island share)."""
    gaussian = geometry.isotropic_sample(m, d, rng)
    eigenvalues = geometry.covariance_eigenvalues(gaussian)
    reference = Reference(
        m=m,
        d=d,
        isoscore=geometry.isoscore(eigenvalues),
        effective_rank=geometry.effective_rank(eigenvalues),
        top_share=_top_share(eigenvalues),
        hubness=None,
    )
    if not graphs:
        return reference
    unit = geometry.unit_rows(gaussian)
    graph = geometry.cosine_knn_graph(unit, hub_k)
    return replace(
        reference,
        hubness=geometry.hubness_from_neighbors(graph, m),
        island_share=geometry.island_shares(
            graph if island_k == hub_k else geometry.cosine_knn_graph(unit, island_k), island_k
        )[0],
    )


def _top_share(eigenvalues: Floats) -> float:
    total = eigenvalues.sum()
    return float(eigenvalues[0] / total) if total > 0 else 0.0


#: Example rows whose ids the report names: the nearest pairs (EA005), the farthest queries
#: (EA503).
EXAMPLES = 5


def _neighbors(
    search: NeighborSearch | None,
    gauge_search: NeighborSearch | None,
    gauges: list[tuple[float, Floats]],
    truncate: tuple[int, ...],
    stats: ScanStats,
    source: EmbeddingSource,
    external: _External | None = None,
) -> Neighbors:
    """What the checks read of the searches: the metric overlaps, truncations and hygiene of
    every query (``search``; None in a round for the gauges alone) and the gauges' overlaps
    (``gauge_search``; None when no gauge was searched)."""
    n_clean = stats.n_clean
    overlap: dict[tuple[str, str], Floats] = {}
    top1: dict[tuple[str, str], float] = {}
    by_k: dict[tuple[str, str], dict[int, float]] = {}
    truncation: dict[int, Floats] = {}
    hygiene = None
    if search is not None:
        full = search
        if external is not None:
            search = search.head(len(external.rows))
        lists: dict[str, NeighborList] = {m: search.list_for(m) for m in search.metrics}
        pairs = [("cosine", "l2"), ("cosine", "dot"), ("l2", "dot")]
        overlap = {(a, b): search.overlap(lists[a], lists[b]) for a, b in pairs}
        top1 = {
            (a, b): float(np.mean(search.overlap(lists[a], lists[b], at=1) < 1)) for a, b in pairs
        }
        ladder = sorted({j for j in (1, 5, 10, 50, 100) if j < search.k} | {search.k})
        by_k = {
            (a, b): {j: float(search.overlap(lists[a], lists[b], at=j).mean()) for j in ladder}
            for a, b in pairs
        }
        # The truncations' blocks, in the order of ``truncate``, when this search has them.
        if len(search.blocks) > 1:
            for m, b in zip(truncate, range(1, len(search.blocks)), strict=True):
                truncation[m] = search.overlap(lists["cosine"], search.list_for("cosine", b))
        hygiene = _hygiene(search, lists["cosine"], stats, source, external, full)
    # Each gauge block's per-query overlap against the gauge queries' own cosine lists, in the
    # order the blocks were made: the random gauges in the order of ``gauges``, the canonical
    # gauge and its jitters.
    gauge: dict[float, list[Floats]] = {}
    canonical: Floats = np.zeros(0)
    jitter: list[Floats] = []
    gauge_queries = 0
    if gauge_search is not None:
        gauge_queries = gauge_search.blocks[0].n_queries
        reference = gauge_search.list_for("cosine")
        levels = iter(s for s, _ in gauges)
        for b, block in enumerate(gauge_search.blocks[1:], start=1):
            shared = gauge_search.overlap(reference, gauge_search.list_for("cosine", b))
            if block.name.startswith(GAUGE_BLOCK):
                gauge.setdefault(next(levels), []).append(shared)
            elif block.name == CANONICAL_BLOCK:
                canonical = shared
            else:
                jitter.append(shared)
    searched = search if search is not None else gauge_search
    assert searched is not None
    return Neighbors(
        k=min(searched.k, max(n_clean - 1, 0)),
        queries=searched.blocks[0].n_queries,
        gauge_queries=gauge_queries,
        query_rows=np.asarray(searched.query_rows, dtype=np.int64),
        overlap=overlap,
        top1_differs=top1,
        by_k=by_k,
        gauge=gauge,
        canonical=canonical,
        canonical_scale=np.zeros(searched.d),  # the caller's (the scale the rows were drawn for)
        canonical_jitter=jitter,
        truncation=truncation,
        hygiene=hygiene,
        search=search,
        gauge_search=gauge_search,
    )


def _hygiene(
    search: NeighborSearch,
    cosine: NeighborList,
    stats: ScanStats,
    source: EmbeddingSource,
    external: _External | None,
    full: NeighborSearch,
) -> QueryHygiene:
    """Each query's nearest other row and mean cosine to the other clean rows (its own row,
    when it is a corpus row, left out of the mean); with a query file, the nearest cosines of
    the corpus rows searched after the queries."""
    count = cosine.n_queries
    nearest = np.asarray(cosine.scores[:, 0], dtype=np.float64)
    rows = np.asarray(cosine.rows[:, 0], dtype=np.int64)
    ratio = cosine.features[:, 0, 1] / search.query_norm[:count]
    tolerance = search.tie_tolerance
    exact = (rows >= 0) & (nearest >= 1 - tolerance) & (np.abs(ratio - 1) <= tolerance)
    unit = geometry.unit_rows(np.asarray(search.queries[:count], dtype=np.float64))
    own = (np.asarray(search.query_rows[:count]) >= 0).astype(np.float64)
    others = np.maximum(stats.n_clean - own, 1)
    mean_cosine = np.clip((unit @ stats.unit_sum - own) / others, -1.0, 1.0)
    # The examples: the nearest pairs (EA005) and the farthest queries (EA503).
    found = rows >= 0
    near = np.flatnonzero(found & ~exact)
    near = near[np.argsort(-nearest[near], kind="stable")][:EXAMPLES]
    far = np.flatnonzero(found)[np.argsort(nearest[found], kind="stable")][:EXAMPLES]
    shown = np.unique(np.concatenate([near, far]))
    if external is None:
        positions = np.asarray(search.query_rows)[shown]
        query_source = source
    else:
        positions, query_source = external.rows[shown], external.source
    query_names = dict(zip(shown.tolist(), _names(query_source, positions), strict=True))
    corpus_rows = np.unique(rows[near])
    row_names = dict(zip(corpus_rows.tolist(), _names(source, corpus_rows), strict=True))
    floor, returned = None, None
    if external is not None:
        floor = np.asarray(full.list_for("cosine").scores[count:, 0], dtype=np.float64)
        floor = floor[np.isfinite(floor)]
        returned = _returned(cosine.rows, stats.n_clean, source)
    return QueryHygiene(
        nearest,
        rows,
        exact,
        mean_cosine,
        query_names,
        row_names,
        external is not None,
        floor,
        returned,
    )


def _returned(lists: Ints, n_clean: int, source: EmbeddingSource) -> dict[str, Any]:
    """Query hubness: how the result slots of the queries spread over the corpus rows — the
    distinct rows returned (and as many as slots drawn uniformly from n rows would give) and
    the rows returned most, with the share of the slots they fill."""
    slots = lists[lists >= 0]
    rows, counts = np.unique(slots, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:EXAMPLES]
    total = max(len(slots), 1)
    uniform = n_clean * -np.expm1(-len(slots) / max(n_clean, 1))
    return {
        "slots": len(slots),
        "distinct_rows": len(rows),
        "distinct_if_uniform": float(uniform),
        "top_share": float(counts[order].sum() / total),
        "most_returned": [
            {"row": name, "count": int(count)}
            for name, count in zip(_names(source, rows[order]), counts[order], strict=True)
        ],
    }


def _names(source: EmbeddingSource, rows: Ints) -> list[Any]:
    """The ids of ``rows`` when the source has an id column, else the row positions."""
    ids = source.ids(rows) if source.id_column is not None and len(rows) else None
    return list(ids) if ids is not None else [int(r) for r in rows]

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit import geometry
from embaudit.draw import draw_clean_rows, draw_positions
from embaudit.engines import Engine, LocalEngine, PassPlan
from embaudit.index import IndexMeasurement
from embaudit.knn import Block, NeighborList, NeighborSearch
from embaudit.params import (
    GAUGE_DRAWS,
    GAUGE_LEVELS,
    GAUGE_QUERIES,
    PAIRS,
    QUERIES,
    SAMPLE,
    declare,
    validate,
)
from embaudit.sources import EmbeddingSource
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


@dataclass(frozen=True)
class Sampling:
    """Sample sizes. Defaults keep a 1M x 768 audit within seconds; see the README for the
    statistical error they imply."""

    queries: int = declare(QUERIES)  # query rows of the cosine / L2 / dot comparison (EA4xx)
    gauge_queries: int = declare(GAUGE_QUERIES)  # the first queries, searched under each gauge
    gauge_draws: int = declare(GAUGE_DRAWS)  # random gauges per rescaling level
    gauge_levels: tuple[float, ...] = declare(GAUGE_LEVELS)  # s in D = exp(N(0, s^2))
    sample: int = declare(SAMPLE)  # rows for the spectrum, pair cosines and hubness graph
    pairs: int = declare(PAIRS)  # random pairs of sample rows

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "gauge_queries": self.gauge_queries,
            "gauge_draws": self.gauge_draws,
            "gauge_levels": list(self.gauge_levels),
            "sample": self.sample,
            "pairs": self.pairs,
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
        return out


@dataclass(frozen=True)
class Geometry:
    m: int  # sample rows used
    column_std: Floats  # per-dimension standard deviation of the (power-of-two scaled) sample
    rms_coordinate: float  # sqrt(mean ||x||^2 / d) of the same rows
    eigenvalues: Floats
    isoscore: float
    effective_rank: float
    top_share: float
    pair_cosines: Floats
    hubness: geometry.Hubness | None
    hubness_k: int
    rogue_dimensions: list[int]  # the three largest contributions to the expected cosine
    rogue_r2: float  # r^2 of pair cosines with and without them
    cosine_change: dict[float, float]  # mean |cos_D - cos| of the pairs per rescaling level
    reference: Reference


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
    truncation: dict[int, Floats] = field(default_factory=dict)  # M -> per-query overlap@k
    search: NeighborSearch | None = field(default=None, repr=False, compare=False)  # its lists
    index: IndexMeasurement | None = None  # the index of ``--index``, searched (EA701, EA702)


@dataclass(frozen=True)
class Measurements:
    stats: ScanStats
    geometry: Geometry | None
    neighbors: Neighbors | None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def gauge_scales(
    d: int, levels: tuple[float, ...], draws: int, rng: np.random.Generator
) -> list[tuple[float, Floats]]:
    """Random diagonal gauges D = exp(N(0, s^2)), ``draws`` per level s."""
    return [(s, np.exp(rng.normal(0.0, s, size=d))) for s in levels for _ in range(draws)]


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
    dead = dead_dimension_mask(std, coordinate_rms(row_norms(rows), rows.shape[1]), dead_ratio)
    scale = np.zeros(rows.shape[1])
    if not dead.all():
        scale[~dead] = 1.0 / std[~dead]
        scale /= scale.max()
    return scale


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
) -> Measurements:
    """Measure everything the checks read, with ``engine`` (default: in this process).
    ``on_rows`` is called with the rows of each chunk or fragment read; ``dead_ratio`` is
    EA004's threshold, which decides the dimensions the canonical gauge leaves out;
    ``truncate`` the dimension counts M (below d) whose cosine neighbours EA303 compares;
    ``on_geometry`` is called with 1 after each of the GEOMETRY_STEPS stages on the sample."""
    engine = engine or LocalEngine()
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    query_rng, sample_rng, gauge_rng, pair_rng, reference_rng = streams
    n, d = source.n, source.d
    timings: dict[str, float] = {}
    started = time.perf_counter()

    query_rows, queries, _ = draw_clean_rows(source, sampling.queries, query_rng, engine.take)
    timings["queries"] = time.perf_counter() - started
    # Scale-free statistics are computed on rows divided by one power of two (exact), so that
    # squares of values near 1e±30 (float32) or 1e±200 (float64) stay in range.
    pow2_scale = geometry.pow2_scale(row_norms(queries)) if len(queries) else 1.0
    gauges = gauge_scales(d, sampling.gauge_levels, sampling.gauge_draws, gauge_rng)
    search: NeighborSearch | None = None
    # With k >= n - 1 every row is every row's neighbour: nothing to compare, the checks skip.
    if len(query_rows) and k < n - 1:
        gauge_queries = min(sampling.gauge_queries, len(query_rows))
        canonical = canonical_scale(queries * pow2_scale, dead_ratio)
        blocks = [Block("base", len(query_rows))]
        blocks += [Block(f"gauge s={s:g}", gauge_queries, scale) for s, scale in gauges]
        blocks.append(Block("canonical", gauge_queries, canonical))
        blocks += [
            Block(f"truncate {m}", len(query_rows), truncation_scale(d, m)) for m in truncate
        ]
        search = NeighborSearch(queries, query_rows, k, blocks)
    sample_rows = draw_positions(n, sampling.sample + 64, sample_rng)
    plan = PassPlan(search=search, sample=RowCollector(sample_rows))

    mark = time.perf_counter()
    result = engine.run(source, plan, chunk_rows=chunk_rows, on_rows=on_rows)
    stats = result.stats
    timings |= result.timings
    timings["pass"] = time.perf_counter() - mark
    mark = time.perf_counter()
    assert result.sample is not None
    sample = result.sample.collected(sampling.sample, d)
    sample = sample * (geometry.pow2_scale(row_norms(sample)) if len(sample) else 1.0)
    geometry_summary = (
        _geometry(sample, stats, k, gauges, sampling.pairs, (pair_rng, reference_rng), on_geometry)
        if len(sample) >= 2
        else None
    )
    timings["geometry"] = time.perf_counter() - mark
    neighbors = (
        _neighbors(search, gauges, truncate, stats.n_clean)
        if search is not None and k < stats.n_clean - 1
        else None
    )
    return Measurements(stats, geometry_summary, neighbors, timings)


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
) -> Geometry:
    """The statistics of the sample, in GEOMETRY_STEPS stages (``step`` told of each)."""
    pair_rng, reference_rng = rngs
    advance = step or (lambda _: None)
    m, d = sample.shape
    eigenvalues = geometry.covariance_eigenvalues(sample)
    advance(1)
    unit = geometry.unit_rows(sample)
    first, second = geometry.random_pairs(m, min(pair_count, m * (m - 1)), pair_rng)
    cosines = geometry.pair_cosines(unit, first, second)

    rogue, rogue_r2 = _rogue(sample, stats, first, second, cosines)

    change: dict[float, list[float]] = {}
    for s, scale in gauges:
        rescaled = geometry.pair_cosines(geometry.unit_rows(sample * scale), first, second)
        change.setdefault(s, []).append(float(np.mean(np.abs(rescaled - cosines))))
    advance(1)

    hub_k = min(k, m - 1)
    hubness = geometry.hubness_from_neighbors(geometry.cosine_knn_graph(unit, hub_k), m)
    advance(1)
    reference = _reference(m, d, hub_k, reference_rng)
    advance(1)
    return Geometry(
        m=m,
        column_std=sample.std(axis=0),
        rms_coordinate=coordinate_rms(row_norms(sample), d),
        eigenvalues=eigenvalues,
        isoscore=geometry.isoscore(eigenvalues),
        effective_rank=geometry.effective_rank(eigenvalues),
        top_share=_top_share(eigenvalues),
        pair_cosines=cosines,
        hubness=hubness,
        hubness_k=hub_k,
        rogue_dimensions=rogue,
        rogue_r2=rogue_r2,
        cosine_change={s: float(np.mean(v)) for s, v in change.items()},
        reference=reference,
    )


def _rogue(
    sample: Floats, stats: ScanStats, first: Ints, second: Ints, cosines: Floats
) -> tuple[list[int], float]:
    """The three dimensions that contribute most to the expected cosine (from every clean row),
    and the r^2 of the pair cosines with and without them (NaN when too few pairs are left)."""
    d = sample.shape[1]
    cc = geometry.rogue_contributions(stats.unit_sum, stats.unit_sq_sum, stats.n_clean)
    rogue = [int(j) for j in np.argsort(-cc, kind="stable")[: min(3, d)]]
    if d <= len(rogue):
        return rogue, float("nan")
    reduced = sample.copy()
    reduced[:, rogue] = 0.0
    alive = np.abs(reduced).max(axis=1) > 0
    keep = alive[first] & alive[second]
    if keep.sum() < 2:
        return rogue, float("nan")
    reduced_unit = np.zeros_like(reduced)
    reduced_unit[alive] = geometry.unit_rows(reduced[alive])
    without = geometry.pair_cosines(reduced_unit, first[keep], second[keep])
    return rogue, geometry.pearson_r2(cosines[keep], without)


def _reference(m: int, d: int, hub_k: int, rng: np.random.Generator) -> Reference:
    """The geometry statistics of an isotropic Gaussian sample of the same shape."""
    gaussian = geometry.isotropic_sample(m, d, rng)
    eigenvalues = geometry.covariance_eigenvalues(gaussian)
    graph = geometry.cosine_knn_graph(geometry.unit_rows(gaussian), hub_k)
    return Reference(
        m=m,
        d=d,
        isoscore=geometry.isoscore(eigenvalues),
        effective_rank=geometry.effective_rank(eigenvalues),
        top_share=_top_share(eigenvalues),
        hubness=geometry.hubness_from_neighbors(graph, m),
    )


def _top_share(eigenvalues: Floats) -> float:
    total = eigenvalues.sum()
    return float(eigenvalues[0] / total) if total > 0 else 0.0


def _neighbors(
    search: NeighborSearch,
    gauges: list[tuple[float, Floats]],
    truncate: tuple[int, ...],
    n_clean: int,
) -> Neighbors:
    lists: dict[str, NeighborList] = {m: search.list_for(m) for m in ("cosine", "l2", "dot")}
    pairs = [("cosine", "l2"), ("cosine", "dot"), ("l2", "dot")]
    overlap = {(a, b): search.overlap(lists[a], lists[b]) for a, b in pairs}
    top1 = {(a, b): float(np.mean(search.overlap(lists[a], lists[b], at=1) < 1)) for a, b in pairs}
    ladder = sorted({j for j in (1, 5, 10, 50, 100) if j < search.k} | {search.k})
    by_k = {
        (a, b): {j: float(search.overlap(lists[a], lists[b], at=j).mean()) for j in ladder}
        for a, b in pairs
    }
    gauge: dict[float, list[Floats]] = {}
    for b, (s, _) in enumerate(gauges, start=1):
        gauge.setdefault(s, []).append(
            search.overlap(lists["cosine"], search.list_for("cosine", b))
        )
    canonical_block = 1 + len(gauges)
    canonical = search.overlap(lists["cosine"], search.list_for("cosine", canonical_block))
    truncation = {
        m: search.overlap(lists["cosine"], search.list_for("cosine", b))
        for b, m in enumerate(truncate, start=canonical_block + 1)
    }
    scale = search.blocks[canonical_block].scale
    assert scale is not None
    return Neighbors(
        k=min(search.k, max(n_clean - 1, 0)),
        queries=search.blocks[0].n_queries,
        gauge_queries=search.blocks[1].n_queries if len(search.blocks) > 1 else 0,
        query_rows=np.asarray(search.query_rows, dtype=np.int64),
        overlap=overlap,
        top1_differs=top1,
        by_k=by_k,
        gauge=gauge,
        canonical=canonical,
        canonical_scale=scale,
        truncation=truncation,
        search=search,
    )

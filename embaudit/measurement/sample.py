"""The geometry of a sample of clean rows, collected in the pass: its spectrum (EA203), column
spreads (EA205), pair cosines (EA201) and rogue dimensions (EA204), its cosine kNN graph (EA501,
EA502), how much the gauges move its pair cosines (EA301's cosine change), and the same
statistics on an isotropic Gaussian sample of its shape, the reference they are read against."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from embaudit import geometry
from embaudit.array_types import Floats, Ints
from embaudit.estimates import (
    log_scale_spread_standard_error,
    pair_r2_standard_error,
    top_share_standard_error,
)
from embaudit.measurement.graphs import SampleGraph, graph_degrees, sample_graph
from embaudit.sources.base import available_cores
from embaudit.stats import DEAD_RATIO, ScanStats, coordinate_rms, dead_dimension_mask, row_norms


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
    #: The row positions of the graph's nodes, in order (``--rows-out`` names EA501's hubs).
    graph_positions: Ints = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    def with_gauges(self, gauges: list[tuple[float, Floats]]) -> Geometry:
        """The same sample, its cosine changes measured under ``gauges`` (the levels they do
        not draw keep theirs)."""
        return replace(self, cosine_change=self.cosine_change | cosine_change(self, gauges))


def cosine_change(sample: Geometry, gauges: list[tuple[float, Floats]]) -> dict[float, float]:
    """Mean |cos_D - cos| of the sample's pairs per rescaling level, over its draws."""
    first, second = sample.pairs
    if not gauges or not len(first):
        return {s: float("nan") for s, _ in gauges}
    # cos_D(u, v) = sum_i u_i v_i D_i^2 / (|u D| |v D|), from the unit rows (a cosine does not
    # change when a row is scaled): one matrix-vector product per gauge, so that a gauge's
    # change is the same number whatever other gauges are measured with it (a round's).
    unit = geometry.unit_rows(sample.rows)
    squares = [np.ascontiguousarray(scale**2) for _, scale in gauges]
    squared = unit * unit
    gauged_norms = [np.sqrt(squared @ square) for square in squares]  # D > 0: no zero
    products = np.empty((len(gauges), len(first)))  # (gauges, pairs)
    for block in geometry.pair_blocks(len(first)):  # the pairs' rows in the cache
        pair = unit[first[block]] * unit[second[block]]
        for g, square in enumerate(squares):
            products[g, block] = pair @ square
    shift = [
        float(np.abs(row / (norm[first] * norm[second]) - sample.pair_cosines).mean())
        for row, norm in zip(products, gauged_norms, strict=True)
    ]
    change: dict[float, list[float]] = {}
    for (s, _), value in zip(gauges, shift, strict=True):
        change.setdefault(s, []).append(value)
    return {s: float(np.mean(v)) for s, v in change.items()}


#: Stages of the work on the sample after the pass: spectrum, pairs, hubness graph, reference.
GEOMETRY_STEPS = 4


def sample_geometry(
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
        (kept.graph.hubness_k, kept.graph.island_k) if kept is not None else graph_degrees(m, k)
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

        measured = _statistics(
            sample, stats, k, (pair_count, pair_rng), advance, dead_ratio, kept, reference
        )
    return measured.with_gauges(gauges)


def _statistics(
    sample: Floats,
    stats: ScanStats,
    k: int,
    pairs: tuple[int, np.random.Generator],
    advance: Callable[[int], None],
    dead_ratio: float,
    kept: Geometry | None,
    reference: Callable[[], Reference],
) -> Geometry:
    """The geometry of the sample (:func:`sample_geometry`), with the reference ``reference()``
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

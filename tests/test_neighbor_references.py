"""The values that decide EA301, EA302, EA401, EA402 and compare-knn, against float64 brute force.

Each test reproduces the query sample and the gauges the audit drew (same seed, same spawned
streams), computes the exact float64 neighbour lists, and requires the reported overlap of every
query to lie between two references: ties counted only when the float64 scores are equal
(``strict``), and ties counted within float32 rounding (``loose``), as the definition allows.
On the data used here the two references agree almost everywhere, so the bounds are tight; the
means are also compared with an all-rows population value within the reported standard error.

The data have what breaks naive implementations: exact ties (quantized unit vectors, duplicated
rows) and constant columns.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest

from embaudit import audit, compare_knn
from embaudit.knn import Block, NeighborSearch, exact_lists
from embaudit.measurement.gauges import (
    SCALE_ROWS_PER_SAMPLE,
    canonical_queries,
    gauge_scales,
    level_queries,
)
from embaudit.measurement.sampling import Sampling, gauge_corpus
from embaudit.measurement.steps import measure
from embaudit.params import ParameterError
from embaudit.sources import open_source
from tests.exports import encoder_like, lognormal_norms
from tests.test_knn import _search

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: Ties within float32 rounding of a cosine (the definition's "identical scores"): generous
#: against the products' rounding, far below the gaps of the quantized data.
LOOSE = 1e-5
#: Ties in float64: equal up to the rounding of a float64 dot product.
STRICT = 1e-12

SAMPLING = Sampling(queries=200, gauge_queries=80, gauge_draws=3, sample=400, pairs=2000)
K = 10


def quantized_units(n: int, d: int, seed: int) -> Floats:
    """Unit vectors with coordinates in {-1, 0, 1} (before normalizing): few distinct
    directions, so most cosines tie exactly with others; every 7th row is duplicated."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(-1, 2, size=(n, d)).astype(np.float64)
    rows[~rows.any(axis=1), 0] = 1.0
    rows[7::7] = rows[: len(rows[7::7])]
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def with_constant_columns(rows: Floats, columns: tuple[int, ...], value: float = 0.3) -> Floats:
    rows = rows.copy()
    rows[:, list(columns)] = value
    return rows


def scores(x: Floats, query_rows: Ints, metric: str) -> Floats:
    """Exact float64 scores (larger is nearer) of every row for each query, self at -inf; the
    scales of NeighborSearch: cosine, -||q - x||^2 / |q|^2, q.x / |q|^2."""
    q = x[query_rows]
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1)
        unit = x / np.where(norms > 0, norms, 1.0)[:, None]
        out = unit[query_rows] @ unit.T
    else:
        q_norm2 = (q**2).sum(1)[:, None]
        dot = q @ x.T
        out = dot / q_norm2 if metric == "dot" else -(q_norm2 + (x**2).sum(1) - 2 * dot) / q_norm2
    out[np.arange(len(query_rows)), query_rows] = -np.inf
    return out


def top(score: Floats, k: int) -> Ints:
    """Top-k by score, ties by lowest row (as exact_lists)."""
    rows = np.broadcast_to(np.arange(score.shape[1]), score.shape)
    return np.lexsort((rows, -score), axis=1)[:, :k]


def overlap_bounds(
    reference: Floats, other: Floats, k: int, tie_scale: Floats | float = 1.0
) -> tuple[Floats, Floats]:
    """Per query, the overlap@k of ``other``'s top-k against ``reference``'s, with ties counted
    in float64 only (low) and within float32 rounding (high). ``tie_scale`` scales the
    tolerance per (query, row) as the score's magnitude does."""
    other_top = top(other, k)
    kth = np.sort(reference, axis=1)[:, -k]
    got = np.take_along_axis(reference, other_top, axis=1)
    scale = (
        np.take_along_axis(np.broadcast_to(tie_scale, reference.shape), other_top, axis=1)
        if np.ndim(tie_scale)
        else tie_scale
    )
    low = np.minimum((got >= kth[:, None] - STRICT * scale).sum(1), k) / k
    high = np.minimum((got >= kth[:, None] - LOOSE * scale).sum(1), k) / k
    return low, high


def tie_scale(x: Floats, query_rows: Ints, metric: str) -> Floats | float:
    """How a score's rounding grows with r = |x| / |q| (NeighborSearch's scales)."""
    if metric == "cosine":
        return 1.0
    norms = np.linalg.norm(x, axis=1)
    ratio = norms[None, :] / norms[query_rows][:, None]
    return 1 + ratio * ratio if metric == "l2" else np.maximum(ratio, 1.0)


def assert_between(per_query: Floats, low: Floats, high: Floats) -> None:
    assert per_query.shape == low.shape
    outside = np.flatnonzero((per_query < low - 1e-12) | (per_query > high + 1e-12))
    assert not len(outside), (outside[:5], per_query[outside[:5]], low[outside[:5]])


def assert_level_between(
    per_query: Floats, s: float, sampling: Sampling, low: Floats, high: Floats
) -> None:
    """A gauge level's per-query overlaps: the judged level (s = 0.5) has every gauge query,
    the others the first half of them (they give s50 only); each within brute force's."""
    n = level_queries(s, sampling.gauge_levels, len(low))
    assert len(per_query) == n == (len(low) if s == 0.5 else -(-len(low) // 2))
    assert_between(per_query, low[:n], high[:n])


def measured(x: Floats, *, seed: int = 0, sampling: Sampling = SAMPLING, k: int = K):
    neighbors = measure(open_source(x), k=k, seed=seed, sampling=sampling).neighbors
    assert neighbors is not None
    return neighbors


def drawn_gauges(d: int, seed: int, sampling: Sampling) -> list[tuple[float, Floats]]:
    """The gauges measure() draws: level i from the i-th child of the third stream spawned
    from the seed."""
    gauges = []
    for i, s in enumerate(sampling.gauge_levels):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, i)))
        gauges += [(s, np.exp(rng.normal(0.0, s, size=d))) for _ in range(sampling.gauge_draws)]
    return gauges


def test_the_gauges_are_drawn_level_by_level_from_their_own_streams():
    expected = drawn_gauges(24, 5, SAMPLING)
    drawn = gauge_scales(24, SAMPLING.gauge_levels, SAMPLING.gauge_draws, 5)
    assert [s for s, _ in drawn] == [s for s, _ in expected]
    for (_, scale), (_, reference) in zip(drawn, expected, strict=True):
        np.testing.assert_array_equal(scale, reference)


# The tie-aware overlap ----------------------------------------------------------------------


def test_quantized_unit_vectors_break_ties_differently_in_cosine_and_l2_lists():
    """On unit vectors cosine and L2 rank identically, so their overlap is 1 by definition; with
    quantized directions the float32 scores break the exact ties in different orders, so a plain
    set overlap of the two lists is below 1. The tie-aware overlap must still be exactly 1."""
    x = quantized_units(600, 12, seed=1)
    query_rows = np.arange(0, 600, 3)
    search = _search(x, query_rows, k=K, chunk=101)
    cosine, l2, dot = (search.list_for(m) for m in ("cosine", "l2", "dot"))
    plain = np.mean(
        [len(np.intersect1d(a, b)) / K for a, b in zip(cosine.rows, l2.rows, strict=True)]
    )
    assert plain < 0.999  # the lists differ as sets: the data does exercise the ties
    assert np.all(search.overlap(cosine, l2) == 1.0)
    assert np.all(search.overlap(l2, cosine) == 1.0)
    assert np.all(search.overlap(cosine, dot) == 1.0)


def test_ea401_is_exactly_one_on_quantized_unit_vectors():
    report = audit(quantized_units(1500, 12, seed=2), k=K, sampling=SAMPLING, select="EA4")
    assert report.check("EA401").value == 1.0
    assert report.check("EA402").value == 1.0
    assert report.check("EA401").metrics["top1_differs"] == 0.0


def test_overlap_counts_only_ties_as_shared_not_near_misses():
    """A neighbour of the other list that is not a reference neighbour and does not tie with
    the reference's k-th counts as a miss: the tolerance is float32 rounding, not more."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 16)) * rng.lognormal(0.0, 1.0, size=(400, 1))
    query_rows = rng.choice(400, 60, replace=False)
    search = _search(x, query_rows, k=K)
    for a, b in (("cosine", "l2"), ("cosine", "dot"), ("l2", "dot"), ("dot", "cosine")):
        per_query = search.overlap(search.list_for(a), search.list_for(b))
        low, high = overlap_bounds(scores(x, query_rows, a), scores(x, query_rows, b), K)
        assert_between(per_query, low, high)
        assert per_query.mean() < 0.95  # the norms vary: the metrics disagree somewhere


@pytest.mark.parametrize("at", [1, 3, 10])
def test_overlap_at_a_smaller_k_uses_the_first_entries_of_both_lists(at):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 8)) * rng.lognormal(0.0, 0.7, size=(300, 1))
    query_rows = np.arange(0, 300, 5)
    search = _search(x, query_rows, k=K)
    per_query = search.overlap(search.list_for("cosine"), search.list_for("dot"), at=at)
    low, high = overlap_bounds(scores(x, query_rows, "cosine"), scores(x, query_rows, "dot"), at)
    assert_between(per_query, low, high)


def test_overlap_divides_by_the_neighbours_that_exist():
    # 5 rows: each query has 4 other rows, fewer than k = 10; lists of every row agree fully.
    x = np.random.default_rng(5).standard_normal((5, 3))
    search = _search(x, np.arange(5), k=K, chunk=2)
    assert np.all(search.overlap(search.list_for("cosine"), search.list_for("dot")) == 1.0)
    # Unit rows: cosine, L2 and dot agree, and the 4 neighbours count as a full list.
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    search = _search(unit, np.arange(5), k=K, chunk=2)
    assert np.all(search.overlap(search.list_for("l2"), search.list_for("dot")) == 1.0)


def test_gauge_block_overlap_is_judged_by_the_base_cosine():
    """A gauge list is compared with the base cosine list in the base cosine's scores: its
    features carry both, and the overlap must read the reference's column."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((500, 10))
    scale = np.exp(rng.normal(0.0, 1.0, size=10))
    query_rows = rng.choice(500, 50, replace=False)
    blocks = [Block("base", 50), Block("gauge", 30, scale)]
    search = _search(x, query_rows, K, blocks, chunk=64)
    base, gauged = search.list_for("cosine"), search.list_for("cosine", 1)
    per_query = search.overlap(base, gauged)
    assert per_query.shape == (30,)
    low, high = overlap_bounds(
        scores(x, query_rows[:30], "cosine"), scores(x * scale, query_rows[:30], "cosine"), K
    )
    assert_between(per_query, low, high)
    # And the other way round: the gauge list as reference, read in its own column.
    back = search.overlap(gauged, base)
    low, high = overlap_bounds(
        scores(x * scale, query_rows[:30], "cosine"), scores(x, query_rows[:30], "cosine"), K
    )
    assert_between(back, low, high)


# EA401 / EA402 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("unnormalized, constant columns", "encoder"),
        ("quantized, duplicated, log-normal norms", "quantized"),
    ],
)
def test_ea401_and_ea402_per_query_equal_brute_force(name, data):
    x = make(data)
    neighbors = measured(x)
    report = audit(x, k=K, sampling=SAMPLING, select="EA4")
    rows = neighbors.query_rows
    for code, pair in (("EA401", ("cosine", "l2")), ("EA402", ("cosine", "dot"))):
        a, b = pair
        low, high = overlap_bounds(scores(x, rows, a), scores(x, rows, b), K, tie_scale(x, rows, a))
        assert_between(neighbors.overlap[pair], low, high)
        check = report.check(code)
        assert check.value == pytest.approx(neighbors.overlap[pair].mean(), abs=1e-15)
        assert low.mean() <= check.value <= high.mean()
        top1_low, top1_high = overlap_bounds(scores(x, rows, a), scores(x, rows, b), 1)
        assert np.mean(top1_high < 1) <= check.metrics["top1_differs"] <= np.mean(top1_low < 1)


def test_ea401_is_within_its_standard_error_of_the_all_rows_value():
    x = make("encoder")
    report = audit(x, k=K, sampling=SAMPLING, select="EA401")
    check = report.check("EA401")
    every = np.arange(len(x))
    low, high = overlap_bounds(scores(x, every, "cosine"), scores(x, every, "l2"), K)
    standard_error = check.metrics["standard_error"]
    assert 0 < standard_error < 0.05
    # 200 of 1,500 rows: a finite-population sample; 4 standard errors.
    assert low.mean() - 4 * standard_error <= check.value <= high.mean() + 4 * standard_error


def make(kind: str) -> Floats:
    if kind == "encoder":
        # Constant columns set after the norms vary, as a bias added by the last layer.
        rows = lognormal_norms(encoder_like(1500, 24, seed=7), sigma=0.6, seed=7)
        return with_constant_columns(rows, (3, 17))
    units = quantized_units(1500, 10, seed=8)
    return lognormal_norms(units, sigma=0.5, seed=8)


# EA301 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["encoder", "quantized"])
def test_ea301_every_draw_of_every_level_equals_brute_force(data):
    x = make(data)
    seed = 11
    neighbors = measured(x, seed=seed)
    check = audit(x, k=K, seed=seed, sampling=SAMPLING, select="EA301").check("EA301")
    gauges = drawn_gauges(x.shape[1], seed, SAMPLING)
    rows = neighbors.query_rows[: neighbors.gauge_queries]
    assert len(rows) == SAMPLING.gauge_queries
    base = scores(x, rows, "cosine")
    levels = {row["s"]: row for row in check.metrics["levels"]}
    assert sorted(levels) == sorted(SAMPLING.gauge_levels)
    for index, (s, scale) in enumerate(gauges):
        draw = index % SAMPLING.gauge_draws
        low, high = overlap_bounds(base, scores(x * scale, rows, "cosine"), K)
        per_query = neighbors.gauge[s][draw]
        assert_level_between(per_query, s, SAMPLING, low, high)
        assert levels[s]["draws"][draw] == pytest.approx(per_query.mean(), abs=1e-15)
    for row in levels.values():
        assert row["overlap_at_k"] == pytest.approx(np.mean(row["draws"]), abs=1e-15)
    assert check.value == levels[0.5]["overlap_at_k"]
    # Larger rescalings move more neighbours (on average over the draws).
    curve = [levels[s]["overlap_at_k"] for s in sorted(levels)]
    assert curve[0] > curve[-1]


def test_gauges_search_every_row_next_to_the_base_search_and_its_truncations():
    """By default the gauge queries search every row, in their own search of the same pass
    (the base search keeps its base and truncation blocks); each block's overlaps equal brute
    force: the truncation against the full cosine lists, each gauge against the gauge
    queries' own."""
    x = make("encoder")
    seed = 5
    source = open_source(x)
    result = measure(source, k=K, seed=seed, sampling=SAMPLING, truncate=(8,)).neighbors
    assert result is not None and result.gauge_rows_searched is None
    assert [block.name for block in result.search.blocks] == ["base", "truncate 8"]
    gauge_names = [block.name for block in result.gauge_search.blocks]
    assert gauge_names[0] == "base" and len(gauge_names) > 1 + len(SAMPLING.gauge_levels)
    rows = result.query_rows
    base = scores(x, rows, "cosine")
    low, high = overlap_bounds(base, scores(x[:, :8], rows, "cosine"), K)
    assert_between(result.truncation[8], low, high)
    gauge_rows = rows[: result.gauge_queries]
    for index, (s, scale) in enumerate(drawn_gauges(x.shape[1], seed, SAMPLING)):
        low, high = overlap_bounds(
            base[: len(gauge_rows)], scores(x * scale, gauge_rows, "cosine"), K
        )
        assert_level_between(result.gauge[s][index % SAMPLING.gauge_draws], s, SAMPLING, low, high)


def test_ea301_s50_interpolates_in_log_s_between_the_levels_around_one_half():
    x = make("encoder")
    sampling = Sampling(
        queries=200, gauge_queries=80, gauge_draws=2, gauge_levels=(0.25, 1.0, 4.0), sample=400
    )
    check = audit(x, k=K, sampling=sampling, select="EA301").check("EA301")
    overlaps = [row["overlap_at_k"] for row in check.metrics["levels"]]
    s50 = check.metrics["s50"]
    levels = [0.25, 1.0, 4.0]
    crossing = next(i for i in range(2) if overlaps[i] >= 0.5 > overlaps[i + 1])
    o0, o1 = overlaps[crossing], overlaps[crossing + 1]
    t = (o0 - 0.5) / (o0 - o1)
    log_s = np.log(levels[crossing]) + t * (np.log(levels[crossing + 1]) - np.log(levels[crossing]))
    assert s50 == pytest.approx(np.exp(log_s), rel=1e-12)


# EA302 --------------------------------------------------------------------------------------


def canonical_reference(x: Floats, scale_rows: Ints, dead: tuple[int, ...]) -> Floats:
    """Every live column at unit std over the rows the scale is estimated on, the dead ones
    dropped."""
    live = np.setdiff1d(np.arange(x.shape[1]), dead)
    std = x[scale_rows][:, live].std(axis=0)
    standardized = np.zeros_like(x)
    standardized[:, live] = x[:, live] / std
    return standardized


# The gauge rows -----------------------------------------------------------------------------


def test_the_gauge_rows_are_every_row_up_to_their_count_and_a_seeded_draw_beyond():
    assert gauge_corpus(500, 500, seed=0) is None
    assert gauge_corpus(100, 500, seed=0) is None
    drawn = gauge_corpus(1000, 300, seed=4)
    assert drawn is not None and len(np.unique(drawn)) == len(drawn) == 300
    assert (np.diff(drawn) > 0).all() and drawn[0] >= 0 and drawn[-1] < 1000
    np.testing.assert_array_equal(drawn, gauge_corpus(1000, 300, seed=4))
    assert not np.array_equal(drawn, gauge_corpus(1000, 300, seed=5))


@pytest.mark.parametrize("data", ["encoder", "quantized"])
def test_ea301_and_ea302_search_the_gauge_rows_alone_and_equal_brute_force_there(data):
    """With fewer gauge rows than rows, every gauge list and its reference hold drawn rows
    only, and the overlaps are those of brute force on the drawn rows; the base lists of the
    same queries still search every row."""
    x = make(data)
    seed = 11
    sampling = replace(SAMPLING, gauge_rows=len(x) // 3)
    neighbors = measured(x, seed=seed, sampling=sampling)
    drawn = gauge_corpus(len(x), sampling.gauge_rows, seed)
    assert drawn is not None and neighbors.gauge_rows_searched == len(drawn) == len(x) // 3
    assert neighbors.gauge_search is not None and neighbors.search is not None
    found = np.concatenate([held.rows[held.rows >= 0] for held in neighbors.gauge_search.lists])
    assert len(found) and np.isin(found, drawn).all()
    rows = neighbors.query_rows[: neighbors.gauge_queries]
    assert (~np.isin(neighbors.search.list_for("cosine").rows[: len(rows)], drawn)).any()
    others = np.setdiff1d(np.arange(len(x)), drawn)

    def on_drawn(score: Floats) -> Floats:
        score[:, others] = -np.inf
        return score

    base = on_drawn(scores(x, rows, "cosine"))
    for index, (s, scale) in enumerate(drawn_gauges(x.shape[1], seed, sampling)):
        low, high = overlap_bounds(base, on_drawn(scores(x * scale, rows, "cosine")), K)
        assert_level_between(
            neighbors.gauge[s][index % sampling.gauge_draws], s, sampling, low, high
        )
    dead = tuple(np.flatnonzero(neighbors.canonical_scale == 0).tolist())
    standardized = canonical_reference(x, neighbors.canonical_rows, dead)
    rows = neighbors.query_rows[: len(neighbors.canonical)]  # twice the gauge queries
    base = on_drawn(scores(x, rows, "cosine"))
    low, high = overlap_bounds(base, on_drawn(scores(standardized, rows, "cosine")), K)
    assert_between(neighbors.canonical, low, high)


def test_the_gauge_rows_count_the_clean_rows_drawn_and_a_round_searches_them_again():
    x = make("encoder")
    seed = 11
    drawn = gauge_corpus(len(x), 600, seed)  # positions: they do not depend on the data
    assert drawn is not None
    x[drawn[:4]] = np.nan  # drawn, but never searched nor counted
    clean = drawn[4:]
    source, sampling = open_source(x), replace(SAMPLING, gauge_rows=600)
    first = measure(source, k=K, seed=seed, sampling=sampling)
    assert first.neighbors is not None and first.neighbors.gauge_rows_searched == len(clean) == 596
    # A round for the gauges alone searches nothing but the same rows.
    grown = replace(sampling, gauge_queries=160, gauge_draws=6)
    again = measure(source, k=K, seed=seed, sampling=grown, parts={"gauges"}, previous=first)
    assert again.neighbors is not None
    assert again.neighbors.search is first.neighbors.search  # no base list searched again
    assert again.neighbors.gauge_search is not None
    found = np.concatenate(
        [held.rows[held.rows >= 0] for held in again.neighbors.gauge_search.lists]
    )
    assert np.isin(found, clean).all() and again.neighbors.gauge_rows_searched == len(clean)
    assert len(again.neighbors.gauge[0.5]) == 6


def test_gauge_rows_must_exceed_k_plus_one():
    x = make("encoder")
    with pytest.raises(ParameterError, match=r"gauge_rows must be larger than k \+ 1 = 11"):
        audit(x, k=10, sampling=replace(SAMPLING, gauge_rows=11), select="EA301")
    check = audit(x, k=10, sampling=replace(SAMPLING, gauge_rows=12), select="EA301")
    assert check.check("EA301").metrics["rows"] == 12


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ea302_leaves_constant_columns_out_and_equals_brute_force(dtype):
    """A constant float64 column has a computed std of rounding noise (about 1e-17 of its
    value); dividing by it would make that column decide every cosine. The canonical gauge
    drops it, and the overlap equals brute force on the standardized live columns."""
    dead = (3, 17)
    x = make("encoder").astype(dtype)
    assert np.all(x[:, 3] == x[0, 3])
    neighbors = measured(x)
    check = audit(x, k=K, sampling=SAMPLING, select="EA302").check("EA302")
    assert check.metrics["dead_dimensions"] == list(dead)
    assert np.flatnonzero(neighbors.canonical_scale == 0).tolist() == list(dead)
    wide = x.astype(np.float64)
    gauge_rows = neighbors.query_rows[: len(neighbors.canonical)]
    assert len(gauge_rows) == canonical_queries(SAMPLING.gauge_queries)
    standardized = canonical_reference(wide, neighbors.canonical_rows, dead)
    low, high = overlap_bounds(
        scores(wide, gauge_rows, "cosine"), scores(standardized, gauge_rows, "cosine"), K
    )
    assert_between(neighbors.canonical, low, high)
    assert check.value == pytest.approx(neighbors.canonical.mean(), abs=1e-15)


def test_ea302_estimates_its_scale_on_four_times_the_sample_and_jitters_it_unless_exact():
    """The canonical gauge's rows: SCALE_ROWS_PER_SAMPLE times ``sample`` distinct clean rows,
    with the jitter of its estimation error; every row (and no jitter) once that reaches n."""
    x = make("encoder")
    assert SCALE_ROWS_PER_SAMPLE == 4
    for sample, rows, draws in ((100, 400, 3), (300, 1200, 3), (375, 1500, 0), (400, 1500, 0)):
        sampling = Sampling(queries=200, gauge_queries=40, sample=sample, pairs=500)
        neighbors = measured(x, sampling=sampling)
        assert len(np.unique(neighbors.canonical_rows)) == len(neighbors.canonical_rows) == rows
        assert len(neighbors.canonical_jitter) == draws
        wide = x.astype(np.float64)
        std = wide[neighbors.canonical_rows].std(axis=0)
        live = neighbors.canonical_scale > 0
        ratio = neighbors.canonical_scale[live] * std[live]  # unit std up to one factor
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)


def test_ea302_of_a_rescaled_export_is_that_of_the_export():
    """Standardizing is gauge-invariant: X·D and X have the same canonical neighbours, so the
    overlap of X·D with them differs from X's by exactly what D moved."""
    x = make("encoder")
    scale = np.exp(np.random.default_rng(12).normal(0.0, 1.0, size=x.shape[1]))
    neighbors = measured(x * scale)
    rows = neighbors.query_rows[: len(neighbors.canonical)]
    standardized = canonical_reference(x, neighbors.canonical_rows, (3, 17))
    low, high = overlap_bounds(
        scores(x * scale, rows, "cosine"), scores(standardized, rows, "cosine"), K
    )
    assert_between(neighbors.canonical, low, high)


# compare-knn --------------------------------------------------------------------------------


def test_compare_knn_metrics_mode_equals_brute_force_at_every_k():
    x = make("quantized")
    report = compare_knn(x, k=K, queries=150, seed=3)
    comparison = report.comparison
    rng = np.random.default_rng(np.random.SeedSequence(3).spawn(1)[0])
    # The same draw compare_metrics makes: the queries, in order.
    from embaudit.draw import draw_clean_rows
    from embaudit.engines import LocalEngine

    rows, _, _ = draw_clean_rows(open_source(x), 150, rng, LocalEngine().take)
    assert comparison.queries == len(rows) == 150
    for pair in comparison.pairs:
        for j, value in pair.by_k.items():
            low, high = overlap_bounds(
                scores(x, rows, pair.a), scores(x, rows, pair.b), j, tie_scale(x, rows, pair.a)
            )
            assert low.mean() - 1e-12 <= value <= high.mean() + 1e-12, (pair.a, pair.b, j)
        low, high = overlap_bounds(scores(x, rows, pair.a), scores(x, rows, pair.b), K)
        assert_between(pair.per_query, low, high)
        top1_low, top1_high = overlap_bounds(scores(x, rows, pair.a), scores(x, rows, pair.b), 1)
        assert np.mean(top1_high < 1) <= pair.top1_differs <= np.mean(top1_low < 1)


def test_compare_knn_files_mode_equals_brute_force_set_overlap():
    """Two exports of the same items: the neighbour lists are exact, and their overlap is the
    plain set overlap of the two brute-force lists (item ids, not scores, are compared)."""
    rng = np.random.default_rng(13)
    old = rng.standard_normal((800, 16))
    new = old + 0.6 * rng.standard_normal(old.shape)
    new[:, 5] = 0.25  # a constant column in the new export
    report = compare_knn(old, new, k=K, queries=120, seed=4)
    comparison = report.comparison
    query_rows = np.asarray(comparison.query_ids)
    longest = comparison.ladder[-1]
    old_top = exact_lists(old, query_rows, longest, "cosine")[0]
    new_top = exact_lists(new, query_rows, longest, "cosine")[0]
    for j in comparison.ladder:
        expected = [
            len(np.intersect1d(a[:j], b[:j])) / j for a, b in zip(old_top, new_top, strict=True)
        ]
        assert comparison.by_k[j] == pytest.approx(np.mean(expected), abs=1e-15)
        if j == K:
            np.testing.assert_array_equal(comparison.per_query, expected)
    assert 0.1 < comparison.overlap_at_k < 0.9


def test_compare_knn_files_mode_counts_duplicated_rows_by_item():
    # Exact duplicates in both exports: the lists hold items, and identical exports agree fully.
    x = quantized_units(400, 8, seed=14)
    report = compare_knn(x, x.copy(), k=K, queries=100, seed=5)
    assert report.comparison.overlap_at_k == 1.0
    assert all(value == 1.0 for value in report.comparison.by_k.values())


def test_the_search_lists_equal_brute_force_on_quantized_data_up_to_ties():
    """The lists themselves: every member is a brute-force neighbour or ties with the k-th."""
    x = make("quantized")
    query_rows = np.arange(0, len(x), 9)
    search = NeighborSearch(x[query_rows], query_rows, K, [Block("base", len(query_rows))])
    from tests.test_knn import clean_rows

    for start in range(0, len(x), 333):
        search.add(clean_rows(x[start : start + 333], start))
    for metric in ("cosine", "l2", "dot"):
        exact = scores(x, query_rows, metric)
        kth = np.sort(exact, axis=1)[:, -K]
        found = search.list_for(metric).rows
        got = np.take_along_axis(exact, found, axis=1)
        scale = np.take_along_axis(
            np.broadcast_to(tie_scale(x, query_rows, metric), exact.shape), found, axis=1
        )
        assert np.all(got >= kth[:, None] - LOOSE * scale), metric


# The tolerance of the overlap, on hand-built lists -------------------------------------------


def one_query_search(d: int, query_norm: float, k: int = 2) -> NeighborSearch:
    """A search whose single query (row 0 of a database we never stream) has norm query_norm."""
    query = np.zeros((1, d))
    query[0, 0] = query_norm
    return NeighborSearch(query, np.array([99]), k, [Block("base", 1)])


def hand_list(metric: str, rows: list[int], cosines: list[float], norms: list[float]):
    from embaudit.knn import NeighborList

    features = np.stack([np.array(cosines), np.array(norms)], axis=-1)[None]
    return NeighborList(metric, 0, np.array([rows]), np.zeros((1, len(rows))), features)


def with_scores(search: NeighborSearch, neighbor_list):
    """Fill a hand-built list's scores from its features, as the search stores them."""
    query = np.zeros(neighbor_list.rows.shape, dtype=np.int64)
    neighbor_list.scores[:] = search._score(
        neighbor_list.metric, neighbor_list.block, neighbor_list.features, query
    )
    return neighbor_list


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
@pytest.mark.parametrize("ratio", [0.1, 1.0, 10.0])
def test_a_neighbour_within_the_documented_tolerance_of_the_kth_is_shared(metric, ratio):
    """The tie tolerance is TIE_ULPS * sqrt(d) * 2^-24 on the cosine scale, times the score's own
    scale for L2 (1 + r^2) and dot (r), r = |x| / |q|. A row of the other list whose reference
    score is 0.9 tolerances below the reference's k-th is shared; 1.1 tolerances below, not."""
    from embaudit.knn import TIE_ULPS

    d, query_norm = 64, 2.0
    search = one_query_search(d, query_norm)
    norm = ratio * query_norm
    unit = TIE_ULPS * np.sqrt(d) * 2.0**-24
    scale = {"cosine": 1.0, "l2": 1 + ratio * ratio, "dot": ratio}[metric]
    reference = with_scores(search, hand_list(metric, [0, 1], [0.9, 0.5], [norm, norm]))
    kth = reference.scores[0, -1]
    for factor, shared in ((0.9, True), (1.1, False)):
        target = kth - factor * unit * scale
        # The cosine that gives this reference score at norm ratio r (scores are linear in it).
        if metric == "cosine":
            cosine = target
        elif metric == "dot":
            cosine = target / ratio
        else:
            cosine = (target + 1 + ratio * ratio) / (2 * ratio)
        other = hand_list("cosine", [0, 2], [0.95, cosine], [norm, norm])
        got = search.overlap(reference, other)
        assert got.tolist() == [1.0 if shared else 0.5], (factor, got)


def test_a_neighbour_at_row_zero_counts_like_any_other():
    search = one_query_search(8, 1.0)
    reference = with_scores(search, hand_list("dot", [0, 1], [0.9, 0.5], [1.0, 1.0]))
    other = hand_list("dot", [0, 2], [0.9, 0.1], [1.0, 1.0])
    assert search.overlap(reference, other).tolist() == [0.5]
    assert search.overlap(reference, other, at=1).tolist() == [1.0]


def test_a_reference_with_missing_neighbours_divides_by_those_it_has():
    search = one_query_search(8, 1.0, k=3)
    reference = with_scores(search, hand_list("cosine", [4, 1, -1], [0.9, 0.5, np.nan], [1, 1, 1]))
    reference.scores[0, -1] = -np.inf
    agree = hand_list("cosine", [1, 4, -1], [0.5, 0.9, np.nan], [1, 1, 1])
    assert search.overlap(reference, agree).tolist() == [1.0]
    half = hand_list("cosine", [4, 7, -1], [0.9, 0.2, np.nan], [1, 1, 1])
    assert search.overlap(reference, half).tolist() == [0.5]
    one = one_query_search(8, 1.0, k=1)
    lone = with_scores(one, hand_list("cosine", [3], [0.9], [1.0]))
    assert one.overlap(lone, hand_list("cosine", [3], [0.9], [1.0])).tolist() == [1.0]
    assert one.overlap(lone, hand_list("cosine", [5], [0.4], [1.0])).tolist() == [0.0]


def test_a_neighbour_exactly_one_tolerance_below_the_kth_reaches_it():
    # d = 64: the tolerance is 8 * 8 * 2^-24 = 2^-18 exactly, and 0.5 - 2^-18 is a float.
    search = one_query_search(64, 1.0)
    assert search.tie_tolerance == 2.0**-18
    reference = with_scores(search, hand_list("cosine", [0, 1], [0.9, 0.5], [1.0, 1.0]))
    edge = hand_list("cosine", [0, 2], [0.9, 0.5 - 2.0**-18], [1.0, 1.0])
    assert search.overlap(reference, edge).tolist() == [1.0]
    beyond = hand_list("cosine", [0, 2], [0.9, np.nextafter(0.5 - 2.0**-18, 0.0)], [1.0, 1.0])
    assert search.overlap(reference, beyond).tolist() == [0.5]

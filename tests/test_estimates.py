"""Standard errors that cover every source of sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embaudit.estimates import (
    Z95,
    bounded_mean_standard_error,
    cluster_share_standard_error,
    combined_standard_error,
    crossed_error_from,
    crossed_standard_error,
    log_scale_spread_standard_error,
    mean_standard_error,
    pair_r2_standard_error,
    robin_hood_jackknife,
    t_factor,
    top_share_standard_error,
)
from embaudit.geometry import (
    cosine_knn_graph,
    covariance_spectrum,
    hubness_from_neighbors,
    unit_rows,
)
from embaudit.measurement.gauges import ColumnSpread, canonical_scale, scale_jitter
from embaudit.stats import coordinate_rms, row_norms


def _tables(rng, count, draws, queries, sd_draw, sd_query, sd_residual):
    """Overlap tables of the crossed random-effects model: mean + draw + query + residual."""
    return (
        0.7
        + sd_draw * rng.standard_normal((count, draws, 1))
        + sd_query * rng.standard_normal((count, 1, queries))
        + sd_residual * rng.standard_normal((count, draws, queries))
    )


@pytest.mark.parametrize(
    ("sd_draw", "sd_query", "sd_residual"), [(0.05, 0.2, 0.1), (0.0, 0.2, 0.1), (0.1, 0.02, 0.05)]
)
def test_the_crossed_variance_is_unbiased_for_the_variance_of_the_mean(
    sd_draw, sd_query, sd_residual
):
    rng = np.random.default_rng(0)
    draws, queries = 3, 50
    tables = _tables(rng, 4000, draws, queries, sd_draw, sd_query, sd_residual)
    exact = sd_draw**2 / draws + sd_query**2 / queries + sd_residual**2 / (draws * queries)
    errors = np.array([crossed_standard_error(t) for t in tables])
    # Never narrower than the unbiased variance, which the t factor only widens.
    assert np.mean(errors**2) >= exact * 0.9
    means = tables.mean(axis=(1, 2))
    covered = np.mean(np.abs(means - 0.7) <= 2 * errors)
    assert covered >= 0.93
    # The spread of the means over repetitions is the exact one: the model is right.
    assert np.var(tables.mean(axis=(1, 2))) == pytest.approx(exact, rel=0.1)


def test_the_queries_error_alone_misses_the_draws():
    # What EA301 reported before: the spread of the draw means only, or of the queries only.
    rng = np.random.default_rng(1)
    tables = _tables(rng, 2000, 3, 50, 0.08, 0.2, 0.1)
    spread = math.sqrt(np.var(tables.mean(axis=(1, 2))))
    queries_only = np.mean([mean_standard_error(t.mean(axis=0)) for t in tables])
    crossed = np.mean([crossed_standard_error(t) for t in tables])
    assert queries_only < 0.75 * spread
    assert crossed >= 0.9 * spread


@pytest.mark.parametrize(
    ("sd_draw", "sd_query", "draws", "queries"),
    [(0.09, 0.05, 3, 50), (0.09, 0.05, 12, 50), (0.0, 0.2, 6, 50), (0.02, 0.3, 6, 50)],
)
def test_the_side_to_double_is_the_one_whose_doubling_shrinks_the_error_most(
    sd_draw, sd_query, draws, queries
):
    """Against the model's exact variance of the mean at 2D and at 2Q: the side chosen on most
    tables is the one that leaves the smaller variance (the t factor aside, which only favours
    more draws when there are few), in either direction."""
    residual = 0.1
    exact = {
        "draws": sd_draw**2 / (2 * draws) + sd_query**2 / queries,
        "queries": sd_draw**2 / draws + sd_query**2 / (2 * queries),
    }
    better = min(exact, key=exact.get)
    tables = _tables(np.random.default_rng(7), 400, draws, queries, sd_draw, sd_query, residual)
    chosen = [crossed_error_from(t) for t in tables]
    assert np.mean([side == better for side in chosen]) >= 0.75, (better, exact)
    assert crossed_error_from(tables[0][:1]) is None  # one draw: no draws' part to estimate


def test_edge_cases():
    assert mean_standard_error([0.5]) is None
    assert crossed_standard_error(np.ones((3, 1))) is None
    one_draw = np.array([[0.1, 0.5, 0.9]])
    assert crossed_standard_error(one_draw) == pytest.approx(mean_standard_error(one_draw[0]))
    assert crossed_standard_error(np.full((3, 4), 0.5)) == 0.0


def test_the_t_factor_follows_the_table_and_tends_to_one():
    assert t_factor(2) == pytest.approx(4.303 / 1.959964)
    assert t_factor(10) == pytest.approx(2.228 / 1.959964)
    assert 2.228 / 1.959964 > t_factor(11) > 2.179 / 1.959964
    assert t_factor(1e9) == pytest.approx(1.0, abs=1e-6)
    assert t_factor(math.inf) == 1.0


# Errors of the sample statistics (EA203, EA501, EA502) and of EA302's scale --------------------


def test_the_top_share_error_is_the_spread_of_the_share_over_samples():
    """Rows of a Gaussian whose top eigenvalue (4) stands apart: over repeated samples the
    share's spread equals the mean reported error, and ±2 errors cover the population share."""
    rng = np.random.default_rng(3)
    d, m = 12, 800
    scales = np.sqrt(np.r_[4.0, np.linspace(1.5, 0.5, d - 1)])
    population = 4.0 / np.sum(scales**2)
    shares, errors = [], []
    for _ in range(400):
        rows = rng.standard_normal((m, d)) * scales
        values, top = covariance_spectrum(rows)
        shares.append(values[0] / values.sum())
        errors.append(top_share_standard_error(rows, top))
    shares, errors = np.array(shares), np.array(errors)
    assert np.mean(errors) == pytest.approx(np.std(shares), rel=0.1)
    assert np.mean(np.abs(shares - population) <= 2 * errors) >= 0.9


def test_the_top_share_error_needs_rows_and_variance():
    assert top_share_standard_error(np.ones((2, 3)), np.eye(3)[0]) is None
    assert top_share_standard_error(np.ones((10, 3)), np.eye(3)[0]) is None


def _robin_hood(unit: np.ndarray, k: int) -> float:
    graph = cosine_knn_graph(unit, k)
    return hubness_from_neighbors(graph, len(unit)).robin_hood


def test_the_robin_hood_jackknife_equals_the_graphs_rebuilt_without_each_point():
    """The O(k) update per left-out point against the jackknife of graphs rebuilt from scratch
    on the m - 1 other points (no ties: Gaussian directions)."""
    rng = np.random.default_rng(5)
    unit = unit_rows(rng.standard_normal((70, 6)))
    k, m = 4, 70
    left_out = np.array([_robin_hood(np.delete(unit, i, axis=0), k) for i in range(m)])
    expected = math.sqrt((m - 1) / m * np.sum((left_out - left_out.mean()) ** 2))
    extended = cosine_knn_graph(unit, k, following=True)
    assert extended.shape == (m, k + 1)
    assert robin_hood_jackknife(extended, k) == pytest.approx(expected, rel=1e-12)


def test_the_robin_hood_jackknife_needs_the_next_neighbour():
    unit = unit_rows(np.random.default_rng(0).standard_normal((20, 4)))
    assert robin_hood_jackknife(cosine_knn_graph(unit, 3), 3) is None
    assert cosine_knn_graph(unit[:4], 3, following=True).shape == (4, 3)  # no (k + 1)-th


def test_the_cluster_error_is_the_ratio_estimators():
    """Clusters of sizes 2, 3, 1, 4 of which the first two count: p = 5/10, totals y = 2, 3, 0,
    0, and Var = 4/3 * ((2 - 1)^2 + (3 - 1.5)^2 + (0 - .5)^2 + (0 - 2)^2) / 100."""
    labels = np.array([0, 0, 1, 1, 1, 2, 3, 3, 3, 3])
    counted = np.isin(labels, [0, 1])
    expected = math.sqrt(4 / 3 * (1 + 2.25 + 0.25 + 4) / 100)
    assert cluster_share_standard_error(labels, counted) == pytest.approx(expected, rel=1e-12)
    # Rows that count one by one: the binomial error of the share, with C / (C - 1).
    single = np.arange(10)
    flags = np.arange(10) < 3
    binomial = math.sqrt(10 / 9 * 0.3 * 0.7 / 10)
    assert cluster_share_standard_error(single, flags) == pytest.approx(binomial, rel=1e-12)
    assert cluster_share_standard_error(np.zeros(5), np.ones(5, bool)) is None


def test_combined_errors_add_in_quadrature_and_widen_with_few_degrees_of_freedom():
    assert combined_standard_error((0.3, 10**9), (0.4, 10**9)) == pytest.approx(0.5, rel=1e-6)
    assert combined_standard_error((0.3, 10**9), None) == pytest.approx(0.3, rel=1e-6)
    # One part on 3 degrees of freedom dominates: its t factor.
    assert combined_standard_error((1e-6, 10**9), (0.4, 3)) == pytest.approx(
        0.4 * t_factor(3), rel=1e-6
    )
    assert combined_standard_error(None) == 0.0


@pytest.mark.parametrize(
    ("dtype", "magnitude"), [(np.float32, 1.0), (np.float32, 1e30), (np.float64, 1e200)]
)
def test_the_column_spread_of_stored_rows_is_the_float64_moments_of_those_rows(dtype, magnitude):
    # 3,000 rows of 40 and of 700 columns (blocks of 2 MiB: 374 rows at d = 700, so several),
    # a constant column, at float32's top magnitudes and at float64 values whose fourth powers
    # leave its range: the moments of the rows widened to float64 at once, up to one common
    # factor (the rows are scaled into range by a power of two; every statistic read from them
    # is scale-free). Rows of zeros among them do not move that factor.
    rng = np.random.default_rng(9)
    for d in (40, 700):
        rows = rng.standard_normal((3000, d)) * np.exp(rng.normal(0, 1, d))
        rows[:, 3] = 0.7
        rows = (rows * magnitude).astype(dtype)
        spread = ColumnSpread.of(rows)
        wide = rows.astype(np.float64) / magnitude
        deviations = wide - wide.mean(axis=0)
        live = np.arange(d) != 3
        factor = spread.m2[live] / np.mean(deviations**2, axis=0)[live]
        np.testing.assert_allclose(factor, factor[0], rtol=1e-9)
        np.testing.assert_allclose(
            spread.m4[live], np.mean(deviations**4, axis=0)[live] * factor[0] ** 2, rtol=1e-9
        )
        assert spread.m2[3] <= 1e-28 * spread.m2.max()  # the constant column's rounding alone
        rms = coordinate_rms(row_norms(wide), d) * math.sqrt(factor[0])
        assert spread.rms_coordinate == pytest.approx(rms, rel=1e-12)
        reference = np.zeros(d)  # the constant column is dead: EA004's rule
        reference[live] = 1 / wide.std(axis=0)[live]
        np.testing.assert_allclose(canonical_scale(rows), reference / reference.max(), rtol=1e-9)
        zeros = ColumnSpread.of(np.concatenate([rows, np.zeros((3100, d), dtype)]))
        assert zeros.rms_coordinate == pytest.approx(rms * math.sqrt(3000 / 6100), rel=1e-12)


def test_the_scale_jitter_has_the_delta_method_spread():
    """Gaussian columns: var(log std) = (3 - 1) / (4 m) = 1 / (2 m); a dead column stays 0."""
    rng = np.random.default_rng(8)
    m, d = 500, 4000
    rows = rng.standard_normal((m, d))
    scale = np.ones(d)
    scale[7] = 0.0
    (jittered,) = scale_jitter(rows, scale, rng)
    assert jittered[7] == 0.0
    logs = np.log(np.delete(jittered, 7))
    assert np.std(logs) == pytest.approx(math.sqrt(1 / (2 * m)), rel=0.05)
    assert jittered.max() == 1.0


def test_the_log_scale_spread_error_is_its_spread_over_samples():
    """Columns of Gaussian rows with log-scales spread by 0.4: over repeated samples the spread's
    own spread equals the mean reported error."""
    rng = np.random.default_rng(4)
    m, d = 600, 30
    scales = np.exp(np.random.default_rng(1).normal(0.0, 0.4, d))
    spreads, errors = [], []
    for _ in range(400):
        rows = rng.standard_normal((m, d)) * scales
        spreads.append(np.log(rows.std(axis=0)).std())
        errors.append(log_scale_spread_standard_error(rows))
    assert np.mean(errors) == pytest.approx(np.std(spreads), rel=0.1)
    assert log_scale_spread_standard_error(np.ones((10, 3))) is None


def test_every_check_says_whether_its_value_is_exact_or_sampled():
    """explain says 'no standard error' exactly for the checks computed from every row, and
    the sampled checks that are measured again report no such thing."""
    from embaudit.checks import REGISTRY

    for code, check in REGISTRY.items():
        text = check.explain()
        assert ("carries no standard error" in text) == check.exact, code
        assert not (check.exact and check.samples), code
    exact = {code for code, check in REGISTRY.items() if check.exact}
    assert {"EA001", "EA101", "EA201", "EA202"} <= exact
    assert not exact & {"EA203", "EA205", "EA301", "EA302", "EA401", "EA501", "EA502", "EA503"}


def test_the_pair_r2_error_of_independent_pairs_is_the_normal_closed_form():
    """Pairs with no row in common, bivariate normal with correlation rho: the delta method's
    sd of r^2 is 2 |rho| (1 - rho^2) / sqrt(P)."""
    rng = np.random.default_rng(0)
    pairs, rho = 20_000, 0.6
    z = rng.standard_normal((pairs, 2))
    a, b = z[:, 0], rho * z[:, 0] + math.sqrt(1 - rho**2) * z[:, 1]
    first = np.arange(0, 2 * pairs, 2)
    error = pair_r2_standard_error(a, b, first, first + 1)
    assert error == pytest.approx(2 * rho * (1 - rho**2) / math.sqrt(pairs), rel=0.05)
    # No two pairs share a row: the pairs-only error (rows not sampled) is the same.
    alone = pair_r2_standard_error(a, b, first, first + 1, rows_sampled=False)
    assert alone == pytest.approx(error, rel=1e-12)
    assert pair_r2_standard_error(a, np.ones(pairs), first, first + 1) is None
    assert pair_r2_standard_error(a[:2], b[:2], first[:2], first[:2] + 1) is None


def test_the_pair_r2_error_covers_the_sample_rows_the_pairs_share():
    """EA204's r^2: random pairs of a 600-row sample (each row in about 13 pairs). Over repeated
    samples the r^2's spread equals the mean reported error, and the error of pairs taken as
    independent would understate it."""
    rng = np.random.default_rng(5)
    m, d, pairs = 600, 8, 4000
    scales = np.exp(np.random.default_rng(1).normal(0.0, 1.0, d))
    rogue = np.argsort(-scales)[:2]
    values, errors, independent = [], [], []
    for _ in range(300):
        x = rng.standard_normal((m, d)) * scales + 0.5
        first = rng.integers(m, size=pairs)
        second = (first + rng.integers(1, m, size=pairs)) % m
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        reduced = x.copy()
        reduced[:, rogue] = 0.0
        reduced /= np.linalg.norm(reduced, axis=1, keepdims=True)
        a = np.einsum("ij,ij->i", unit[first], unit[second])
        b = np.einsum("ij,ij->i", reduced[first], reduced[second])
        values.append(np.corrcoef(a, b)[0, 1] ** 2)
        errors.append(pair_r2_standard_error(a, b, first, second))
        independent.append(pair_r2_standard_error(a, b, np.arange(pairs), np.arange(pairs) + pairs))
    assert np.mean(errors) == pytest.approx(np.std(values), rel=0.1)
    assert np.mean(independent) < 0.8 * np.std(values)


def test_the_bounded_mean_error_of_0_1_draws_is_agresti_coull():
    x = np.array([1.0] * 37 + [0.0] * 3)
    n_tilde = 40 + Z95**2
    p_tilde = (37 + Z95**2 / 2) / n_tilde
    expected = math.sqrt(p_tilde * (1 - p_tilde) / n_tilde)
    assert bounded_mean_standard_error(x) == pytest.approx(expected, rel=1e-12)
    assert bounded_mean_standard_error(np.ones(1)) is None


def test_the_bounded_mean_error_covers_a_recall_near_one():
    """A recall of 0.9992 over 3,000 queries, its misses in 8 of them: 500 queries drawn see 1
    or 2 of those (often none). The plain error, 0 when none is seen, covers the population's
    mean in about three draws in four; the bounded one in at least nine in ten. In the middle
    of the range the two are close."""
    rng = np.random.default_rng(0)
    population = np.ones(3000)
    population[rng.choice(3000, 8, replace=False)] = rng.choice([0.9, 0.8, 0.7, 0.6], 8)
    mu = population.mean()
    covered = {bounded_mean_standard_error: 0, mean_standard_error: 0}
    for _ in range(1000):
        x = population[rng.choice(3000, 500, replace=False)]
        for error in covered:
            covered[error] += abs(x.mean() - mu) <= 2 * error(x)
    assert covered[bounded_mean_standard_error] >= 900
    assert covered[mean_standard_error] < 850
    middle = np.clip(rng.normal(0.9, 0.1, 500), 0, 1)
    ratio = bounded_mean_standard_error(middle) / mean_standard_error(middle)
    assert 1.0 < ratio < 1.25

"""Standard errors that cover every source of sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embaudit.estimates import crossed_standard_error, mean_standard_error, t_factor


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

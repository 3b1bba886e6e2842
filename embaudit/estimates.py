"""Standard errors of the values estimated from samples (queries, gauge draws).

A value averaged over sampled queries varies with the queries drawn; a value averaged over
queries *and* random gauge draws varies with both. The errors here account for every source of
sampling that enters the mean, so that ±2 standard errors cover the value an exhaustive
computation would give (the coverage study in benchmarks/coverage.py measures it).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]


def mean_standard_error(values: npt.ArrayLike) -> float | None:
    """Standard error of the mean of independent draws (the queries); None below two."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return None
    return float(x.std(ddof=1) / math.sqrt(len(x)))


def crossed_standard_error(table: npt.ArrayLike) -> float | None:
    """Standard error of the grand mean of a (draws, queries) table in which both the draws
    (random gauges) and the queries (random rows) are sampled: the two-way random-effects
    variance of the mean, σ²_draw/D + σ²_query/Q + σ²_residual/(D·Q), estimated from the mean
    squares as (MS_draw + MS_query − MS_residual) / (D·Q) (Searle, Casella & McCulloch 1992,
    'Variance Components', §4), never below MS_residual / (D·Q). With one draw it is the
    queries' error alone (the draw's own variation cannot be estimated: say so where shown)."""
    x = np.asarray(table, dtype=np.float64)
    draws, queries = x.shape
    if queries < 2:
        return None
    if draws < 2:
        return mean_standard_error(x[0])
    grand = x.mean()
    draw_means, query_means = x.mean(axis=1), x.mean(axis=0)
    ms_draw = queries * float(((draw_means - grand) ** 2).sum()) / (draws - 1)
    ms_query = draws * float(((query_means - grand) ** 2).sum()) / (queries - 1)
    residual = x - draw_means[:, None] - query_means[None, :] + grand
    ms_residual = float((residual**2).sum()) / ((draws - 1) * (queries - 1))
    variance = max(ms_draw + ms_query - ms_residual, ms_residual) / (draws * queries)
    return float(math.sqrt(variance))

"""Standard errors of the values estimated from samples (queries, gauge draws).

A value averaged over sampled queries varies with the queries drawn; a value averaged over
queries *and* random gauge draws varies with both. The errors here account for every source of
sampling that enters the mean, so that ±2 standard errors cover the value an exhaustive
computation would give (the coverage study in benchmarks/coverage.py measures it).
"""

from __future__ import annotations

import itertools
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


#: The two-sided 95% normal quantile.
_Z95 = 1.959963984540054


def median_standard_error(values: npt.ArrayLike) -> float | None:
    """Standard error of the median of independent draws (the queries), distribution-free:
    the half-width of the order-statistic 95% interval of the median (ranks n/2 ± 1.96·√n/2,
    Conover 1999, §3.2) divided by 1.96. For n normal draws it approaches √(π/2)·σ/√n. None
    below two values, or when that interval is not finite."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n < 2:
        return None
    half = _Z95 * math.sqrt(n) / 2
    low = min(max(math.ceil(n / 2 - half), 1), n)
    high = min(max(math.ceil(n / 2 + half), 1), n)
    ends = x[[low - 1, high - 1]]
    if not np.isfinite(ends).all():
        return None
    return float((ends[1] - ends[0]) / (2 * _Z95))


def crossed_standard_error(table: npt.ArrayLike) -> float | None:
    """Standard error of the grand mean of a (draws, queries) table in which both the draws
    (random gauges) and the queries (random rows) are sampled: the two-way random-effects
    variance of the mean, σ²_draw/D + σ²_query/Q + σ²_residual/(D·Q), estimated from the mean
    squares as (MS_draw + MS_query − MS_residual) / (D·Q) (Searle, Casella & McCulloch 1992,
    'Variance Components', §4), never below MS_residual / (D·Q), widened by the Student t factor
    of its Satterthwaite degrees of freedom (:func:`t_factor`). With one draw it is the queries'
    error alone (the draw's own variation cannot be estimated: say so where shown)."""
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
    combined = max(ms_draw + ms_query - ms_residual, ms_residual)
    # Satterthwaite's degrees of freedom of that combination: with 3 draws the draws' part rests
    # on 2 of them, so ±2 plain errors would cover too little. The error is widened by the
    # Student t factor, so that ±2 of them is a 95% interval at those degrees of freedom.
    freedom = (
        combined**2
        / (
            ms_draw**2 / (draws - 1)
            + ms_query**2 / (queries - 1)
            + ms_residual**2 / ((draws - 1) * (queries - 1))
        )
        if combined > 0
        else math.inf
    )
    return float(math.sqrt(combined / (draws * queries)) * t_factor(freedom))


#: Two-sided 95% quantiles of Student's t by degrees of freedom (Fisher & Yates' table).
_T975 = (
    (1, 12.706),
    (2, 4.303),
    (3, 3.182),
    (4, 2.776),
    (5, 2.571),
    (6, 2.447),
    (7, 2.365),
    (8, 2.306),
    (9, 2.262),
    (10, 2.228),
    (12, 2.179),
    (15, 2.131),
    (20, 2.086),
    (30, 2.042),
    (60, 2.000),
    (120, 1.980),
)
_Z975 = 1.959964


def t_factor(freedom: float) -> float:
    """t(0.975, df) / z(0.975): how much wider a 95% interval is at ``freedom`` degrees of
    freedom than with a known variance (linear in 1/df between the tabulated values; 1 for an
    infinite df)."""
    if freedom >= _T975[-1][0]:
        tail = _T975[-1][0] / max(freedom, _T975[-1][0])  # 1/df relative to the last entry
        return (_Z975 + (_T975[-1][1] - _Z975) * tail) / _Z975
    freedom = max(freedom, 1.0)
    for (low, t_low), (high, t_high) in itertools.pairwise(_T975):
        if freedom <= high:
            weight = (1 / freedom - 1 / high) / (1 / low - 1 / high)
            return (t_high + (t_low - t_high) * weight) / _Z975
    return 1.0

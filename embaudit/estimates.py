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


def mean_standard_error(values: npt.ArrayLike) -> float | None:
    """Standard error of the mean of independent draws (the queries); None below two."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return None
    return float(x.std(ddof=1) / math.sqrt(len(x)))


#: The two-sided 95% normal quantile.
Z95 = 1.959963984540054


def bounded_mean_standard_error(values: npt.ArrayLike) -> float | None:
    """Standard error of the mean of independent draws of a value in [0, 1] (a query's
    overlap@k), in Agresti & Coull's form (1998, 'Approximate is better than "exact" for
    interval estimation of binomial proportions', Am. Stat. 52): the variance about the mean
    of the draws with z^2/2 more at 0 and z^2/2 more at 1, over n + z^2. Near an end of the
    range (a recall of 0.999: a few queries miss a neighbour, most draws see none) the plain
    error shrinks with the misses it happens to see and is 0 when it sees none; this one stays
    at the size of what a sample of n draws cannot see. For 0/1 draws it is Agresti-Coull's
    error; in the middle of the range it is a little larger than the plain error (about 4
    pseudo-draws among n). None below two draws."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n < 2:
        return None
    extra = Z95**2 / 2  # pseudo-draws at each end
    total = n + 2 * extra
    mean = (float(x.sum()) + extra) / total
    spread = float(((x - mean) ** 2).sum()) + extra * (mean**2 + (1 - mean) ** 2)
    return float(math.sqrt(spread / total / total))


def median_standard_error(values: npt.ArrayLike) -> float | None:
    """Standard error of the median of independent draws (the queries), distribution-free:
    the half-width of the order-statistic 95% interval of the median (ranks n/2 ± 1.96·√n/2,
    Conover 1999, §3.2) divided by 1.96. For n normal draws it approaches √(π/2)·σ/√n. None
    below two values, or when that interval is not finite."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n < 2:
        return None
    half = Z95 * math.sqrt(n) / 2
    low = min(max(math.ceil(n / 2 - half), 1), n)
    high = min(max(math.ceil(n / 2 + half), 1), n)
    ends = x[[low - 1, high - 1]]
    if not np.isfinite(ends).all():
        return None
    return float((ends[1] - ends[0]) / (2 * Z95))


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
    return _crossed_error(draws, queries, *_mean_squares(x))


def _crossed_error(
    draws: int, queries: int, ms_draw: float, ms_query: float, ms_residual: float
) -> float:
    """:func:`crossed_standard_error` from the table's shape and mean squares."""
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


def _mean_squares(x: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    """MS_draw, MS_query and MS_residual of a (draws, queries) table (both at least 2)."""
    draws, queries = x.shape
    grand = x.mean()
    draw_means, query_means = x.mean(axis=1), x.mean(axis=0)
    ms_draw = queries * float(((draw_means - grand) ** 2).sum()) / (draws - 1)
    ms_query = draws * float(((query_means - grand) ** 2).sum()) / (queries - 1)
    residual = x - draw_means[:, None] - query_means[None, :] + grand
    ms_residual = float((residual**2).sum()) / ((draws - 1) * (queries - 1))
    return ms_draw, ms_query, ms_residual


def crossed_error_from(table: npt.ArrayLike) -> str | None:
    """Which side of a (draws, queries) table to double so that the error of its grand mean
    (:func:`crossed_standard_error`) shrinks most: "draws" or "queries" (the same work either
    way: D·Q searched lists). The variance components estimated from the mean squares
    (σ²_draw = (MS_draw − MS_residual)/Q, σ²_query = (MS_query − MS_residual)/D,
    σ²_residual = MS_residual, each at least 0) give the mean squares expected at 2D or at 2Q,
    and so the error each would report, its Student t factor included (more draws also give the
    draws' part more degrees of freedom). None when a side has fewer than two."""
    x = np.asarray(table, dtype=np.float64)
    draws, queries = x.shape
    if min(draws, queries) < 2:
        return None
    ms_draw, ms_query, ms_residual = _mean_squares(x)
    residual = ms_residual
    draw_part = max(ms_draw - residual, 0.0) / queries
    query_part = max(ms_query - residual, 0.0) / draws

    def expected(d: int, q: int) -> float:
        return _crossed_error(d, q, q * draw_part + residual, d * query_part + residual, residual)

    more_draws, more_queries = expected(2 * draws, queries), expected(draws, 2 * queries)
    return "draws" if more_draws <= more_queries else "queries"


def top_share_standard_error(rows: npt.ArrayLike, top: npt.ArrayLike) -> float | None:
    """Standard error of the top principal component's share of variance, lambda_1 / tr(S), of
    iid ``rows`` whose covariance S has the unit top eigenvector ``top``: the delta method with
    the influence function of a simple eigenvalue, IF(x) = (v_1 . c)^2 - lambda_1 for c = x -
    mean (Critchley 1985, 'Influence in principal components analysis', Biometrika 72), so
    IF_share = (IF_1 - share * (|c|^2 - tr S)) / tr S and the error is sd(IF_share) / sqrt(m).
    It holds while lambda_1 stands apart from lambda_2 (the share is then what a threshold
    judges); for tied top eigenvalues it understates. (m, d), (d,) -> scalar; None below three
    rows or with no variance."""
    x = np.asarray(rows, dtype=np.float64)
    m = len(x)
    if m < 3:
        return None
    centred = x - x.mean(axis=0)
    squared = np.einsum("ij,ij->i", centred, centred)
    total = float(squared.mean())
    if total <= 0:
        return None
    along = (centred @ np.asarray(top, dtype=np.float64)) ** 2
    share = float(along.mean()) / total
    influence = (along - share * squared) / total
    return float(influence.std(ddof=1) / math.sqrt(m))


def log_scale_spread_standard_error(rows: npt.ArrayLike) -> float | None:
    """Standard error of g = std over columns of log(std_j) for iid ``rows`` (EA205; dead
    columns left out by the caller), by the delta method: the influence of a row on log std_j
    is (c_j^2 / var_j - 1) / 2 for c = x - mean, so on g it is sum_j (L_j - mean L) (c_j^2 /
    var_j - 1) / (2 d g), and the error is its sd over rows / sqrt(m). (m, d) -> scalar; None
    below three rows or two columns, or when g is 0."""
    x = np.asarray(rows, dtype=np.float64)
    m, d = x.shape
    if m < 3 or d < 2:
        return None
    centred = x - x.mean(axis=0)
    variance = np.mean(centred**2, axis=0)
    if not np.all(variance > 0):
        return None
    logs = 0.5 * np.log(variance)
    spread = float(logs.std())
    if spread <= 0:
        return None
    weights = (logs - logs.mean()) / (2 * d * spread)
    influence = (centred**2 / variance - 1.0) @ weights
    return float(influence.std(ddof=1) / math.sqrt(m))


def pair_r2_standard_error(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    first: npt.ArrayLike,
    second: npt.ArrayLike,
    rows_sampled: bool = True,
) -> float | None:
    """Standard error of the squared correlation r^2 of two values of sampled pairs of rows
    (pair p joins rows ``first[p]`` and ``second[p]`` of a random sample; EA204's cosines with
    and without the rogue dimensions). The delta method: in standardized units the influence
    of pair p on r is a_p b_p - r (a_p^2 + b_p^2) / 2, on r^2 twice r times that. Pairs that
    share a row are not independent (both cosines depend on it), so the variance of their mean
    is the dyadic-robust sum over every two pairs with a row in common (Fafchamps & Gubert 2007,
    J. Dev. Econ. 83; Aronow, Samii & Assenova 2015, 'Cluster-robust variance estimation for
    dyadic data', Political Analysis 23): (sum_i S_i^2 - sum_p psi_p^2) / P^2 with S_i the sum
    of the influences psi of the pairs with row i. It covers the draw of the sample's rows as
    well as of the pairs. Without ``rows_sampled`` (the rows are every row there is) only the
    pairs are drawn, independently: sqrt(sum_p psi_p^2) / P. None below three pairs or when
    either value is constant."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pairs = len(x)
    if pairs < 3 or x.std() == 0 or y.std() == 0:
        return None
    zx, zy = (x - x.mean()) / x.std(), (y - y.mean()) / y.std()
    r = float(np.mean(zx * zy))
    influence = 2 * r * (zx * zy - r * (zx**2 + zy**2) / 2)
    own = float(influence @ influence)
    if not rows_sampled:
        return float(math.sqrt(own) / pairs)
    left, right = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    rows = int(max(left.max(), right.max())) + 1
    sums = np.bincount(left, influence, rows) + np.bincount(right, influence, rows)
    # Each pair meets itself once through each of its rows: once too often in sum S_i^2.
    shared = float(sums @ sums) - own
    return float(math.sqrt(max(shared, own)) / pairs)


def robin_hood_jackknife(graph: npt.ArrayLike, k: int) -> float | None:
    """Delete-one jackknife standard error of the Robin Hood index of a kNN graph over m sampled
    points (Efron & Stein 1981), from each point's k + 1 nearest others (``graph``, (m, k + 1):
    its k neighbours in any order in the first k columns, the (k + 1)-th in the last). Leaving
    point i out takes one occurrence from each of its k neighbours and gives one to the next
    neighbour of every point that listed i, so each of the m indexes is an O(k) update of the
    full one. None below three points."""
    lists = np.asarray(graph, dtype=np.int64)
    m = len(lists)
    if m < 3 or lists.shape[1] != k + 1:
        return None
    near, following = lists[:, :k], lists[:, k]
    occurrence = np.bincount(near.ravel(), minlength=m).astype(np.float64)
    own = np.abs(occurrence - k)
    # Left-out point, point whose occurrence changes, and by how much.
    left_out = np.concatenate([np.repeat(np.arange(m), k), near.ravel()])
    changed = np.concatenate([near.ravel(), np.repeat(following, k)])
    step = np.concatenate([-np.ones(m * k), np.ones(m * k)])
    pairs, where = np.unique(left_out * m + changed, return_inverse=True)
    total_step = np.bincount(where.reshape(-1), weights=step)
    out, point = np.divmod(pairs, m)
    moved = np.abs(occurrence[point] + total_step - k) - own[point]
    moved[point == out] = 0.0
    deviations = own.sum() - own + np.bincount(out, weights=moved, minlength=m)
    indexes = deviations / (2 * (m - 1) * k)
    return float(math.sqrt((m - 1) / m * float(((indexes - indexes.mean()) ** 2).sum())))


def cluster_share_standard_error(labels: npt.ArrayLike, counted: npt.ArrayLike) -> float | None:
    """Standard error of the share of sampled rows that are ``counted``, where rows fall into
    clusters (``labels``) that are counted or not as a whole (the components of a graph): the
    ratio estimator of cluster sampling, the clusters as the units (Cochran 1977, 'Sampling
    Techniques', §6.4), Var = C / (C - 1) * sum_c (y_c - p m_c)^2 / m^2 for cluster sizes m_c
    and counted rows y_c. None below two clusters."""
    _, cluster = np.unique(np.asarray(labels), return_inverse=True)
    cluster = cluster.reshape(-1)
    sizes = np.bincount(cluster).astype(np.float64)
    clusters = len(sizes)
    if clusters < 2:
        return None
    counts = np.bincount(cluster, weights=np.asarray(counted, dtype=np.float64).reshape(-1))
    m = float(sizes.sum())
    share = float(counts.sum()) / m
    variance = clusters / (clusters - 1) * float(((counts - share * sizes) ** 2).sum()) / m**2
    return math.sqrt(variance)


def combined_standard_error(*parts: tuple[float, int] | None) -> float:
    """The error of a value with independent sources of error, each (error, degrees of freedom
    it is estimated with): their quadrature sum, widened by the Student t factor of its
    Satterthwaite degrees of freedom (Satterthwaite 1946). A part that is None is left out."""
    known = [(error**2, freedom) for error, freedom in filter(None, parts)]
    variance = sum(v for v, _ in known)
    if variance <= 0:
        return 0.0
    spread = sum(v**2 / max(freedom, 1) for v, freedom in known)
    return math.sqrt(variance) * t_factor(variance**2 / spread)


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

"""Geometry of a sample of vectors: spectrum, IsoScore, pair cosines, rogue dimensions, hubness.

Pure functions on in-memory arrays (the sample is small: thousands of rows). Shapes are stated
in each docstring; ``x`` is always (m, d) with finite, non-zero rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.array_types import Floats, Ints


def unit_rows(x: npt.NDArray[np.floating[Any]]) -> Floats:
    """Rows scaled to unit L2 norm, in float64. (m, d) -> (m, d)."""
    wide = np.asarray(x, dtype=np.float64)
    scale = np.abs(wide).max(axis=1, keepdims=True)  # guards against overflow of the squares
    scaled = wide / scale
    return scaled / np.linalg.norm(scaled, axis=1, keepdims=True)


def pow2_scale(norms: Floats) -> float:
    """2^-e with 2^e nearest the median of ``norms`` (in log2): multiplying by it is exact, and it
    brings norms near 1e±30 (float32) or 1e±200 (float64) close to 1, so their squares stay in
    range. (n,) -> scalar."""
    return float(2.0 ** -np.round(np.log2(np.median(norms))))


# Spectrum --------------------------------------------------------------------------------------


def covariance_eigenvalues(x: npt.NDArray[np.floating[Any]]) -> Floats:
    """Eigenvalues of the (population) covariance of the rows, descending, negatives clipped."""
    return covariance_spectrum(x)[0]


def covariance_spectrum(x: npt.NDArray[np.floating[Any]]) -> tuple[Floats, Floats]:
    """Eigenvalues of the (population) covariance of the rows, descending, negatives clipped,
    and the unit eigenvector of the largest. (m, d) -> (d,), (d,)"""
    wide = np.asarray(x, dtype=np.float64)
    m, d = wide.shape
    centred = wide - wide.mean(axis=0)
    if m < d:  # the Gram matrix has the same non-zero spectrum
        values, vectors = np.linalg.eigh(centred @ centred.T)
        top = centred.T @ vectors[:, -1]
        values = np.concatenate([np.zeros(d - m), values])
    else:
        values, vectors = np.linalg.eigh(centred.T @ centred)
        top = vectors[:, -1]
    length = float(np.linalg.norm(top))
    top = top / length if length > 0 else np.eye(d)[0]
    values = np.clip(values[::-1], 0.0, None) / m
    return np.asarray(values, dtype=np.float64), np.asarray(top, dtype=np.float64)


def isoscore(eigenvalues: npt.ArrayLike) -> float:
    """IsoScore (Rudman, Gillman, Rayne & Eickhoff 2022, Algorithm 1) from covariance eigenvalues.

    l = sqrt(d) * lambda / ||lambda||; delta = ||l - 1|| / sqrt(2 (d - sqrt d));
    iota = ((d - delta^2 (d - sqrt d))^2 - d) / (d (d - 1)). With k equal non-zero eigenvalues out
    of d, iota = (k - 1) / (d - 1). Biased low when the sample is not much larger than d.
    """
    values = np.asarray(eigenvalues, dtype=np.float64)
    d = len(values)
    if d < 2:
        return 1.0
    total = np.linalg.norm(values)
    if total == 0:
        return 0.0
    normalized = np.sqrt(d) * values / total
    root = np.sqrt(d)
    delta = np.linalg.norm(normalized - 1.0) / np.sqrt(2 * (d - root))
    k = (d - delta**2 * (d - root)) ** 2
    return float((k - d) / (d * (d - 1)))


def effective_rank(eigenvalues: npt.ArrayLike) -> float:
    """Effective rank (Roy & Vetterli 2007): exp of the entropy of the normalized singular values.

    The singular values of the centred data are proportional to sqrt(eigenvalues).
    """
    singular = np.sqrt(np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None))
    total = singular.sum()
    if total == 0:
        return 0.0
    p = singular[singular > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


# Pairs -----------------------------------------------------------------------------------------


def random_pairs(m: int, count: int, rng: np.random.Generator) -> tuple[Ints, Ints]:
    """``count`` random pairs (i, j) of distinct indices below m (with replacement across pairs)."""
    first = rng.integers(m, size=count)
    second = (first + rng.integers(1, m, size=count)) % m  # uniform over j != i
    return first.astype(np.int64), second.astype(np.int64)


#: Pairs whose rows are gathered at a time: two (PAIR_BLOCK, d) arrays that stay in the cache,
#: where gathering every pair's rows at once wrote (and page-faulted) 2 x 123 MB for the
#: default 20,000 pairs at d = 768: 2-8 times slower (0.70 s against 0.17 s for the sample's
#: two calls after a 1M x 768 pass). Each pair's sum is the same either way.
PAIR_BLOCK = 512


def pair_blocks(count: int) -> Iterator[slice]:
    """The slices of ``count`` pairs whose rows are gathered together (PAIR_BLOCK at a time)."""
    for start in range(0, count, PAIR_BLOCK):
        yield slice(start, start + PAIR_BLOCK)


def pair_cosines(unit: Floats, first: Ints, second: Ints) -> Floats:
    """Cosine of each pair of unit rows. (m, d), (p,), (p,) -> (p,)."""
    out = np.empty(len(first), dtype=unit.dtype)
    for block in pair_blocks(len(first)):
        out[block] = np.einsum("ij,ij->i", unit[first[block]], unit[second[block]])
    return out


def rogue_contributions(unit_sum: Floats, unit_sq_sum: Floats, n: int) -> Floats:
    """Per-dimension share of the expected cosine over all pairs of distinct rows.

    CC_i = E_{u != v}[u_i v_i] for unit rows u, v (Timkey & van Schijndel 2021), computed exactly
    from the column sums S_i = sum_n u_ni and Q_i = sum_n u_ni^2: CC_i = (S_i^2 - Q_i) / (n (n-1)).
    The CC_i sum to the mean cosine of distinct pairs.
    """
    if n < 2:
        return np.zeros_like(unit_sum)
    return np.asarray((unit_sum**2 - unit_sq_sum) / (n * (n - 1)), dtype=np.float64)


def pearson_r2(a: Floats, b: Floats) -> float:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1] ** 2)


# Hubness ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hubness:
    skewness: float  # of the k-occurrence distribution (biased, as scipy.stats.skew)
    robin_hood: float  # share of occurrences to move for all k-occurrences to equal k
    antihub_rate: float  # share of points that are nobody's neighbour
    max_occurrence: int
    k_occurrence: Ints  # (m,) how often each point is among the others' k nearest

    def to_dict(self) -> dict[str, Any]:
        counts = np.bincount(self.k_occurrence)
        return {
            "skewness": self.skewness,
            "robin_hood": self.robin_hood,
            "antihub_rate": self.antihub_rate,
            "max_occurrence": self.max_occurrence,
            "occurrence_counts": [int(c) for c in counts],
        }


def skewness(values: npt.ArrayLike) -> float:
    """Biased sample skewness m3 / m2^1.5 (scipy.stats.skew with bias=True); 0 for constants."""
    x = np.asarray(values, dtype=np.float64)
    deviations = x - x.mean()
    m2 = np.mean(deviations**2)
    if m2 <= 0:
        return 0.0
    return float(np.mean(deviations**3) / m2**1.5)


def hubness_from_neighbors(neighbors: Ints, m: int) -> Hubness:
    """Hubness statistics of a kNN graph given each point's k neighbours. (m, k) -> Hubness."""
    k = neighbors.shape[1]
    occurrence = np.bincount(neighbors.ravel(), minlength=m).astype(np.int64)
    total = occurrence.sum()
    return Hubness(
        skewness=skewness(occurrence),
        robin_hood=float(np.abs(occurrence - k).sum() / (2 * total)) if total else 0.0,
        antihub_rate=float(np.mean(occurrence == 0)),
        max_occurrence=int(occurrence.max()),
        k_occurrence=occurrence,
    )


def knn_from_distances(distances: Floats, k: int) -> Ints:
    """Each point's k nearest others (its own entry excluded). (m, m) -> (m, k)."""
    m = distances.shape[0]
    masked = np.array(distances, dtype=np.float64, copy=True)
    masked[np.arange(m), np.arange(m)] = np.inf
    k = min(k, m - 1)
    order = np.argsort(masked, axis=1, kind="stable")[:, :k]
    return order.astype(np.int64)


#: Columns of a group in :func:`kth_largest`, at least: about half of sqrt(m / k) of m columns,
#: which balances the groups' partition (m / group) against their columns' (k · group).
KTH_GROUP = 8
#: The columns first searched for the values that tie with a row's k-th largest (twice as many
#: each time after, for the rows still short of their count).
TIE_COLUMNS = 64


def kth_largest(values: npt.NDArray[np.floating[Any]], k: int) -> npt.NDArray[np.floating[Any]]:
    """The k-th largest value of each row, exactly, without partitioning whole rows: the k
    groups of columns with the largest maxima hold it. (Were a value above the k-th largest of
    those groups in another group, that group's maximum would be below theirs, so they would
    hold k values at least as large: a contradiction.) No NaN. (r, m) -> (r,)"""
    rows, m = values.shape
    if not 0 < k <= m:
        raise ValueError(f"k {k}: between 1 and the {m} columns")
    size = max(KTH_GROUP, math.isqrt(m // k) // 2)
    width = m // size
    if width <= k:
        return np.partition(values, m - k, axis=1)[:, m - k]
    # Group r holds the columns r, r + width, r + 2·width, … of the first size · width: its
    # maximum is one reduction of a view; the columns after them are one group more.
    whole = size * width
    maxima = values[:, :whole].reshape(rows, size, width).max(axis=1)
    if whole < m:
        maxima = np.concatenate([maxima, values[:, whole:].max(axis=1, keepdims=True)], axis=1)
    groups = np.argpartition(maxima, maxima.shape[1] - k, axis=1)[:, maxima.shape[1] - k :, None]
    spread = groups + width * np.arange(size)  # each group's columns
    if whole == m:
        held = np.take_along_axis(values, spread.reshape(rows, -1), axis=1)
    else:  # the group after them holds its own columns, and -inf past the last
        columns = np.where(groups < width, spread, whole + np.arange(size)).reshape(rows, -1)
        held = np.take_along_axis(values, np.minimum(columns, m - 1), axis=1)
        held[columns >= m] = -np.inf
    return np.partition(held, held.shape[1] - k, axis=1)[:, held.shape[1] - k]


def largest_columns(values: npt.NDArray[np.floating[Any]], count: int) -> Ints:
    """Each row's ``count`` largest values' columns, the largest first and equal values by
    column, the lower first: exact, without partitioning whole rows. A row's values from its
    ``count``-th largest (:func:`kth_largest`) up are its ``count`` largest, unless some tie
    with it: then the lowest of those columns fill the places left (:func:`_tied_columns`).
    No NaN. (r, m) -> (r, count)"""
    rows, m = values.shape
    kth = kth_largest(values, count)[:, None]
    reaching = values >= kth
    reached = reaching.sum(axis=1)
    if (reached < count).any():
        raise ValueError("NaN among the values: their largest are undefined")
    columns = np.empty((rows, count), dtype=np.int64)
    plain = reached == count
    if plain.any():
        columns[plain] = (np.flatnonzero(reaching[plain]) % m).reshape(-1, count)
    tied = np.flatnonzero(~plain)
    if len(tied):
        columns[tied] = _tied_columns(values[tied], kth[tied], count)
    order = np.lexsort((columns, -np.take_along_axis(values, columns, axis=1)), axis=1)
    return np.take_along_axis(columns, order, axis=1)


def _tied_columns(
    values: npt.NDArray[np.floating[Any]], kth: npt.NDArray[np.floating[Any]], count: int
) -> Ints:
    """:func:`largest_columns` of rows where more values than places tie with the ``kth``: the
    values above it, then the lowest columns equal to it, searched in runs of columns that
    double (:data:`TIE_COLUMNS`) among the rows still short, however many tie (copies of a
    row). (r, m) -> (r, count), in no order within a row."""
    rows, m = values.shape
    row, column = np.nonzero(values > kth)
    need = count - np.bincount(row, minlength=rows)
    found = [(row, column)]
    first, span = 0, TIE_COLUMNS
    while first < m and need.any():
        short = np.flatnonzero(need > 0)
        row, column = np.nonzero(values[short, first : first + span] == kth[short])
        rank = np.arange(len(row)) - np.searchsorted(row, row)  # row by row, columns in order
        fill = rank < need[short][row]
        found.append((short[row[fill]], column[fill] + first))
        need -= np.bincount(short[row[fill]], minlength=rows)
        first, span = first + span, 2 * span
    row = np.concatenate([r for r, _ in found])
    column = np.concatenate([c for _, c in found])
    return column[np.argsort(row, kind="stable")].reshape(rows, count)


def cosine_knn_graph(unit: Floats, k: int, block: int = 512, following: bool = False) -> Ints:
    """Each unit row's k most cosine-similar other rows, computed blockwise, nearest first
    (equal cosines by row, the lower first); with ``following``, and in one more column the
    (k + 1)-th (when m > k + 1: a leave-one-out of the graph needs it).
    (m, d) -> (m, k) or (m, k + 1).

    The float32 products propose ``width + RERANK_MARGIN`` candidates per row; where two of a
    row's first ``width + 1`` lie within float32 rounding of each other, their float64 cosines
    rank them: such rows are ranked by their exact cosines, not by how a processor's kernel
    happened to round (the graph, and EA501's figures, would otherwise differ from one machine
    to another)."""
    m, d = unit.shape
    if m < 2:
        return np.empty((m, 0), dtype=np.int64)  # no other row
    k = min(k, m - 1)
    width = k + 1 if following and k + 1 <= m - 1 else k
    proposed = min(width + RERANK_MARGIN, m - 1)
    tie = RERANK_ULPS * np.sqrt(d) * 2.0**-24  # float32 rounding of a cosine
    wide = np.asarray(unit, dtype=np.float64)
    single = wide.astype(np.float32)
    out = np.empty((m, width), dtype=np.int64)
    for start in range(0, m, block):
        sims = single[start : start + block] @ single.T
        rows = np.arange(start, min(start + block, m))
        sims[rows - start, rows] = -np.inf
        candidates = largest_columns(sims, proposed)  # nearest first
        scores = np.take_along_axis(sims, candidates[:, : width + 1], axis=1)
        close = np.flatnonzero((scores[:, :-1] - scores[:, 1:] <= tie).any(axis=1))
        if len(close):
            near = candidates[close]
            exact = np.einsum("ij,ikj->ik", wide[rows[close]], wide[near])
            best = np.lexsort((near, -exact), axis=1)  # equal cosines: the lower row first
            candidates[close] = np.take_along_axis(near, best, axis=1)
        out[start : start + block] = candidates[:, :width]
    return out


#: Candidates beyond the k a row keeps, re-ranked in float64 where float32 ties them, and the
#: cosine difference counted as a tie, in units of sqrt(d) float32 roundings (see
#: cosine_knn_graph).
RERANK_MARGIN, RERANK_ULPS = 4, 8.0


def isotropic_sample(m: int, d: int, rng: np.random.Generator) -> Floats:
    """An isotropic Gaussian sample of the same size: the reference for n- and d-dependent stats."""
    return rng.standard_normal((m, d))


def mutual_labels(graph: Ints) -> Ints:
    """A label per row, the same for the rows of one connected component of the mutual kNN
    graph of ``graph`` (the smallest row of the component). (m, k) -> (m,)"""
    m, k = graph.shape
    first = np.repeat(np.arange(m, dtype=np.int64), k)
    second = graph.reshape(-1).astype(np.int64)
    directed = set(zip(first.tolist(), second.tolist(), strict=True))
    mutual = np.array([(i, j) for i, j in directed if i < j and (j, i) in directed], np.int64)
    label = np.arange(m, dtype=np.int64)
    if len(mutual):
        # Each round gives both ends of every edge the smaller label, then jumps labels to
        # their label's label; it stops when no label changes.
        while True:
            low = np.minimum(label[mutual[:, 0]], label[mutual[:, 1]])
            updated = label.copy()
            np.minimum.at(updated, mutual[:, 0], low)
            np.minimum.at(updated, mutual[:, 1], low)
            updated = updated[updated]
            if np.array_equal(updated, label):
                break
            label = updated
    return label


def island_shares(graph: Ints, k: int) -> tuple[float, float]:
    """Shares of rows in the mutual kNN graph's small islands: in components of 2 to ``k``
    rows (a group too small to hold a k-neighbour list of its own, reached from the rest only
    by one-way links), and alone (no mutual neighbour: EA501's antihubs, mostly)."""
    if not len(graph):
        return 0.0, 0.0
    _, small, alone = island_rows(graph, k)
    return float(np.mean(small)), float(np.mean(alone))


def island_rows(graph: Ints, k: int) -> tuple[Ints, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Each row's mutual-kNN component label (:func:`mutual_labels`), whether it lies in a
    small island (a component of 2 to ``k`` rows) and whether it is alone. (m, k) -> 3 × (m,)"""
    labels = mutual_labels(graph)
    sizes = np.bincount(labels)[labels]
    return labels, (sizes > 1) & (sizes <= k), sizes == 1


def isotropic_nearest_cosine(n: int, d: int, quantile: float = 0.5) -> float:
    """The ``quantile`` of the largest cosine between a unit vector and ``n`` others drawn
    uniformly on the sphere in ``d`` dimensions: the nearest-neighbour cosine of an isotropic
    corpus of n + 1 rows.

    The angle θ between two uniform directions has density ∝ sin^(d−2) θ on [0, π]; the
    largest of n cosines is below t with probability F(t)^n, so t solves
    P(θ < arccos t) = 1 − quantile^(1/n), integrated numerically on a fine grid of θ."""
    if n < 1 or d < 2:
        return float("nan")
    tail = -np.expm1(np.log(quantile) / n)  # 1 - quantile^(1/n), exact for large n
    theta = np.linspace(0.0, np.pi, 200_001)
    sine = np.sin(theta)
    density = np.full_like(theta, 1.0 if d == 2 else 0.0)
    positive = (sine > 0) & (d > 2)
    # sin^(d-2) relative to its peak (1 at θ = π/2), through logs: no underflow to 0 · inf.
    density[positive] = np.exp((d - 2) * np.log(sine[positive]))
    steps = (density[1:] + density[:-1]) / 2 * np.diff(theta)
    cumulative = np.concatenate([[0.0], np.cumsum(steps)])
    cumulative /= cumulative[-1]
    angle = float(np.interp(tail, cumulative, theta))
    return float(np.cos(angle))

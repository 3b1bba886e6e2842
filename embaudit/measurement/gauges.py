"""The gauges whose cosine neighbours EA301, EA302 and EA303 compare with the data's own: random
diagonal rescalings D = exp(N(0, s^2)) (EA301), the canonical gauge that scales every column to
unit standard deviation and its jitter by its estimation error (EA302), and a truncation to the
first M dimensions, the gauge D = (1…1, 0…0) (EA303). Each is a (d,) scale applied to the rows
inside the search (:class:`embaudit.knn.Block`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.array_types import Floats
from embaudit.geometry import pow2_scale
from embaudit.random_streams import Stream, generator
from embaudit.stats import DEAD_RATIO, FOLD_BYTES, coordinate_rms, dead_dimension_mask, row_norms

#: Draws of the canonical gauge jittered by its estimation error (EA302's error).
JITTER_DRAWS = 3
#: The canonical gauge is estimated on this many times ``sample`` rows: rows read by position
#: cost little next to the search, and its error and its bias (an estimated scale is a small
#: random gauge, which lowers the overlap) shrink as 1/sqrt of their count (on a log-normal
#: 1M x 768 export, EA302 0.826 at 5,000 rows, 0.868 at 20,000, 0.881 with every row's). A
#: later round, for an undecided EA302, takes every row's scale from the first pass.
SCALE_ROWS_PER_SAMPLE = 4
#: Names of the search's blocks the checks read (:mod:`embaudit.measurement.neighbors`).
BASE_BLOCK = "base"
GAUGE_BLOCK = "gauge s="
CANONICAL_BLOCK = "canonical"
JITTER_BLOCK = "canonical jitter"
TRUNCATE_BLOCK = "truncate "


#: The rescaling level whose overlap is EA301's headline value, the one it judges.
HEADLINE_LEVEL = 0.5
#: The share of the gauge queries searched under the other levels' gauges: their overlaps
#: give s50, which no threshold reads, and are never measured again.
OTHER_LEVELS_SHARE = 0.5


#: The canonical gauge (EA302) is one gauge, whose error is its queries': it is searched for
#: this many times the gauge queries of a random gauge, whose error is mostly its draws' (six
#: draws of 25 queries give EA301 about half the error of three draws of 50, at the same cost:
#: benchmarks/RESULTS.md).
CANONICAL_SHARE = 2


def canonical_queries(gauge_queries: int) -> int:
    """The gauge queries searched under the canonical gauge and its jitters (EA302)."""
    return CANONICAL_SHARE * gauge_queries


def headline_level(levels: Iterable[float]) -> float:
    """The level of ``levels`` nearest HEADLINE_LEVEL on a log scale, the lower of two as
    near (0.25 and 1): the one EA301 judges, whatever the order ``levels`` come in."""
    return min(sorted(levels), key=lambda s: abs(math.log(s / HEADLINE_LEVEL)))


def level_queries(s: float, levels: Iterable[float], gauge_queries: int) -> int:
    """The gauge queries searched under the gauges of level ``s``: all of them at the judged
    level, OTHER_LEVELS_SHARE of them (at least 2, for an error) at the others."""
    if s == headline_level(levels):
        return gauge_queries
    return min(gauge_queries, max(2, math.ceil(OTHER_LEVELS_SHARE * gauge_queries)))


def gauge_scales(
    d: int, levels: tuple[float, ...], draws: int, seed: int
) -> list[tuple[float, Floats]]:
    """Random diagonal gauges D = exp(N(0, s^2)), ``draws`` per level s, level by level. Each
    level draws from its own stream (the i-th of ``levels``: a child of Stream.GAUGES), so the
    draws nest: the first r of a level are the same whatever the number of draws, and a round
    that grows them searches the new ones alone."""
    scales = []
    for index, s in enumerate(levels):
        rng = generator(seed, Stream.GAUGES, index)
        scales += [(s, np.exp(rng.normal(0.0, s, size=d))) for _ in range(draws)]
    return scales


def truncation_scale(d: int, m: int) -> Floats:
    """The gauge of a truncation to the first ``m`` of ``d`` dimensions: D = (1…1, 0…0). Cosine
    under it is cosine on the first m columns. (d,)"""
    scale = np.zeros(d)
    scale[:m] = 1.0
    return scale


@dataclass(frozen=True)
class ColumnSpread:
    """What the canonical gauge and its jitter are estimated from, per column of a sample of
    rows: the mean square and the mean fourth power of the deviations from the column's mean,
    and the rows' root mean square coordinate. (d,) each."""

    count: int
    m2: Floats
    m4: Floats
    rms_coordinate: float

    @classmethod
    def of(cls, rows: npt.NDArray[np.floating[Any]]) -> ColumnSpread:
        """The spread of ``rows`` (any float dtype, as stored: a draw of 20,000 768-d rows need
        not be widened to float64 at once, which would take 123 MB), in float64 blocks of
        FOLD_BYTES, two-pass (the means, then the deviations). The rows are first divided by
        one power of two (exact; see :func:`~embaudit.geometry.pow2_scale`), so that the fourth
        powers of values near 1e±30 (float32) or 1e±200 (float64) stay in range: every
        statistic here is scale-free."""
        m, d = rows.shape
        step = max(1, FOLD_BYTES // (8 * max(d, 1)))
        blocks = [slice(first, first + step) for first in range(0, m, step)]
        norms = np.concatenate([row_norms(rows[block]) for block in blocks] or [np.zeros(0)])
        positive = norms[norms > 0]  # zero rows (a caller's own) have no magnitude to scale
        factor = pow2_scale(positive) if len(positive) else 1.0
        total = np.zeros(d)
        for block in blocks:
            total += np.multiply(rows[block], factor, dtype=np.float64).sum(axis=0)
        mean = total / max(m, 1)
        m2, m4 = np.zeros(d), np.zeros(d)
        for block in blocks:
            squared = np.multiply(rows[block], factor, dtype=np.float64)
            squared -= mean
            np.square(squared, out=squared)
            m2 += squared.sum(axis=0)
            m4 += np.square(squared, out=squared).sum(axis=0)
        rms = coordinate_rms(norms * factor, d)
        return cls(m, m2 / max(m, 1), m4 / max(m, 1), rms)

    def canonical(self, dead_ratio: float = DEAD_RATIO) -> Floats:
        """:func:`canonical_scale` of the rows."""
        return scale_of_spread(np.sqrt(self.m2), self.rms_coordinate, dead_ratio)

    def jitter(self, scale: Floats, rng: np.random.Generator, draws: int = 1) -> list[Floats]:
        """:func:`scale_jitter` of the rows."""
        live = scale > 0
        m2, m4 = self.m2[live], self.m4[live]
        variance = np.maximum(m4 / m2**2 - 1.0, 0.0) / (4 * max(self.count, 1))
        out = []
        for _ in range(draws):
            jittered = np.zeros_like(scale)
            jittered[live] = scale[live] * np.exp(rng.normal(0.0, np.sqrt(variance)))
            peak = jittered.max()
            out.append(jittered / peak if peak > 0 else jittered)
        return out


def canonical_scale(rows: npt.NDArray[np.floating[Any]], dead_ratio: float = DEAD_RATIO) -> Floats:
    """The canonical gauge: D scaling every live column to unit standard deviation, and the
    dead ones (EA004's rule, :func:`~embaudit.stats.dead_dimension_mask`) to 0: they carry no
    information about which rows are near and their spread, if any, is rounding noise. D is
    divided by its largest entry: cosine does not see an overall factor, and D^2 then stays
    within float32 range.

    Gauge-invariant: for rows X D', the scale is D'^-1 times this one (up to that overall factor),
    so X D' D_c = X D_c. (m, d) -> (d,)
    """
    return ColumnSpread.of(rows).canonical(dead_ratio)


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
    rows: npt.NDArray[np.floating[Any]], scale: Floats, rng: np.random.Generator, draws: int = 1
) -> list[Floats]:
    """``draws`` draws of ``scale`` (a canonical gauge estimated on ``rows``) times exp(e),
    e_j ~ N(0, v_j) with v_j the sampling variance of log std_j on those rows,
    (m4 / m2^2 - 1) / (4 m) by the delta method (m2, m4: the column's central moments): each a
    gauge as far from this one as this one is, in distribution, from the gauge of every row.
    Dead columns stay 0. (m, d), (d,) -> [(d,)] * draws"""
    return ColumnSpread.of(rows).jitter(scale, rng, draws)

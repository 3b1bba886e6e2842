"""The distribution of the clean rows' L2 norms, as EA101, EA202 and EA602 read it: exact (every
norm kept) up to :data:`SKETCH_ROWS` rows, and beyond from a mergeable KLL sketch, so that the
memory of whoever merges the fragments does not grow with the rows.

Sketched, the quantiles (p1, p50, p99, the histogram's counts, the CDF of EA602) have the KLL
sketch's normalized rank error :data:`RANK_ERROR` (99% confidence: the p99 reported is the value
of some rank within 0.99 ± RANK_ERROR); min, max, mean, CV and the count stay exact (a Chan merge
of the moments, in row order). The sketch compacts at random: two runs may differ within that
error. Whether a source is sketched depends on its row count only, never on the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.stats.dimensions import Moments

Floats = npt.NDArray[np.float64]

#: Sources with more rows than this summarize their norms with a sketch (16 bytes a row of
#: norms and hashes below it: 64 MiB).
SKETCH_ROWS = 2**22
#: The KLL sketch's k: about 30 KB a sketch.
SKETCH_K = 1000


def _kll() -> Any:
    import datasketches

    return datasketches.kll_doubles_sketch


#: The normalized rank error of a quantile read from the sketch (99% confidence).
RANK_ERROR = 0.0028  # kll_doubles_sketch.get_normalized_rank_error(SKETCH_K, False), rounded up


def sketched(rows: int) -> bool:
    """Whether a source of ``rows`` rows summarizes its norms with a sketch."""
    return rows > SKETCH_ROWS


@dataclass
class NormParts:
    """The mergeable summary of some clean norms: their moments, extremes and KLL sketch (which
    pickles serialized: it travels between processes)."""

    moments: Moments
    low: float
    high: float
    sketch: Any = None  # a kll_doubles_sketch, None until a norm arrives

    @classmethod
    def empty(cls) -> NormParts:
        return cls(Moments.empty(1), np.inf, -np.inf, None)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["sketch"] = None if self.sketch is None else self.sketch.serialize()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state["sketch"] is not None:
            state["sketch"] = _kll().deserialize(state["sketch"])
        self.__dict__.update(state)

    def add(self, norms: Floats) -> None:
        """Fold the clean norms of the next rows (in row order)."""
        if not len(norms):
            return
        self.moments = self.moments.merge(Moments.of(norms[:, None]))
        self.low, self.high = min(self.low, float(norms.min())), max(self.high, float(norms.max()))
        if self.sketch is None:
            self.sketch = _kll()(SKETCH_K)
        self.sketch.update(np.ascontiguousarray(norms, dtype=np.float64))

    def merge(self, other: NormParts) -> None:
        """Fold the summary of the rows that follow."""
        self.moments = self.moments.merge(other.moments)
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        if other.sketch is None:
            return
        if self.sketch is None:
            self.sketch = _kll()(SKETCH_K)
        self.sketch.merge(other.sketch)


class NormSummary:
    """The clean norms: ``exact`` (every one) or sketched (:class:`NormParts`)."""

    def __init__(self, exact: Floats | None = None, parts: NormParts | None = None) -> None:
        self.exact = exact
        self.parts = parts
        self._sketch: Any = None if parts is None else parts.sketch

    @property
    def rank_error(self) -> float:
        """0 when exact, else the sketch's normalized rank error."""
        return 0.0 if self.exact is not None else RANK_ERROR

    @property
    def count(self) -> int:
        return len(self.exact) if self.exact is not None else self._parts.moments.count

    @property
    def _parts(self) -> NormParts:
        assert self.parts is not None
        return self.parts

    @property
    def min(self) -> float:
        return float(self.exact.min()) if self.exact is not None else self._parts.low

    @property
    def max(self) -> float:
        return float(self.exact.max()) if self.exact is not None else self._parts.high

    @property
    def mean(self) -> float:
        if self.exact is not None:
            return float(self.exact.mean())
        return float(self._parts.moments.mean[0])

    @property
    def cv(self) -> float:
        """std / mean (population std)."""
        if self.exact is not None:
            return float((self.exact / self.mean).std())  # relative first: cannot overflow
        moments = self._parts.moments
        return float(np.sqrt(moments.m2[0] / moments.count) / moments.mean[0])

    def mean_square(self) -> float:
        """mean ||x||^2 relative to max^2 (cannot overflow)."""
        largest = self.max
        if self.exact is not None:
            return float(np.mean((self.exact / largest) ** 2))
        moments = self._parts.moments
        mean = moments.mean[0] / largest
        return float(moments.m2[0] / moments.count / largest**2 + mean**2)

    def quantiles(self, levels: list[float]) -> list[float]:
        if self.exact is not None:
            return [float(q) for q in np.quantile(self.exact, levels)]
        return [float(self._sketch.get_quantile(level)) for level in levels]

    def cdf(self, points: Floats) -> Floats:
        """The share of the norms at or below each of ``points``."""
        if self.exact is not None:
            ordered = np.sort(self.exact)
            return np.searchsorted(ordered, points, side="right") / len(ordered)
        unique, back = np.unique(np.asarray(points, dtype=np.float64), return_inverse=True)
        shares = self._sketch.get_cdf(unique.tolist(), inclusive=True)[:-1]
        return np.asarray(shares, dtype=np.float64)[back.reshape(-1)]

    def support(self) -> Floats:
        """Points where the CDF steps (every norm; sketched: a grid of quantiles)."""
        if self.exact is not None:
            return self.exact
        grid = np.linspace(0.0, 1.0, 2001)
        return np.asarray([self._sketch.get_quantile(q) for q in grid], dtype=np.float64)

    def histogram(self, bins: int) -> tuple[Floats, list[int]]:
        """Edges and counts of ``bins`` equal bins from min to max (sketched: the counts are
        the sketch's, within its rank error of the count)."""
        low, high = self.min, self.max
        if self.exact is not None:
            counts, edges = np.histogram(self.exact, bins=bins, range=(low, high))
            return edges, [int(c) for c in counts]
        edges = np.linspace(low, high, bins + 1)
        shares = self._sketch.get_pmf(list(map(float, edges[1:-1])))
        counts = np.rint(np.asarray(shares) * self.count).astype(int)
        return edges, [int(c) for c in counts]


def ks_statistic(first: NormSummary, second: NormSummary) -> float:
    """Two-sample Kolmogorov–Smirnov statistic: the largest gap between the CDFs, evaluated
    where either steps (sketched: within the rank errors of both)."""
    grid = np.concatenate([first.support(), second.support()])
    return float(np.abs(first.cdf(grid) - second.cdf(grid)).max())

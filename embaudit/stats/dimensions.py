"""Per-dimension statistics: the mergeable moments of each dimension, the typical magnitude of a
coordinate, and the rule for a dead dimension (EA004).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: A dimension is dead when its standard deviation is at most this share of the root mean square
#: coordinate (EA004's default threshold): far below any informative spread, well above the
#: rounding noise of a constant float32 or float64 column.
DEAD_RATIO = 1e-6

Floats = npt.NDArray[np.float64]


@dataclass
class Moments:
    """Count, mean and sum of squared deviations per dimension (Chan et al. 1979 merge)."""

    count: int
    mean: Floats
    m2: Floats

    @classmethod
    def empty(cls, d: int) -> Moments:
        return cls(0, np.zeros(d), np.zeros(d))

    @classmethod
    def of(cls, block: Floats, scratch: Floats | None = None) -> Moments:
        """Moments of one block, two-pass: the mean, then the squared deviations from it.

        The one-pass form sum x^2 - n mean^2 loses about eps * mean^2 of the variance, so a
        constant column of a value larger than the typical coordinate (a bias of 0.3 in unit
        rows of d = 384) came out with a spread above EA004's threshold. Here a constant column
        keeps only the rounding of its mean, about eps * |mean| in std. Magnitudes beyond
        ~1e154 overflow to inf, which reads as 'not constant'. ``scratch``: an array of the
        block's shape to hold its deviations (default: a new one).
        """
        n = len(block)
        if not n:
            return cls.empty(block.shape[1])
        with np.errstate(over="ignore", invalid="ignore"):
            mean = block.sum(axis=0) / n
            centred = np.subtract(block, mean, out=scratch)
            m2 = np.einsum("ij,ij->j", centred, centred)
        return cls(n, mean, np.where(np.isnan(m2), np.inf, m2))

    def merge(self, other: Moments) -> Moments:
        count = self.count + other.count
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        with np.errstate(over="ignore", invalid="ignore"):
            m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / count)
        return Moments(count, mean, m2)

    @property
    def std(self) -> Floats:
        """Population standard deviation per dimension (zeros when count < 1)."""
        return np.sqrt(self.m2 / max(self.count, 1))


def dead_dimension_mask(
    std: Floats, rms_coordinate: float, ratio: float = DEAD_RATIO
) -> npt.NDArray[np.bool_]:
    """The dead dimensions (EA004): standard deviation at most ``ratio`` times the root mean
    square coordinate sqrt(mean ||x||^2 / d). A constant dimension is dead whatever its value,
    and so is one whose spread is rounding noise (a constant float64 column can have a computed
    std near 1e-17 of its value): no per-dimension scale may be divided by such a spread."""
    return np.asarray(std <= ratio * rms_coordinate)


def coordinate_rms(norms: Floats, d: int) -> float:
    """sqrt(mean ||x||^2 / d) from the row norms: the typical magnitude of one coordinate.
    Computed relative to the largest norm so that it cannot overflow."""
    if not len(norms):
        return 0.0
    largest = float(norms.max())
    if largest == 0:
        return 0.0
    return largest * float(np.sqrt(np.mean((norms / largest) ** 2) / d))

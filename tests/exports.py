"""Generated exports shaped like the ones users have, not like the ones a tool is tuned on.

Each generator is seeded and small enough for brute-force references in float64.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

#: Values of constant columns: each leaves a float64 rounding residue in a computed std (about
#: 1e-23 to 1e-17; below 5e-20 its inverse squared overflows float32), as a real encoder's
#: dead dimensions do.
DEAD_VALUES = (0.3, 1e-7, 0.0123)


def encoder_like(
    n: int,
    d: int,
    *,
    dead: tuple[int, ...] = (),
    seed: int = 0,
    normalize: bool = True,
    common: float = 1.5,
) -> Floats:
    """Sentence-encoder-like rows: 32 topics, per-dimension scales within a factor of about 2,
    a common direction (``common`` times a standard normal offset: 1.5 gives a mean cosine near
    0.55, as anisotropic encoders have; 0.5 near 0.15), two rogue dimensions, unit norm (unless
    ``normalize`` is false), and constant ``dead`` columns (set after normalizing, as a bias
    that survives the final layer)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((32, d))
    rows = centres[rng.integers(32, size=n)] + 0.8 * rng.standard_normal((n, d))
    rows *= np.exp(rng.normal(0.0, 0.2, size=d))
    rows += common * rng.standard_normal(d)  # common direction
    rows[:, rng.choice(d, size=2, replace=False)] *= 4.0  # rogue dimensions
    if normalize:
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    for j, column in enumerate(dead):
        rows[:, column] = DEAD_VALUES[j % len(DEAD_VALUES)]
    return rows


def lognormal_norms(rows: Floats, *, sigma: float = 1.0, seed: int = 0) -> Floats:
    """The rows rescaled by log-normal norms, as unnormalized exports are."""
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.normal(0.0, sigma, size=len(rows)))
    return rows * scale[:, None]


def exact_cosine_top(x: Floats, query_rows: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.int64]:
    """float64 brute force: the k nearest rows by cosine of each query row, itself excluded,
    ties broken by row. Rows that are zero (after a gauge) rank last."""
    norms = np.linalg.norm(x, axis=1)
    unit = x / np.where(norms > 0, norms, 1.0)[:, None]
    scores = unit[query_rows] @ unit.T
    scores[np.arange(len(query_rows)), query_rows] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(len(x)), scores.shape), -scores), axis=1)
    return order[:, :k].astype(np.int64)


def set_overlap(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> float:
    """Mean over rows of |a_q ∩ b_q| / k (no ties in continuous data)."""
    k = a.shape[1]
    return float(np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(a, b, strict=True)]))

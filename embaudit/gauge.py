"""Two-tower gauge audit: how far cosine neighbours move under gauges the model cannot see.

A dot-product model scores users and items by u·i. For any invertible diagonal D, the towers
(items·D, users·D⁻¹) give exactly the same scores, so the model does not determine the
per-dimension scale — yet cosine between items (or between users) depends on it. This module
measures, on a sample of one tower, the overlap@k between the cosine neighbours of the exported
gauge and of gauges D whose condition number max(D)/min(D) is at most ``max_condition``:

* random draws, log-uniform in the allowed box, for a ladder of condition numbers;
* a search for the worst gauge. Cosine neighbour order under D depends on the weights w = D²
  only through ratios of linear functions of w, and such ratios take their extremes at the
  vertices of the box {C^-1/2 <= D_l <= C^1/2}. The search therefore starts from the best of
  several random vertices and flips one coordinate at a time between the two bounds, keeping a
  flip when it lowers the overlap (greedy coordinate descent), until a sweep brings no
  improvement or the evaluation budget is spent. Each flip is a rank-one update of the weighted
  Gram matrix of the sample, so an evaluation costs one m × m pass.

It also checks on sampled user–item pairs that the worst gauge leaves every prediction unchanged
(to float64 rounding), and reports the range of cosines a pair of items can take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: Condition numbers of the overlap-by-condition curve (kept where <= max_condition).
CONDITION_LADDER = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0, 1000.0)
#: Tie tolerance (cosine units) of the overlap: scores closer than this are ties.
TIE = 1e-9


@dataclass(frozen=True)
class GaugeSettings:
    k: int = 10
    seed: int = 0
    max_condition: float = 10.0
    sample: int = 2000  # rows of the tower whose neighbours are compared
    draws: int = 8  # random gauges per condition number
    vertices: int = 32  # random vertices the worst-case search starts from
    budget: int = 600  # gauge evaluations of the search
    pairs: int = 10_000  # user–item pairs for the prediction check, item pairs for cosines


@dataclass(frozen=True)
class SideResult:
    side: str  # "items" or "users"
    k: int
    sample: int
    worst_overlap_at_k: float
    worst_condition: float
    worst_scale: Floats
    evaluations: int
    overlap_by_condition: list[dict[str, float]]
    cosine_range: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "k": self.k,
            "sample": self.sample,
            "worst_overlap_at_k": self.worst_overlap_at_k,
            "worst_condition": self.worst_condition,
            "evaluations": self.evaluations,
            "overlap_by_condition": self.overlap_by_condition,
            "cosine_range": self.cosine_range,
        }


class _Neighbours:
    """Cosine kNN within a sample under diagonal weights w = D², with rank-one flips."""

    def __init__(self, rows: Floats, k: int) -> None:
        self.rows = rows
        self.k = min(k, len(rows) - 1)
        self.base_gram = rows @ rows.T
        self.base_cosines = self._cosines(self.base_gram)
        self.base_top = self._top(self.base_cosines)
        self.base_kth = np.take_along_axis(self.base_cosines, self.base_top[:, -1:], axis=1)[:, 0]

    @staticmethod
    def _cosines(gram: Floats) -> Floats:
        norms = np.sqrt(np.diag(gram))
        cosines = gram / np.outer(norms, norms)
        np.fill_diagonal(cosines, -np.inf)
        return cosines

    def _top(self, cosines: Floats) -> Ints:
        top = np.argpartition(-cosines, self.k - 1, axis=1)[:, : self.k]
        order = np.argsort(-np.take_along_axis(cosines, top, axis=1), axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1).astype(np.int64)

    def gram(self, weights: Floats) -> Floats:
        return (self.rows * weights) @ self.rows.T

    def overlap(self, gram: Floats) -> float:
        """Mean overlap@k of the neighbours under ``gram`` with the exported ones (tie-aware:
        a new neighbour whose exported cosine ties with the k-th counts as kept)."""
        top = self._top(self._cosines(gram))
        kept = np.take_along_axis(self.base_cosines, top, axis=1) >= self.base_kth[:, None] - TIE
        return float(kept.mean())


def _log_uniform(d: int, condition: float, rng: np.random.Generator) -> Floats:
    half = np.log(condition) / 2
    return np.exp(rng.uniform(-half, half, size=d))


def _vertex(d: int, condition: float, rng: np.random.Generator) -> Floats:
    return np.sqrt(condition) ** rng.choice([-1.0, 1.0], size=d)


def audit_side(side: str, rows: Floats, settings: GaugeSettings) -> tuple[SideResult, Floats]:
    """Gauge sensitivity of the cosine neighbours among ``rows`` (a sample of one tower, finite
    and non-zero). Returns the result and the worst gauge D found for that tower."""
    rng = np.random.default_rng(
        np.random.SeedSequence([settings.seed, 0 if side == "items" else 1])
    )
    d = rows.shape[1]
    search = _Neighbours(rows, settings.k)
    curve = []
    tried: list[Floats] = []
    for condition in [c for c in CONDITION_LADDER if c <= settings.max_condition]:
        overlaps = []
        for _ in range(settings.draws):
            scale = _log_uniform(d, condition, rng)
            tried.append(scale)
            overlaps.append(search.overlap(search.gram(scale**2)))
        curve.append(
            {
                "condition": condition,
                "overlap_at_k": float(np.mean(overlaps)),
                "draws": len(overlaps),
            }
        )
    # Worst case: best random vertex, then greedy coordinate flips between the two bounds.
    evaluations = 0
    best_scale, best = np.ones(d), 1.0
    for _ in range(settings.vertices):
        scale = _vertex(d, settings.max_condition, rng)
        value = search.overlap(search.gram(scale**2))
        evaluations += 1
        if value < best:
            best_scale, best = scale, value
    gram = search.gram(best_scale**2)
    improved = True
    while improved and evaluations < settings.budget:
        improved = False
        for dim in rng.permutation(d):
            if evaluations >= settings.budget:
                break
            flipped = 1.0 / best_scale[dim]  # the other bound: C^-1/2 <-> C^1/2
            delta = flipped**2 - best_scale[dim] ** 2
            column = rows[:, dim]
            candidate = gram + delta * np.outer(column, column)
            value = search.overlap(candidate)
            evaluations += 1
            if value < best:
                best, gram = value, candidate
                best_scale = best_scale.copy()
                best_scale[dim] = flipped
                improved = True
    tried.append(best_scale)
    first, second = _pairs(len(rows), settings.pairs, rng)
    cosines = np.stack(
        [_pair_cosines(rows * scale, first, second) for scale in [np.ones(d), *tried]]
    )
    width = cosines.max(axis=0) - cosines.min(axis=0)
    result = SideResult(
        side=side,
        k=search.k,
        sample=len(rows),
        worst_overlap_at_k=best,
        worst_condition=float(best_scale.max() / best_scale.min()),
        worst_scale=best_scale,
        evaluations=evaluations,
        overlap_by_condition=curve,
        cosine_range={
            "min": float(cosines.min()),
            "max": float(cosines.max()),
            "mean_width": float(width.mean()),
            "max_width": float(width.max()),
            "pairs": len(first),
        },
    )
    return result, best_scale


def _pairs(m: int, count: int, rng: np.random.Generator) -> tuple[Ints, Ints]:
    first = rng.integers(m, size=count)
    second = (first + rng.integers(1, m, size=count)) % m
    return first.astype(np.int64), second.astype(np.int64)


def _pair_cosines(rows: Floats, first: Ints, second: Ints) -> Floats:
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return np.einsum("ij,ij->i", unit[first], unit[second])


def prediction_change(items: Floats, users: Floats, item_scale: Floats) -> float:
    """Largest change of the scores u·i of paired rows under (items·D, users·D⁻¹), relative to
    |u||i|: float64 rounding, since the gauge leaves every score unchanged."""
    count = min(len(items), len(users))
    u, i = users[:count], items[:count]
    before = np.einsum("ij,ij->i", u, i)
    after = np.einsum("ij,ij->i", u / item_scale, i * item_scale)
    scale = np.linalg.norm(u, axis=1) * np.linalg.norm(i, axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    return float(np.max(np.abs(after - before) / scale))

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
  Gram matrix of the sample, so an evaluation costs one m × m pass (in blocks of rows).

It also checks on sampled user–item pairs that the worst gauge leaves every prediction unchanged
(to float64 rounding), and reports the range of cosines a pair of items can take.

The scores cannot tell one gauge from another, but a penalty on each factor can. Weight decay on
both towers (Steck, Ekanadham & Kallus 2024, Eq. 2) adds Σ_j D_j² ‖V_:j‖² + ‖U_:j‖² / D_j² for the
split (items·D, users·D⁻¹), with V the item rows, U the user rows and norms over all rows; it is
smallest at D_j² = ‖U_:j‖ / ‖V_:j‖, where the column norms agree (‖V_:j‖ D_j = ‖U_:j‖ / D_j), so
such training ends at the balanced split diag(UᵀU) = diag(VᵀV). :func:`balance` reports that
balancing gauge and its condition number max(D)/min(D) (a common factor of D moves no cosine):
about 1 means the export sits at the split weight decay selects, far from 1 that its split is
arbitrary. The column norms come from every clean row of each tower (:class:`ColumnNorms`, one
streaming pass), so the number carries no sampling noise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.array_types import Floats, Ints
from embaudit.geometry import kth_largest
from embaudit.model import field_values
from embaudit.random_streams import TowerStream, tower_generator
from embaudit.stats import clean_mask

#: Condition numbers of the overlap-by-condition curve (kept where <= max_condition).
CONDITION_LADDER = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0, 1000.0)
#: Tie tolerance (on the cosine scale) of the overlap: scores closer than this are ties.
TIE = 1e-9
#: Largest condition number of the balancing gauge at which the towers count as balanced. The
#: column norms come from every row, so an exact balance measures 1 to rounding (1e-7 for float32
#: storage); a trained model stops short of its stationary point, and 1.1 (user-to-item column
#: norm ratios within a factor 1.21 of each other) allows for that while staying well inside the
#: smallest gauges that move neighbours: on examples/steck2024 random gauges of condition 1.1
#: keep 96% of the items' cosine neighbours (1.25, the first rung of the ladder: 91%).
BALANCED_CONDITION = 1.1
#: A column whose norm is at most this share of its tower's root-mean-square column norm is zero:
#: far below any informative scale, far above float rounding.
DEAD_COLUMN = 1e-6
#: Exponent of an empty column: below every float64, so that the first block sets the scale.
_NO_EXPONENT = -1100


@dataclass(frozen=True, kw_only=True)
class GaugeSettings:
    """How one tower's gauge sensitivity is searched: the command's options (k, seed, the
    largest condition number, the rows compared; defaults in :class:`~embaudit.options.
    GaugeOptions`) and the search's own effort."""

    k: int
    seed: int
    max_condition: float
    sample: int  # rows of the tower whose neighbours are compared
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
        return field_values(self, leave_out=("worst_scale",))


#: Rows of the sample whose cosines one step of an evaluation holds: a block of 64 × m float64
#: stays in the core's cache while it is scaled, selected and counted (m = 2,000: 1 MB).
_BLOCK_ROWS = 64


class _Neighbours:
    """Cosine kNN within a sample under diagonal weights w = D², with rank-one flips.

    An evaluation asks, per row, which of its exported neighbours (those whose exported cosine
    ties with the k-th or is above it, :attr:`kept`) are among its k nearest under the new
    weights: the k-th largest new score of the row (:func:`~embaudit.geometry.kth_largest`) and
    the new scores of those few columns tell it, block of rows by block of rows so that the work
    stays in cache.
    A row's scores are its Gram entries divided by the other row's norm (its own norm, common to
    the row, changes no order), and a flip adds its rank-one change block by block without
    forming the candidate Gram matrix. Where new scores tie exactly at the k-th, as many tied
    exported neighbours count as the k places left hold (duplicated rows tie so, and are
    exported neighbours alike). tests/test_gauge_references.py checks every evaluation against
    selecting each row's k nearest cosines whole.
    """

    def __init__(self, rows: Floats, k: int) -> None:
        self.rows = rows
        self.k = min(k, len(rows) - 1)
        self.base_gram = rows @ rows.T
        self.base_cosines = self._cosines(self.base_gram)
        self.base_top = self._top(self.base_cosines)
        # The k-th largest exported cosine of each row: the smallest of its k nearest.
        self.base_kth = np.take_along_axis(self.base_cosines, self.base_top, axis=1).min(axis=1)
        kept = self.base_cosines >= self.base_kth[:, None] - TIE
        self.kept, self.kept_valid = _padded_columns(kept)

    @staticmethod
    def _cosines(gram: Floats) -> Floats:
        norms = np.sqrt(np.diag(gram))
        cosines = gram / np.outer(norms, norms)
        np.fill_diagonal(cosines, -np.inf)
        return cosines

    def _top(self, cosines: Floats) -> Ints:
        """Each row's k largest cosines' columns, in no particular order (the overlap counts
        sets)."""
        return np.argpartition(-cosines, self.k - 1, axis=1)[:, : self.k].astype(np.int64)

    def gram(self, weights: Floats) -> Floats:
        return (self.rows * weights) @ self.rows.T

    def overlap(self, gram: Floats) -> float:
        """Mean overlap@k of the neighbours under ``gram`` with the exported ones (tie-aware:
        a new neighbour whose exported cosine ties with the k-th counts as kept)."""
        inverse = 1.0 / np.sqrt(np.diag(gram))
        kept = 0
        for start in range(0, len(gram), _BLOCK_ROWS):
            kept += self._kept_in_block(gram[start : start + _BLOCK_ROWS] * inverse, start)
        return kept / (len(gram) * self.k)

    def flip_overlap(self, gram: Floats, column: Floats, delta: float) -> float:
        """:meth:`overlap` of ``gram + delta · column columnᵀ`` (one weight changed by
        ``delta``), without forming that matrix."""
        inverse = 1.0 / np.sqrt(np.diag(gram) + delta * column * column)
        change = delta * column * inverse
        kept = 0
        for start in range(0, len(gram), _BLOCK_ROWS):
            block = slice(start, start + _BLOCK_ROWS)
            scores = gram[block] * inverse
            scores += np.outer(column[block], change)
            kept += self._kept_in_block(scores, start)
        return kept / (len(gram) * self.k)

    def _kept_in_block(self, cosines: Floats, start: int) -> int:
        """How many of the k nearest of the rows ``start, start + 1, …`` (their ``cosines``,
        overwritten) are exported neighbours."""
        rows = np.arange(len(cosines))
        cosines[rows, start + rows] = -np.inf  # a row is not its own neighbour
        k = self.k
        kth = kth_largest(cosines, k)
        block = slice(start, start + len(cosines))
        kept, valid = self.kept[block], self.kept_valid[block]
        values = np.take_along_axis(cosines, kept, axis=1)
        above = ((values > kth[:, None]) & valid).sum(axis=1)
        at = ((values == kth[:, None]) & valid).sum(axis=1)
        tied = np.flatnonzero(at > 1)
        if len(tied):
            # Several exported neighbours tie exactly with the k-th: they fill the places the
            # larger cosines leave (at least one, the k-th itself).
            places = k - (cosines[tied] > kth[tied, None]).sum(axis=1)
            at[tied] = np.minimum(at[tied], places)
        return int((above + at).sum())


def _padded_columns(mask: npt.NDArray[np.bool_]) -> tuple[Ints, npt.NDArray[np.bool_]]:
    """The columns where each row of ``mask`` is true, padded to the longest row (with column
    0), and which entries are real."""
    counts = mask.sum(axis=1)
    width = int(counts.max())
    valid = np.arange(width)[None, :] < counts[:, None]
    columns = np.zeros(mask.shape[0] * width, dtype=np.int64)
    columns[valid.ravel()] = np.nonzero(mask)[1]
    return columns.reshape(mask.shape[0], width), valid


def _log_uniform(d: int, condition: float, rng: np.random.Generator) -> Floats:
    half = np.log(condition) / 2
    return np.exp(rng.uniform(-half, half, size=d))


def _vertex(d: int, condition: float, rng: np.random.Generator) -> Floats:
    return np.sqrt(condition) ** rng.choice([-1.0, 1.0], size=d)


def audit_side(side: str, rows: Floats, settings: GaugeSettings) -> tuple[SideResult, Floats]:
    """Gauge sensitivity of the cosine neighbours among ``rows`` (a sample of one tower, finite
    and non-zero). Returns the result and the worst gauge D found for that tower."""
    stream = TowerStream.ITEM_GAUGES if side == "items" else TowerStream.USER_GAUGES
    rng = tower_generator(settings.seed, stream)
    search = _Neighbours(rows, settings.k)
    curve, tried = _condition_curve(search, settings, rng)
    best_scale, best, evaluations = _worst_gauge(search, settings, rng)
    tried.append(best_scale)
    result = SideResult(
        side=side,
        k=search.k,
        sample=len(rows),
        worst_overlap_at_k=best,
        worst_condition=float(best_scale.max() / best_scale.min()),
        worst_scale=best_scale,
        evaluations=evaluations,
        overlap_by_condition=curve,
        cosine_range=_cosine_range(rows, tried, settings.pairs, rng),
    )
    return result, best_scale


def _condition_curve(
    search: _Neighbours, settings: GaugeSettings, rng: np.random.Generator
) -> tuple[list[dict[str, float]], list[Floats]]:
    """Mean overlap@k of ``settings.draws`` random gauges per condition number of the ladder,
    and the gauges drawn."""
    d = search.rows.shape[1]
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
    return curve, tried


def _worst_gauge(
    search: _Neighbours, settings: GaugeSettings, rng: np.random.Generator
) -> tuple[Floats, float, int]:
    """The worst gauge found, its overlap@k and the evaluations spent: the best random vertex,
    then greedy coordinate flips between the two bounds (see the module docstring)."""
    rows = search.rows
    d = rows.shape[1]
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
            value = search.flip_overlap(gram, column, delta)
            evaluations += 1
            if value < best:
                best, gram = value, gram + delta * np.outer(column, column)
                best_scale = best_scale.copy()
                best_scale[dim] = flipped
                improved = True
    return best_scale, best, evaluations


def _cosine_range(
    rows: Floats, tried: list[Floats], pair_count: int, rng: np.random.Generator
) -> dict[str, float]:
    """The range of the cosines of random pairs of ``rows`` over the exported gauge and the
    gauges ``tried``."""
    first, second = _pairs(len(rows), pair_count, rng)
    cosines = np.stack(
        [_pair_cosines(rows * scale, first, second) for scale in [np.ones(rows.shape[1]), *tried]]
    )
    width = cosines.max(axis=0) - cosines.min(axis=0)
    return {
        "min": float(cosines.min()),
        "max": float(cosines.max()),
        "mean_width": float(width.mean()),
        "max_width": float(width.max()),
        "pairs": len(first),
    }


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


@dataclass
class ColumnNorms:
    """Per-dimension L2 norms of one tower over its clean rows, folded block by block.

    Stored as ‖x_:j‖² = 4^exponent_j · scaled_j, every value divided by a power of two above its
    column's largest magnitude (as LAPACK's dnrm2 scales): the division is exact, and no square
    overflows or underflows, whatever the magnitudes of a float64 input.
    """

    d: int
    rows: int = 0
    exponent: Ints = field(init=False)
    scaled: Floats = field(init=False)

    def __post_init__(self) -> None:
        self.exponent = np.full(self.d, _NO_EXPONENT, dtype=np.int64)
        self.scaled = np.zeros(self.d)

    def fold(self, block: Floats) -> None:
        """Add the rows of ``block`` (finite, float64)."""
        if not len(block):
            return
        _, largest = np.frexp(np.abs(block).max(axis=0))  # |x| < 2^largest
        exponent = np.maximum(self.exponent, largest.astype(np.int64))
        scaled = np.ldexp(block, -exponent)
        self.scaled = np.ldexp(self.scaled, 2 * (self.exponent - exponent)) + np.einsum(
            "ij,ij->j", scaled, scaled
        )
        self.exponent = exponent
        self.rows += len(block)

    def log_norms(self) -> Floats:
        """ln ‖x_:j‖ per dimension; -inf for a column of zeros."""
        with np.errstate(divide="ignore"):
            logs: Floats = self.exponent * np.log(2.0) + 0.5 * np.log(self.scaled)
        return logs


def column_norms(
    blocks: Iterable[npt.NDArray[np.floating[Any]]], d: int, dtype: np.dtype[Any]
) -> ColumnNorms:
    """The column norms of every finite, non-zero row of one tower, from its (rows, d) blocks in
    the storage ``dtype`` (the other rows are left out, as everywhere)."""
    return tower_pass(blocks, d, dtype)[0]


@dataclass(frozen=True)
class Balance:
    """How far a two-tower export is from the split weight decay on both towers selects."""

    condition: float | None  # max(D)/min(D); None when a column is zero in one tower only
    live_condition: float | None  # the same over the columns non-zero in both towers
    log_scale_std: float | None  # std of ln D over those columns
    balanced: bool
    tolerance: float
    scale: Floats  # the balancing gauge D; NaN where a tower's column is zero
    rows: dict[str, int]  # clean rows of each tower the norms sum over
    dead: dict[str, list[int]]  # zero columns: in the items only, the users only, both

    def to_dict(self) -> dict[str, Any]:
        return field_values(self, leave_out=("scale", "dead")) | {
            "dimensions": int(np.isfinite(self.scale).sum()),
            "dead_dimensions": self.dead,
            "scale": [float(x) if np.isfinite(x) else None for x in self.scale],
        }


def balance(
    items: ColumnNorms, users: ColumnNorms, tolerance: float = BALANCED_CONDITION
) -> Balance:
    """The balancing gauge D_j² = ‖U_:j‖ / ‖V_:j‖ of the towers (U users, V items) and its
    condition number; balanced when it is at most ``tolerance`` and no dimension is zero in one
    tower only (no gauge makes a zero column match a non-zero one, and weight decay would have
    zeroed both). Dimensions zero in both towers move no score and no cosine: left out."""
    log_items, log_users = items.log_norms(), users.log_norms()
    dead_items, dead_users = _dead_columns(log_items), _dead_columns(log_users)
    live = ~dead_items & ~dead_users
    log_scale = np.full(items.d, np.nan)
    log_scale[live] = (log_users[live] - log_items[live]) / 2
    one_sided = bool((dead_items ^ dead_users).any())
    live_condition = log_std = None
    if live.any():
        # A live column lies within DEAD_COLUMN and √d of its tower's rms norm: the log scales
        # span at most log(√d / DEAD_COLUMN), and nothing here overflows.
        live_condition = float(np.exp(np.ptp(log_scale[live])))
        log_std = float(np.std(log_scale[live]))
    condition = None if one_sided else live_condition
    scale = np.exp(log_scale)
    return Balance(
        condition=condition,
        live_condition=live_condition,
        log_scale_std=log_std,
        balanced=condition is not None and condition <= tolerance,
        tolerance=tolerance,
        scale=scale,
        rows={"items": items.rows, "users": users.rows},
        dead={
            "items": np.flatnonzero(dead_items & ~dead_users).tolist(),
            "users": np.flatnonzero(dead_users & ~dead_items).tolist(),
            "both": np.flatnonzero(dead_items & dead_users).tolist(),
        },
    )


def _dead_columns(log_norms: Floats) -> npt.NDArray[np.bool_]:
    """Columns whose norm is at most DEAD_COLUMN times the root-mean-square column norm."""
    top = float(log_norms.max())
    if top == -np.inf:  # no row, or every row zero
        return np.ones(len(log_norms), dtype=bool)
    log_rms = top + 0.5 * float(np.log(np.mean(np.exp(2 * (log_norms - top)))))
    return np.asarray(log_norms <= log_rms + np.log(DEAD_COLUMN))


# Item similarity in the users' metric -------------------------------------------------------


@dataclass
class Gram:
    """AᵀA of the finite, non-zero rows of one tower, streamed: ``matrix`` times 4^``exponent``,
    the rows scaled by one power of two (exact) so that their squares neither overflow nor
    underflow."""

    d: int
    rows: int = 0
    exponent: int | None = None
    matrix: Floats = field(init=False)

    def __post_init__(self) -> None:
        self.matrix = np.zeros((self.d, self.d))

    def fold(self, block: Floats) -> None:
        """Add the rows of ``block`` (finite, float64)."""
        if not len(block):
            return
        _, largest = np.frexp(np.abs(block).max())
        exponent = int(largest) if self.exponent is None else max(self.exponent, int(largest))
        if self.exponent is not None and exponent != self.exponent:
            self.matrix = np.ldexp(self.matrix, 2 * (self.exponent - exponent))
        scaled = np.ldexp(block, -exponent)
        self.matrix += scaled.T @ scaled
        self.exponent = exponent
        self.rows += len(block)

    def root(self) -> Floats:
        """(AᵀA)^½, the symmetric square root (negative rounding in the spectrum clipped)."""
        values, vectors = np.linalg.eigh((self.matrix + self.matrix.T) / 2)
        root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
        return np.asarray(np.ldexp(root, self.exponent or 0), dtype=np.float64)


def tower_pass(
    blocks: Iterable[npt.NDArray[np.floating[Any]]], d: int, dtype: np.dtype[Any]
) -> tuple[ColumnNorms, Gram]:
    """One streaming pass over a tower's (rows, d) blocks: its column norms and its Gram matrix
    over the finite, non-zero rows."""
    norms, gram = ColumnNorms(d), Gram(d)
    for block in blocks:
        wide = block.astype(np.float64)
        clean = wide[clean_mask(wide, dtype)]
        norms.fold(clean)
        gram.fold(clean)
    return norms, gram


@dataclass(frozen=True)
class UsersMetric:
    """How far plain cosine between items agrees with cosine in the users' metric.

    With both towers a dot-product model identifies one item similarity: the inner product
    bᵢ (AᵀA) bⱼᵀ of the users' metric (and its cosine), unchanged by every A·M⁻ᵀ, B·M, the
    diagonal gauges included; it is the cosine of the rows B·(AᵀA)^½."""

    overlap_at_k: float | None  # cosine neighbours of the item sample vs the users' metric
    k: int
    sample: int
    rank: int  # numerical rank of AᵀA: below d, the users do not see every item direction

    def to_dict(self) -> dict[str, Any]:
        return field_values(self)


def users_metric(items: Floats, gram: Gram, k: int) -> UsersMetric:
    """Overlap@k of the cosine neighbours among ``items`` (a sample of item rows, finite and
    non-zero) with their cosine neighbours in the users' metric (tie-aware, as the gauges')."""
    metric = (gram.matrix + gram.matrix.T) / 2
    values = np.linalg.eigvalsh(metric)
    floor = max(values.max(), 0.0) * metric.shape[0] * np.finfo(np.float64).eps
    rank = int((values > floor).sum())
    # Items the users cannot tell from zero (in the null space of AᵀA) have no direction there.
    seen = np.einsum("ij,jk,ik->i", items, metric, items) > floor * np.einsum(
        "ij,ij->i", items, items
    )
    items = items[seen]
    if len(items) < 3:
        return UsersMetric(None, 0, len(items), rank)
    search = _Neighbours(items, k)
    return UsersMetric(search.overlap(items @ metric @ items.T), search.k, len(items), rank)

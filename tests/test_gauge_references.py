"""The numbers `embaudit gauge` decides on, against float64 brute force: the overlap of every
random gauge of the curve, the worst gauge's overlap, and the change of the predictions.

Ties are exact here (quantized rows, duplicated rows) and a column is constant, as in
tests/test_neighbor_references.py, whose bounds (ties counted in float64 only, or within
float32 rounding) the reported overlaps must lie between.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from embaudit.gauge import (
    CONDITION_LADDER,
    TIE,
    GaugeSettings,
    _Neighbours,
    audit_side,
    prediction_change,
)
from tests.test_neighbor_references import overlap_bounds

Floats = npt.NDArray[np.float64]
K = 5


def cosine_scores(rows: Floats) -> Floats:
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    scores = unit @ unit.T
    np.fill_diagonal(scores, -np.inf)
    return scores


def gauge_overlap_bounds(rows: Floats, scale: Floats, k: int) -> tuple[float, float]:
    low, high = overlap_bounds(cosine_scores(rows), cosine_scores(rows * scale), k)
    return float(low.mean()), float(high.mean())


def tower(kind: str, m: int = 150, d: int = 8, seed: int = 0) -> Floats:
    rng = np.random.default_rng(seed)
    if kind == "quantized":
        rows = rng.integers(-2, 3, size=(m, d)).astype(np.float64)
        rows[~rows.any(axis=1), 0] = 1.0
        rows[5::5] = rows[: len(rows[5::5])]  # duplicated rows
        return rows
    rows = rng.standard_normal((m, d)) * np.exp(rng.normal(0.0, 1.0, size=d))
    rows[:, 2] = 0.7  # a constant column
    return rows


SETTINGS = GaugeSettings(k=K, seed=3, max_condition=10.0, sample=150, draws=4, budget=120)


@pytest.mark.parametrize("kind", ["quantized", "continuous"])
def test_every_random_gauge_of_the_curve_equals_brute_force(kind):
    rows = tower(kind)
    result, _ = audit_side("items", rows, SETTINGS)
    # The same stream audit_side draws from: the curve comes first.
    rng = np.random.default_rng(np.random.SeedSequence([SETTINGS.seed, 0]))
    conditions = [c for c in CONDITION_LADDER if c <= SETTINGS.max_condition]
    assert [point["condition"] for point in result.overlap_by_condition] == conditions
    for point in result.overlap_by_condition:
        half = np.log(point["condition"]) / 2
        bounds = [
            gauge_overlap_bounds(rows, np.exp(rng.uniform(-half, half, size=8)), K)
            for _ in range(SETTINGS.draws)
        ]
        low, high = np.mean([b[0] for b in bounds]), np.mean([b[1] for b in bounds])
        assert low - 1e-12 <= point["overlap_at_k"] <= high + 1e-12, point
        assert point["draws"] == SETTINGS.draws


@pytest.mark.parametrize("kind", ["quantized", "continuous"])
def test_the_worst_gauge_overlap_equals_brute_force_and_stays_in_the_box(kind):
    rows = tower(kind)
    result, worst = audit_side("items", rows, SETTINGS)
    low, high = gauge_overlap_bounds(rows, worst, K)
    assert low - 1e-12 <= result.worst_overlap_at_k <= high + 1e-12
    np.testing.assert_array_equal(result.worst_scale, worst)
    # A vertex of the box: every entry at one of the two bounds C^±1/2.
    bound = np.sqrt(SETTINGS.max_condition)
    assert np.allclose(np.abs(np.log(worst)), np.log(bound), rtol=1e-12)
    assert result.worst_condition == pytest.approx(worst.max() / worst.min(), rel=1e-15)
    assert result.worst_condition <= SETTINGS.max_condition * (1 + 1e-12)
    assert result.worst_overlap_at_k <= min(p["overlap_at_k"] for p in result.overlap_by_condition)
    assert 0 < result.evaluations <= SETTINGS.budget
    assert (result.k, result.sample, result.side) == (K, len(rows), "items")


def test_the_worst_gauge_search_beats_its_best_starting_vertex():
    """Greedy flips only ever lower the overlap: the result is at most the best of the random
    vertices it starts from (which, with one vertex and no flips, it equals)."""
    rows = tower("continuous", m=120, d=10, seed=4)
    start_only = GaugeSettings(k=K, seed=1, max_condition=30.0, sample=120, vertices=1, budget=1)
    searched = GaugeSettings(k=K, seed=1, max_condition=30.0, sample=120, vertices=1, budget=200)
    first, first_scale = audit_side("users", rows, start_only)
    best, _ = audit_side("users", rows, searched)
    assert first.evaluations == 1 and best.evaluations > 1
    low, high = gauge_overlap_bounds(rows, first_scale, K)
    assert low - 1e-12 <= first.worst_overlap_at_k <= high + 1e-12
    assert best.worst_overlap_at_k < first.worst_overlap_at_k


def test_the_two_sides_draw_from_their_own_streams():
    rows = tower("continuous")
    items, _ = audit_side("items", rows, SETTINGS)
    users, _ = audit_side("users", rows, SETTINGS)
    again, _ = audit_side("items", rows, SETTINGS)
    assert items.overlap_by_condition == again.overlap_by_condition
    assert items.overlap_by_condition != users.overlap_by_condition


def test_the_neighbour_overlap_is_tie_aware():
    """Duplicated rows tie exactly: a gauge that keeps every cosine (a common factor) must keep
    an overlap of 1 whatever order the ties come out in, and a plain set overlap need not."""
    rows = tower("quantized", m=200, d=6, seed=5)
    search = _Neighbours(rows, K)
    assert search.overlap(search.gram(np.full(6, 4.0))) == 1.0
    # Reversing the rows reverses how exact ties are broken: still 1 against the original.
    reversed_rows = rows[::-1]
    flipped = _Neighbours(reversed_rows, K)
    top = flipped._top(flipped.base_cosines)[::-1]
    back = len(rows) - 1 - top  # neighbours of the reversed rows, in original row numbers
    plain = np.mean(
        [len(np.intersect1d(a, b)) / K for a, b in zip(back, search.base_top, strict=True)]
    )
    assert plain < 1.0  # ties do resolve differently
    kept = np.take_along_axis(search.base_cosines, back, axis=1) >= (search.base_kth[:, None] - TIE)
    assert kept.all()


def test_overlap_counts_a_moved_neighbour_as_lost():
    rows = tower("continuous", m=100, d=6, seed=6)
    search = _Neighbours(rows, K)
    scale = np.exp(np.random.default_rng(7).normal(0.0, 1.5, size=6))
    low, high = gauge_overlap_bounds(rows, scale, K)
    value = search.overlap(search.gram(scale**2))
    assert low - 1e-12 <= value <= high + 1e-12
    assert value < 0.9


def test_k_is_capped_at_the_other_rows():
    rows = tower("continuous", m=4, d=3)
    search = _Neighbours(rows, 10)
    assert search.k == 3
    assert search.overlap(search.gram(np.array([1.0, 7.0, 0.2]))) == 1.0  # every other row


# The predictions -----------------------------------------------------------------------------


def test_prediction_change_is_the_largest_relative_change_of_the_paired_scores():
    rng = np.random.default_rng(8)
    items = rng.standard_normal((300, 12)) * 3.0
    users = rng.standard_normal((250, 12)) / 7.0  # fewer users: the first 250 pairs
    scale = np.exp(rng.uniform(-np.log(1000.0) / 2, np.log(1000.0) / 2, size=12))
    expected = max(
        abs(float(np.dot(u / scale, i * scale)) - float(np.dot(u, i)))
        / (np.linalg.norm(u) * np.linalg.norm(i))
        for u, i in zip(users, items[:250], strict=True)
    )
    change = prediction_change(items, users, scale)
    assert 0 < change < 1e-14  # float64 rounding of an exact identity: measured, not assumed
    assert change == pytest.approx(expected, rel=0.5)


def test_a_score_changing_transform_is_flagged():
    """A gauge whose float64 application destroys the scores (the user column divided below the
    smallest subnormal) changes what it should keep: the change must show, not be assumed 0."""
    items = np.ones((3, 2))
    users = np.array([[1.75 * 2.0**-60, 0.0], [2.0**-61, 0.0], [1.0, 1.0]])
    scale = np.array([2.0**1020, 1.0])  # u / D rounds to 0 for the first two users
    assert prediction_change(items, users, scale) == pytest.approx(2**-0.5, rel=1e-12)
    assert prediction_change(items, users, np.array([2.0**10, 1.0])) == 0.0  # powers of two
    assert prediction_change(items[2:], users[2:], scale) == 0.0  # the third pair is exact


def test_a_zero_pair_does_not_divide_by_zero():
    items = np.array([[0.0, 0.0], [1.0, 2.0]])
    users = np.array([[1.0, 1.0], [3.0, -1.0]])
    assert prediction_change(items, users, np.array([3.0, 0.25])) < 1e-15


def selected_overlap(search: _Neighbours, gram: Floats) -> float:
    """The overlap as first written: the k nearest under ``gram`` selected whole (argpartition
    of every cosine), each looked up among the exported cosines."""
    norms = np.sqrt(np.diag(gram))
    cosines = gram / np.outer(norms, norms)
    np.fill_diagonal(cosines, -np.inf)
    top = np.argpartition(-cosines, search.k - 1, axis=1)[:, : search.k]
    kept = np.take_along_axis(search.base_cosines, top, axis=1) >= search.base_kth[:, None] - TIE
    return float(kept.mean())


@pytest.mark.parametrize(
    ("kind", "m"), [("quantized", 150), ("continuous", 150), ("continuous", 700)]
)
def test_an_evaluation_equals_selecting_the_k_nearest_whole(kind, m):
    """The blocked evaluation (the k-th largest from groups of columns, the exported neighbours
    looked up) and the rank-one flip equal selecting every row's k nearest and looking them up,
    on towers with exact ties (quantized, duplicated rows) and without."""
    rows = tower(kind, m=m)
    search = _Neighbours(rows, K)
    rng = np.random.default_rng(11)
    for condition in (1.5, 10.0, 1000.0):
        scale = np.sqrt(condition) ** rng.choice([-1.0, 1.0], size=rows.shape[1])
        gram = search.gram(scale**2)
        assert search.overlap(gram) == selected_overlap(search, gram)
        for dim in range(rows.shape[1]):
            delta = 1.0 / scale[dim] ** 2 - scale[dim] ** 2
            column = rows[:, dim]
            flipped = gram + delta * np.outer(column, column)
            assert search.flip_overlap(gram, column, delta) == selected_overlap(search, flipped)


def test_the_search_equals_the_search_that_selects_whole_rows(monkeypatch):
    """audit_side with the fast evaluation reports what it reported with the slow one: the same
    curve, the same worst gauge, the same evaluations."""
    rows = tower("continuous", m=400, d=12, seed=8)
    settings = GaugeSettings(k=K, seed=4, max_condition=30.0, sample=400, draws=3, budget=200)
    fast, fast_scale = audit_side("items", rows, settings)
    monkeypatch.setattr(_Neighbours, "overlap", selected_overlap)
    monkeypatch.setattr(
        _Neighbours,
        "flip_overlap",
        lambda search, gram, column, delta: selected_overlap(
            search, gram + delta * np.outer(column, column)
        ),
    )
    slow, slow_scale = audit_side("items", rows, settings)
    assert fast.to_dict() == slow.to_dict()
    assert np.array_equal(fast_scale, slow_scale)

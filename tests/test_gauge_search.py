"""The pieces of `embaudit gauge` that decide its figures, each against a value computed another
way: the worst-gauge search's budget and acceptance rule (on a scripted search, so every
evaluation is counted), the dead columns against their definition, the balance's tolerance at
its boundary, column norms across the float64 range, and the neighbour sets against a sort."""

from __future__ import annotations

import numpy as np
import pytest

from embaudit.gauge import (
    DEAD_COLUMN,
    ColumnNorms,
    GaugeSettings,
    _dead_columns,
    _Neighbours,
    _vertex,
    _worst_gauge,
    balance,
)


class Scripted:
    """A search whose overlaps come from ``script`` (called with the evaluation count and the
    gram), counting its evaluations."""

    def __init__(self, d: int, script) -> None:
        self.rows = np.random.default_rng(0).standard_normal((20, d))
        self.script, self.calls = script, 0

    def gram(self, weights: np.ndarray) -> np.ndarray:
        return (self.rows * weights) @ self.rows.T

    def overlap(self, gram: np.ndarray) -> float:
        self.calls += 1
        return float(self.script(self.calls, gram))

    def flip_overlap(self, gram: np.ndarray, column: np.ndarray, delta: float) -> float:
        return self.overlap(gram + delta * np.outer(column, column))


def _settings(vertices: int, budget: int) -> GaugeSettings:
    return GaugeSettings(
        k=3, seed=0, max_condition=100.0, sample=20, vertices=vertices, budget=budget
    )


def test_a_search_that_always_improves_spends_exactly_its_budget():
    search = Scripted(4, lambda call, _: 1.0 - call / 1000)  # every evaluation is better
    scale, best, evaluations = _worst_gauge(search, _settings(5, 23), np.random.default_rng(1))
    assert evaluations == search.calls == 23  # flips go on past the first sweep, to the budget
    assert best == pytest.approx(1.0 - 23 / 1000)
    assert set(np.round(scale, 9)) <= {0.1, 10.0}  # a vertex of the box, C = 100


def test_a_search_that_never_improves_stops_after_one_sweep_of_flips():
    search = Scripted(4, lambda call, _: 0.9 if call == 2 else 0.95)  # only vertex 2 is better
    rng = np.random.default_rng(1)
    scale, best, evaluations = _worst_gauge(search, _settings(5, 600), rng)
    assert evaluations == search.calls == 5 + 4  # 5 vertices, one flip per dimension
    assert best == 0.9
    # The best vertex is the second one drawn, and no flip replaced it.
    replay = np.random.default_rng(1)
    _vertex(4, 100.0, replay)
    assert np.array_equal(scale, _vertex(4, 100.0, replay))


def test_equal_overlaps_keep_the_first_scale_found():
    # Every gauge gives overlap 1: the exported gauge (all ones) is kept, not a vertex.
    search = Scripted(3, lambda call, _: 1.0)
    scale, best, evaluations = _worst_gauge(search, _settings(4, 600), np.random.default_rng(2))
    assert np.array_equal(scale, np.ones(3)) and best == 1.0
    assert evaluations == 4 + 3
    # Ties among vertices: the first of the equal ones stays.
    search = Scripted(3, lambda call, _: 0.5 if call >= 2 else 0.8)
    rng = np.random.default_rng(3)
    scale, best, _ = _worst_gauge(search, _settings(4, 600), rng)
    replay = np.random.default_rng(3)
    _vertex(3, 100.0, replay)
    assert best == 0.5 and np.array_equal(scale, _vertex(3, 100.0, replay))


def test_a_budget_below_the_vertices_is_not_exceeded():
    search = Scripted(3, lambda call, _: 1.0 - call / 100)
    _, _, evaluations = _worst_gauge(search, _settings(8, 8), np.random.default_rng(4))
    assert evaluations == search.calls == 8


def test_dead_columns_follow_their_definition():
    # 4.5e-6 lies between 1e-6 times the root mean square (4.61) and 1e-6 times other means of
    # the norms (the cubic one's 4.35, the arithmetic 2.5): the definition decides it.
    norms = np.array([3.0, 4.0, 2e-6, 5e-6, 0.0, 1.0, 12.0, 4.5e-6])
    rms = np.sqrt(np.mean(norms**2))
    with np.errstate(divide="ignore"):
        dead = _dead_columns(np.log(norms))
    assert dead.dtype == bool
    assert dead.tolist() == (norms <= DEAD_COLUMN * rms).tolist()
    assert dead.tolist() == [False, False, True, False, True, False, False, True]
    # A scale-free rule: the same columns at any magnitude (the log-sum-exp keeps it exact).
    for factor in (1e-200, 1e200):
        with np.errstate(divide="ignore"):
            assert _dead_columns(np.log(norms * factor)).tolist() == dead.tolist()
    # No row, or every row zero: every column is dead.
    assert _dead_columns(np.full(3, -np.inf)).tolist() == [True, True, True]
    assert _dead_columns(np.full(3, -np.inf)).dtype == bool


def _norms(x: np.ndarray) -> ColumnNorms:
    folded = ColumnNorms(x.shape[1])
    for block in np.array_split(x, 3):
        folded.fold(block)
    return folded


def test_column_norms_are_exact_across_the_float64_range():
    # One column near 1e-200 and one near 1e200 in the same blocks: their squares under- and
    # overflow unless each column is scaled by its own power of two.
    rng = np.random.default_rng(5)
    base = rng.uniform(1.0, 2.0, size=(30, 3))
    x = base * np.array([1e-200, 1.0, 1e200])
    expected = np.log(np.sqrt((base**2).sum(axis=0))) + np.log([1e-200, 1.0, 1e200])
    assert _norms(x).log_norms() == pytest.approx(expected, rel=1e-13)


def test_the_balance_tolerance_is_inclusive_and_one_sided_zero_columns_are_named():
    rng = np.random.default_rng(6)
    users = rng.standard_normal((50, 4))
    items = rng.standard_normal((60, 4)) * np.array([1.0, 1.5, 1.0, 1.0])
    measured = balance(_norms(items), _norms(users))
    assert measured.condition is not None and measured.condition > 1.0
    assert balance(_norms(items), _norms(users), tolerance=measured.condition).balanced
    assert not balance(_norms(items), _norms(users), tolerance=measured.condition * 0.999).balanced
    # A column zero in the items only: no gauge balances it.
    items[:, 2] = 0.0
    one_sided = balance(_norms(items), _norms(users), tolerance=1e9)
    assert one_sided.condition is None and not one_sided.balanced
    assert one_sided.dead == {"items": [2], "users": [], "both": []}
    users[:, 2] = 0.0
    both = balance(_norms(items), _norms(users), tolerance=1e9)
    assert both.dead == {"items": [], "users": [], "both": [2]} and both.balanced


def test_towers_with_no_live_column_are_not_balanced():
    zero = np.zeros((10, 3))
    measured = balance(_norms(zero), _norms(zero))
    assert measured.condition is None and measured.live_condition is None
    assert measured.log_scale_std is None and not measured.balanced
    assert measured.dead["both"] == [0, 1, 2]


@pytest.mark.parametrize("k", [1, 2, 5, 9])
def test_neighbour_sets_equal_a_full_sort(k):
    rng = np.random.default_rng(k)
    rows = rng.standard_normal((400, 6))  # long rows: a partial partition is not a sort
    search = _Neighbours(rows, k)
    for weights in (np.ones(6), rng.uniform(0.1, 10.0, 6)):
        cosines = search._cosines(search.gram(weights))
        by_sort = np.argsort(-cosines, axis=1, kind="stable")[:, :k]
        top = search._top(cosines)
        assert [set(row) for row in top] == [set(row) for row in by_sort]
    kth = np.sort(search.base_cosines, axis=1)[:, -k]
    assert np.array_equal(search.base_kth, kth)

"""The science pinned to closed forms and published reference values (docs/science.md)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import squareform
from scipy.stats import skew

from embaudit import geometry
from embaudit.geometry import (
    cosine_knn_graph,
    covariance_eigenvalues,
    effective_rank,
    hubness_from_neighbors,
    isoscore,
    knn_from_distances,
    kth_largest,
    largest_columns,
    rogue_contributions,
    skewness,
    unit_rows,
)


@pytest.mark.parametrize(("k", "d"), [(1, 5), (2, 3), (3, 3), (4, 10), (7, 7), (50, 384)])
def test_isoscore_of_k_equal_eigenvalues_is_k_minus_1_over_d_minus_1(k, d):
    eigenvalues = np.zeros(d)
    eigenvalues[:k] = 2.5
    assert isoscore(eigenvalues) == pytest.approx((k - 1) / (d - 1), abs=1e-12)


def test_isoscore_of_points_on_a_line_disc_and_ball():
    rng = np.random.default_rng(0)
    t = rng.standard_normal(5000)
    line = np.outer(t, [1.0, 2.0, -1.0])
    assert isoscore(covariance_eigenvalues(line)) == pytest.approx(0.0, abs=1e-9)
    # The disc and the ball: exact covariances, so the closed forms hold exactly.
    angle = np.linspace(0, 2 * np.pi, 4096, endpoint=False)
    disc = np.stack([np.cos(angle), np.sin(angle), np.zeros_like(angle)], axis=1)
    assert isoscore(covariance_eigenvalues(disc)) == pytest.approx(0.5, abs=1e-9)
    axes = np.concatenate([np.eye(3), -np.eye(3)])
    assert isoscore(covariance_eigenvalues(axes)) == pytest.approx(1.0, abs=1e-12)


def test_isoscore_of_an_isotropic_gaussian_approaches_one_with_the_sample_size():
    rng = np.random.default_rng(1)
    small = isoscore(covariance_eigenvalues(rng.standard_normal((200, 50))))
    large = isoscore(covariance_eigenvalues(rng.standard_normal((20000, 50))))
    assert small < large
    assert large > 0.95


def test_covariance_eigenvalues_match_numpy_in_both_branches():
    rng = np.random.default_rng(2)
    for shape in ((300, 8), (5, 12)):
        x = rng.standard_normal(shape)
        expected = np.sort(np.clip(np.linalg.eigvalsh(np.cov(x.T, bias=True)), 0, None))[::-1]
        np.testing.assert_allclose(covariance_eigenvalues(x), expected, atol=1e-12)


def test_effective_rank_of_equal_singular_values_is_their_count():
    assert effective_rank([3.0, 3.0, 3.0, 0.0]) == pytest.approx(3.0)
    assert effective_rank([1.0, 0.0, 0.0]) == pytest.approx(1.0)


def test_hubness_reference_from_the_design():
    distances = squareform([0.2, 0.1, 0.8, 0.4, 0.3, 0.5, 0.7, 1.0, 0.6, 0.9])
    neighbors = knn_from_distances(distances, k=2)
    hubness = hubness_from_neighbors(neighbors, m=5)
    assert hubness.k_occurrence.tolist() == [4, 3, 3, 0, 0]
    assert hubness.skewness == pytest.approx(-0.2561204163, abs=1e-10)
    assert hubness.antihub_rate == pytest.approx(0.4)
    assert hubness.robin_hood == pytest.approx((2 + 1 + 1 + 2 + 2) / 20)


def test_skewness_matches_scipy():
    values = np.random.default_rng(3).exponential(size=101)
    assert skewness(values) == pytest.approx(skew(values), rel=1e-12)


def test_rogue_contributions_sum_to_the_mean_cosine_of_distinct_pairs():
    x = np.random.default_rng(4).standard_normal((40, 6)) + np.array([3, 0, 0, 0, 0, 1])
    unit = unit_rows(x)
    cc = rogue_contributions(unit.sum(axis=0), (unit**2).sum(axis=0), len(unit))
    cosines = unit @ unit.T
    mean_cos = (cosines.sum() - np.trace(cosines)) / (40 * 39)
    assert cc.sum() == pytest.approx(mean_cos, rel=1e-12)
    pairwise_dim0 = np.outer(unit[:, 0], unit[:, 0])
    assert cc[0] == pytest.approx(
        (pairwise_dim0.sum() - np.trace(pairwise_dim0)) / (40 * 39), rel=1e-12
    )
    assert cc.argmax() == 0


def _rows_with_cosines(cosines: np.ndarray, d: int, rng: np.random.Generator) -> np.ndarray:
    """Unit rows whose cosine with e_0 is ``cosines`` (float64)."""
    other = rng.standard_normal((len(cosines), d))
    other[:, 0] = 0
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    rows = np.sqrt(1 - cosines**2)[:, None] * other
    rows[:, 0] = cosines
    return rows


def test_knn_graph_ranks_rows_within_float32_rounding_by_their_exact_cosines():
    """Six rows whose cosines with the first row differ by 1e-9 (one float32 value: a product
    in float32 cannot tell them apart, and which three it keeps depends on how the processor's
    kernel rounds) and forty far ones: the graph keeps the three of largest exact cosine,
    nearest first."""
    rng = np.random.default_rng(0)
    d = 64
    near = 0.5 + np.arange(6) * 1e-9
    cosines = np.concatenate([near[::2], near[1::2], rng.uniform(-0.2, 0.2, 40)])[::-1]
    first = np.zeros((1, d))
    first[0, 0] = 1.0
    unit = np.vstack([first, _rows_with_cosines(cosines, d, rng)])
    exact = unit[1:] @ unit[0]
    expected = 1 + np.argsort(-exact, kind="stable")[:3]
    single = unit.astype(np.float32)
    scores = single[0] @ single.T
    assert len(np.unique(scores[expected])) == 1  # float32 sees one value
    scores[0] = -np.inf
    assert set(np.argpartition(-scores, 2)[:3]) != set(expected)  # and keeps other rows
    np.testing.assert_array_equal(cosine_knn_graph(unit, 3)[0], expected)
    extended = cosine_knn_graph(unit, 3, following=True)[0]
    np.testing.assert_array_equal(extended, 1 + np.argsort(-exact, kind="stable")[:4])


@pytest.mark.parametrize("tie_columns", [None, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_largest_columns_are_a_full_sorts_first_columns_ties_by_column(
    dtype, tie_columns, monkeypatch
):
    """Each row's largest values, largest first and equal ones by column, as a full sort by
    (value, column) gives them: with many exact ties (values rounded to one decimal), -inf
    entries (a graph's own row), few columns or every column, the ties found in one run of
    columns or in many."""
    if tie_columns is not None:
        monkeypatch.setattr(geometry, "TIE_COLUMNS", tie_columns)
    rng = np.random.default_rng(7)
    for trial in range(120):
        r, m = int(rng.integers(1, 30)), int(rng.integers(1, 400))
        values = rng.standard_normal((r, m)).astype(dtype)
        if trial % 2:
            values = np.round(values, 1)
        values[rng.random((r, m)) < 0.05] = -np.inf
        for count in {1, int(rng.integers(1, m + 1)), m}:
            expected = np.array([np.lexsort((np.arange(m), -row))[:count] for row in values])
            np.testing.assert_array_equal(largest_columns(values, count), expected)
            kth = np.sort(values, axis=1)[:, m - count]
            np.testing.assert_array_equal(kth_largest(values, count), kth)


def test_largest_columns_refuse_nan_and_a_count_beyond_the_columns():
    values = np.arange(12.0).reshape(2, 6)
    np.testing.assert_array_equal(largest_columns(values, 2), [[5, 4], [5, 4]])
    with pytest.raises(ValueError, match="7: between 1 and the 6 columns"):
        largest_columns(values, 7)
    values[1, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        largest_columns(values, 3)


def test_knn_graph_lists_identical_rows_by_row():
    """Copies of a row tie exactly with it, in float32 and in float64: the graph lists them
    lower row first, whatever the block of rows they are searched in."""
    rng = np.random.default_rng(3)
    unit = unit_rows(rng.standard_normal((600, 12)))
    copies = [5, 130, 333, 540, 599]
    unit[copies] = unit[0]
    graph = cosine_knn_graph(unit, 4, block=64)
    np.testing.assert_array_equal(graph[0], copies[:4])
    np.testing.assert_array_equal(graph[599], [0, *copies[:3]])


def test_largest_columns_of_rows_that_all_tie_are_their_first_columns():
    """A file of one repeated row makes every cosine equal: the first columns, with no sort of
    the whole tie."""
    values = np.full((512, 50_000), 0.5, dtype=np.float32)
    values[np.arange(512), np.arange(512)] = -np.inf  # each row's own
    chosen = largest_columns(values, 15)
    expected = np.arange(16)[None, :].repeat(512, axis=0)
    expected = np.array([[c for c in row if c != r][:15] for r, row in enumerate(expected)])
    np.testing.assert_array_equal(chosen, expected)


def test_the_graph_of_one_row_has_no_neighbours():
    one = unit_rows(np.ones((1, 4)))
    assert cosine_knn_graph(one, 10).shape == (1, 0)
    assert cosine_knn_graph(one, 10, following=True).shape == (1, 0)
    two = unit_rows(np.eye(2, 4))
    np.testing.assert_array_equal(cosine_knn_graph(two, 10), [[1], [0]])


@pytest.mark.parametrize(("m", "k"), [(60_000, 15), (20_001, 1), (9_999, 100)])
def test_kth_largest_of_long_rows_is_a_sorts(m, k):
    """Long rows take groups of more columns (about sqrt(m / k) / 2): the same k-th value."""
    rng = np.random.default_rng(m)
    values = rng.standard_normal((4, m)).astype(np.float32)
    values[:, rng.integers(0, m, 50)] = -np.inf
    values[1] = np.round(values[1], 1)  # ties
    np.testing.assert_array_equal(kth_largest(values, k), np.sort(values, axis=1)[:, m - k])

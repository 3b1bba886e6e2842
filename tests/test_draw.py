"""One function draws the rows of every sample: uniform, clean, in draw order."""

from __future__ import annotations

import numpy as np
import pytest

from embaudit.draw import PERMUTED_ROWS, draw_clean_items, draw_clean_rows, draw_positions
from embaudit.measurement.gauges import gauge_scales
from embaudit.sources import open_source


def _rows(n: int, d: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def test_every_clean_row_is_drawn_equally_often_wherever_it_sits():
    # 2,064 rows, 2,000 wanted: a draw that sorts and keeps the lowest positions would never
    # return the last rows of the file.
    x = _rows(2064)
    source = open_source(x)
    counts = np.zeros(len(x))
    seeds = 100
    for seed in range(seeds):
        rows, values, left_out = draw_clean_rows(source, 2000, np.random.default_rng(seed))
        assert len(rows) == 2000 and left_out == 0
        np.testing.assert_array_equal(values, x[rows])
        counts[rows] += 1
    expected = seeds * 2000 / 2064
    tail = counts[-64:].mean()
    # Binomial(100, 0.969) averaged over 64 rows: standard error about 0.22.
    assert tail == pytest.approx(expected, abs=1.5)
    assert counts.min() >= expected - 12


def test_rows_come_in_draw_order_not_file_order():
    rows, _, _ = draw_clean_rows(open_source(_rows(500)), 100, np.random.default_rng(1))
    assert len(set(rows.tolist())) == 100
    assert np.any(np.diff(rows) < 0)


def test_a_mostly_broken_file_still_fills_the_sample_with_clean_rows():
    x = _rows(4000)
    broken = np.random.default_rng(2).random(len(x)) < 0.95
    x[broken] = np.nan
    x[np.flatnonzero(broken)[::2]] = 0.0  # half of them zero rows instead
    rows, values, left_out = draw_clean_rows(open_source(x), 150, np.random.default_rng(3))
    assert len(rows) == 150
    assert not broken[rows].any()
    assert np.isfinite(values).all() and left_out > 0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_rows_drawn_as_stored_are_the_float64_draw_in_the_sources_dtype(dtype):
    # Past a first read too short for the clean rows (nine in ten broken): the same rows, in
    # the same order, as stored; a broken row is broken in either.
    x = _rows(3000).astype(dtype)
    broken = np.random.default_rng(4).random(len(x)) < 0.9
    x[broken] = np.inf
    source = open_source(x)
    wide = draw_clean_rows(source, 200, np.random.default_rng(5))
    stored = draw_clean_rows(source, 200, np.random.default_rng(5), stored=True)
    assert stored[1].dtype == dtype and wide[1].dtype == np.float64
    np.testing.assert_array_equal(stored[0], wide[0])
    np.testing.assert_array_equal(stored[1].astype(np.float64), wide[1])
    assert stored[2] == wide[2] > 0 and not broken[stored[0]].any()


def test_a_sample_larger_than_the_clean_rows_returns_all_of_them():
    x = _rows(50)
    x[[3, 7]] = np.nan
    rows, _, left_out = draw_clean_rows(open_source(x), 1000, np.random.default_rng(0))
    assert sorted(rows.tolist()) == [r for r in range(50) if r not in (3, 7)]
    assert left_out == 2


def test_matched_items_are_clean_in_every_source():
    old, new = _rows(300, seed=1), _rows(300, d=6, seed=2)
    old[[10, 20]] = np.nan
    new[[30]] = 0.0
    new_rows = np.arange(300)[::-1].copy()  # item i is row 299 - i of the new file
    draw = draw_clean_items(
        1000,
        np.random.default_rng(4),
        [open_source(old), open_source(new)],
        [np.arange(300), new_rows],
    )
    assert set(draw.items.tolist()) == set(range(300)) - {10, 20, 299 - 30}
    np.testing.assert_array_equal(draw.values[0], old[draw.items])
    np.testing.assert_array_equal(draw.values[1], new[new_rows[draw.items]])


@pytest.mark.parametrize("broken_share", [0.0, 0.05, 0.3])
def test_reading_the_draw_in_two_steps_gives_the_rows_of_reading_it_whole(broken_share):
    # The first count + count // 8 + 16 drawn rows are read, the rest of the draw only when
    # too few of those are clean; the rows kept are the first clean ones of the whole draw.
    x = _rows(5000, seed=4)
    broken = np.random.default_rng(5).random(len(x)) < broken_share
    x[broken] = np.nan
    source = open_source(x)
    reads = []

    def take(asked, positions):
        reads.append(len(positions))
        return asked.take(positions)

    rows, values, left_out = draw_clean_rows(source, 400, np.random.default_rng(6), take)
    whole = np.random.default_rng(6).permutation(len(x))[: 2 * 400 + 16]
    expected = whole[~broken[whole]][:400]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(values, x[expected])
    head = 400 + 400 // 8 + 16
    if broken[whole[:head]].sum() <= head - 400:
        assert reads == [head] and left_out == broken[whole[:head]].sum()
    else:
        assert reads == [head, 2 * 400 + 16 - head] and left_out == broken[whole].sum()


@pytest.mark.parametrize("n", [5_000, PERMUTED_ROWS + 1, 10**12])
def test_a_draw_is_the_first_rows_of_any_larger_draw(n):
    """Draws nest (a round that grows a sample adds rows to it), below and above the rows
    where a permutation gives way to a stream of positions; and they are distinct."""
    small = draw_positions(n, 300, np.random.default_rng(7))
    large = draw_positions(n, 3_000, np.random.default_rng(7))
    np.testing.assert_array_equal(small, large[:300])
    assert len(np.unique(large)) == len(large) == min(n, 3_000)
    assert large.min() >= 0 and large.max() < n
    assert not np.array_equal(large, np.sort(large))  # in draw order


def test_a_clean_draw_nests_past_the_broken_rows():
    x = _rows(PERMUTED_ROWS + 5_000)
    x[::3] = np.nan  # a third of the rows broken: larger draws follow
    source = open_source(x)
    few, _, _ = draw_clean_rows(source, 100, np.random.default_rng(3))
    many, values, _ = draw_clean_rows(source, 5_000, np.random.default_rng(3))
    np.testing.assert_array_equal(few, many[:100])
    assert np.isfinite(values).all() and (many % 3 != 0).all()


def test_positions_beyond_a_permutation_are_uniform():
    """The stream of positions (n above PERMUTED_ROWS): each tenth of the rows gets a tenth of
    40,000 draws, within a chi-square test's 0.1 % level (27.9 at 9 degrees of freedom)."""
    n = 10 * PERMUTED_ROWS + 3
    drawn = np.concatenate(
        [draw_positions(n, 2_000, np.random.default_rng(seed)) for seed in range(20)]
    )
    counts = np.bincount(drawn * 10 // n, minlength=10)
    expected = len(drawn) / 10
    assert ((counts - expected) ** 2 / expected).sum() < 27.9


def test_gauge_draws_nest_level_by_level():
    """The r-th draw of a level is the same whatever the number of draws or of other levels."""
    three = gauge_scales(16, (0.1, 0.5), 3, seed=4)
    six = gauge_scales(16, (0.1, 0.5), 6, seed=4)
    for level in (0.1, 0.5):
        first = [scale for s, scale in three if s == level]
        more = [scale for s, scale in six if s == level]
        assert len(first) == 3 and len(more) == 6
        for a, b in zip(first, more[:3], strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(six[0][1], six[6][1])  # levels draw from their own streams


def test_a_draw_of_most_rows_is_a_permutation_whatever_n():
    """Above PERMUTED_ROWS, a draw of more than half the rows takes a permutation (a stream of
    positions would repeat itself for long): every row once, in random order, nested within."""
    n = PERMUTED_ROWS + 1_000
    every = draw_positions(n, n, np.random.default_rng(2))
    most = draw_positions(n, n - 10, np.random.default_rng(2))
    np.testing.assert_array_equal(np.sort(every), np.arange(n))
    np.testing.assert_array_equal(most, every[: n - 10])

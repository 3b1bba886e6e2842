"""One function draws the rows of every sample: uniform, clean, in draw order."""

from __future__ import annotations

import numpy as np
import pytest

from embaudit.draw import draw_clean_items, draw_clean_rows
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
    whole = np.random.default_rng(6).choice(len(x), size=2 * 400 + 16, replace=False)
    expected = whole[~broken[whole]][:400]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(values, x[expected])
    head = 400 + 400 // 8 + 16
    if broken[whole[:head]].sum() <= head - 400:
        assert reads == [head] and left_out == broken[whole[:head]].sum()
    else:
        assert reads == [head, 2 * 400 + 16 - head] and left_out == broken[whole].sum()

"""The streaming pass: norms, moments and duplicates against independent references."""

from __future__ import annotations

import itertools
import math
from dataclasses import astuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import embaudit.stats
from embaudit.sources import open_source
from embaudit.stats import CleanRows, Moments, row_norms, scan


@settings(max_examples=200, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 9)),
        elements=st.floats(allow_nan=False, allow_infinity=False, width=64),
    )
)
def test_row_norms_match_math_hypot_over_the_whole_float64_range(values):
    expected = [math.hypot(*row) for row in values.tolist()]
    got = row_norms(values)
    for g, e in zip(got, expected, strict=True):
        if e > 0.999 * np.finfo(np.float64).max:  # at the edge of the range: rounding may overflow
            assert math.isinf(g) or g == pytest.approx(e, rel=1e-14)
        else:
            assert g == pytest.approx(e, rel=1e-14, abs=0)


@pytest.mark.parametrize(
    ("dtype", "magnitude"),
    [(np.float16, 65000.0), (np.float32, 1e30), (np.float32, 1e-30), (np.float32, 3e38)],
)
def test_norms_of_extreme_float16_and_float32_values_are_finite_and_exact(dtype, magnitude):
    rng = np.random.default_rng(0)
    values = (rng.uniform(0.5, 1.0, size=(20, 384)) * magnitude).astype(dtype)
    got = row_norms(values)
    expected = [math.hypot(*row) for row in values.astype(np.float64).tolist()]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-14)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(2, 60),
    st.integers(1, 5),
    st.lists(st.integers(1, 59), max_size=5),
    st.integers(0, 2**32 - 1),
)
def test_moments_merged_over_any_split_equal_the_two_pass_reference(n, d, cuts, seed):
    data = np.random.default_rng(seed).standard_normal((n, d)) * 10 + 3
    bounds = sorted({0, n, *(c for c in cuts if c < n)})
    merged = Moments.empty(d)
    for start, stop in itertools.pairwise(bounds):
        merged = merged.merge(Moments.of(data[start:stop]))
    assert merged.count == n
    np.testing.assert_allclose(merged.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.std, data.std(axis=0), rtol=1e-10)


def _scan(values, chunk_rows=None):
    return scan(open_source(np.asarray(values)), chunk_rows=chunk_rows)


def test_scan_excludes_non_finite_and_zero_rows_and_counts_them():
    values = np.ones((10, 3), dtype=np.float32)
    values[2, 1] = np.nan
    values[4, 0] = -np.inf
    values[6] = 0.0
    values[7] = np.float32(1e-45)  # subnormal only: no representable direction
    stats = _scan(values, chunk_rows=3)
    assert stats.non_finite.rows == [2, 4] and (stats.nan_rows, stats.inf_rows) == (1, 1)
    assert stats.zero.rows == [6, 7]
    assert stats.n_clean == 6
    assert np.isnan(stats.norms[[2, 4]]).all()
    assert stats.moments.count == 6


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_a_chunk_folded_in_blocks_gives_the_statistics_of_its_clean_rows(monkeypatch, dtype):
    # Blocks of 3 rows (FOLD_BYTES): the defects, a duplicate pair and the chunk's end fall in
    # different blocks; every statistic and the consumers' rows against numpy on the clean rows.
    monkeypatch.setattr(embaudit.stats.fold, "FOLD_BYTES", 3 * 8 * 5)
    rng = np.random.default_rng(11)
    values = (rng.standard_normal((40, 5)) * rng.lognormal(size=(40, 1))).astype(dtype)
    values[1, 2], values[9, 0], values[17] = np.nan, np.inf, 0.0
    values[31] = values[4]
    source = open_source(values)
    seen = []

    def keep(rows):  # the rows are the consumer's for the call only: kept, they are copied
        seen.append(CleanRows(*(np.copy(part) for part in astuple(rows)[:4])))

    embaudit.stats.fold_fragment(source, source.fragments()[0], consumers=[[keep]], chunk_rows=15)
    stats = scan(source, chunk_rows=23)
    clean = np.setdiff1d(np.arange(40), [1, 9, 17])
    wide = values.astype(np.float64)
    np.testing.assert_array_equal(np.concatenate([rows.positions for rows in seen]), clean)
    for rows in seen:
        assert rows.values.dtype == dtype
        np.testing.assert_array_equal(rows.values, values[rows.positions])
        reference = wide[rows.positions] / np.linalg.norm(wide[rows.positions], axis=1)[:, None]
        np.testing.assert_allclose(rows.unit, reference, rtol=1e-6)
    assert stats.non_finite.rows == [1, 9] and stats.nan_rows == 1 and stats.zero.rows == [17]
    np.testing.assert_allclose(stats.norms[clean], np.linalg.norm(wide[clean], axis=1), rtol=1e-14)
    assert np.isnan(stats.norms[[1, 9]]).all() and stats.norms[17] == 0
    np.testing.assert_allclose(stats.moments.mean, wide[clean].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.moments.std, wide[clean].std(axis=0), rtol=1e-12)
    unit = wide[clean] / np.linalg.norm(wide[clean], axis=1)[:, None]
    np.testing.assert_allclose(stats.unit_sum, unit.sum(axis=0), rtol=1e-12, atol=1e-12)
    assert [group.rows for group in stats.duplicate_groups] == [[4, 31]]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_a_pass_given_the_norms_sees_the_rows_a_pass_that_computes_them_sees(
    tmp_path, monkeypatch, dtype
):
    # A later pass (no statistics) given the first pass's norms, fragment by fragment of a
    # directory of shards cut across them: the same clean rows, norms and unit rows to the last
    # bit, and no row widened to compute a norm (the fold's norms would raise).
    from embaudit.sources import shards

    monkeypatch.setattr(shards, "FRAGMENT_BYTES", 23 * 7 * np.dtype(dtype).itemsize)
    rng = np.random.default_rng(12)
    values = (rng.standard_normal((60, 7)) * rng.lognormal(0, 2, size=(60, 1))).astype(dtype)
    values[3, 1], values[20, 0], values[21], values[59] = np.nan, -np.inf, 0.0, 0.0
    for index, (start, stop) in enumerate(((0, 25), (25, 26), (26, 60))):
        np.save(tmp_path / f"part_{index}.npy", values[start:stop])
    source = open_source(tmp_path)
    assert len(source.fragments()) == 3 and source.fragments()[1].start == 23
    stats = scan(source, chunk_rows=17)

    def pass_rows(given):
        seen = []

        def keep(rows):
            seen.append(CleanRows(*(np.copy(part) for part in astuple(rows)[:4])))

        for fragment in source.fragments():
            embaudit.stats.fold_fragment(
                source,
                fragment,
                consumers=[[keep]],
                chunk_rows=13,
                statistics=False,
                norms=None if given is None else given[fragment.start : fragment.stop],
            )
        columns = zip(*(astuple(rows)[:4] for rows in seen), strict=True)
        return [np.concatenate(parts) for parts in columns]

    computed = pass_rows(None)
    monkeypatch.setattr(embaudit.stats.fold, "_usable_norms", None)  # not called again
    given = pass_rows(stats.norms)
    assert [len(part) for part in computed] == [56, 56, 56, 56]
    for mine, theirs in zip(given, computed, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(ValueError, match="without statistics"):
        embaudit.stats.fold_fragment(source, source.fragments()[0], norms=stats.norms[:23])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_unit_rows_are_within_a_float32_unit_of_the_exact_quotient(dtype):
    # Against float64 x / |x| rounded once: within about one float32 unit of each value,
    # including float32 rows whose norm leaves no normal float32 reciprocal (beyond 2**126)
    # and rows of the smallest normal norm.
    info = np.finfo(dtype)
    rng = np.random.default_rng(13)
    values = rng.standard_normal((200, 33)).astype(dtype)
    values[0] = info.max / 8  # a norm of about sqrt(33) * max / 8: no normal reciprocal
    values[1] = info.tiny  # the smallest normal coordinates
    values[2] = 0
    values[2, 5] = -info.max
    values[3] *= np.asarray(2.0**-20, dtype)
    norms = row_norms(values)
    exact = values.astype(np.float64) / norms[:, None]
    unit = embaudit.stats.rows.scaled_to_unit(values, norms, np.empty((200, 33), np.float32))
    assert np.isfinite(unit).all()
    scale = np.maximum(np.abs(exact), np.finfo(np.float32).tiny)
    assert np.max(np.abs(unit - exact) / scale) <= 2.0**-23 * (1 + 2.0**-20)  # two roundings
    np.testing.assert_allclose(np.linalg.norm(unit.astype(np.float64), axis=1), 1.0, rtol=1e-6)


def test_row_lists_are_capped_but_counts_are_complete():
    values = np.ones((100, 2))
    values[::4] = np.nan
    stats = _scan(values)
    assert stats.non_finite.count == 25
    assert stats.non_finite.rows == list(range(0, 80, 4))
    assert stats.non_finite.to_dict()["truncated"] is True


def test_duplicates_are_exact_and_span_chunks():
    rng = np.random.default_rng(3)
    values = rng.standard_normal((50, 4))
    values[[10, 30, 49]] = values[3]
    values[20] = values[7]
    values[21] = np.nextafter(values[7], np.inf)  # one ulp away: not a duplicate
    stats = _scan(values, chunk_rows=8)
    assert stats.duplicate_rows == 4
    assert stats.duplicate_group_count == 2
    assert [group.rows for group in stats.duplicate_groups] == [[3, 10, 30, 49], [7, 20]]


def test_negative_zero_equals_zero_for_duplicates():
    values = np.array([[0.0, 1.0], [-0.0, 1.0], [1.0, 0.0]])
    assert _scan(values).duplicate_rows == 1


def _low_precision(kind: str) -> np.ndarray:
    """4,000 rows of values of lower precision than their dtype: trailing zero bits."""
    rng = np.random.default_rng(5)
    normal = rng.standard_normal((4000, 16))
    if kind == "float32 as float64":  # 29 zero bits
        return normal.astype(np.float32).astype(np.float64)
    if kind == "int8 as float32":  # 16 or more
        return rng.integers(-128, 128, size=(4000, 16)).astype(np.float32)
    if kind == "bfloat16 as float32":  # 16
        bits = normal.astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
        return bits.view(np.float32)
    return normal.astype(np.float16).astype(np.float32)  # float16 as float32: 13


@pytest.mark.parametrize(
    "kind", ["float32 as float64", "int8 as float32", "bfloat16 as float32", "float16 as float32"]
)
def test_the_row_hash_keeps_its_low_bits_on_values_of_lower_precision(kind):
    # Words with trailing zero bits times weights sum to a multiple of 2^zeros: a float32 value
    # stored as float64, hashed as its word, left every hash a multiple of 2^29 (35 bits:
    # collisions among 1M rows). Each word's halves are folded together first.
    rows = _low_precision(kind)
    words = rows.view(np.dtype(f"u{rows.itemsize}"))
    former = np.einsum("ij,j->i", words, embaudit.stats._hash_weights(16), dtype=np.uint64)
    assert (former % 2**13 == 0).all()  # the former hash, for contrast
    hashes = embaudit.stats._hash_rows(rows)
    assert len(np.unique(hashes % 2**16)) > 3000  # 4,000 draws of 65,536 values: ~3,890
    assert len(np.unique(hashes)) == len(np.unique(rows, axis=0))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_the_row_hash_keeps_its_low_bits_whichever_values_differ(dtype):
    # Rows equal but for two values, which every word position takes in turn: each word's own
    # bits reach the low bits of the hash. (Read as 64-bit lanes, a float16 row's fourth value
    # of each lane reached only bits 40 and up: 300,000 such rows collided 2,533 times.)
    rng = np.random.default_rng(8)
    for column in range(4):
        rows = np.tile(rng.standard_normal(8).astype(dtype), (20_000, 1))
        rows[:, column] = rng.standard_normal(20_000).astype(dtype)
        rows[:, column + 4] = rng.standard_normal(20_000).astype(dtype)
        distinct = len(np.unique(rows, axis=0))
        hashes = embaudit.stats._hash_rows(rows)
        assert len(np.unique(hashes)) == distinct
        assert len(np.unique(hashes % 2**16)) > 0.7 * min(distinct, 2**16)


def test_the_row_hash_does_not_depend_on_the_memory_layout():
    rows = np.random.default_rng(7).standard_normal((30, 5))
    expected = embaudit.stats._hash_rows(rows)
    np.testing.assert_array_equal(embaudit.stats._hash_rows(np.asfortranarray(rows)), expected)
    np.testing.assert_array_equal(embaudit.stats._hash_rows(rows[:, ::-1][:, ::-1]), expected)


@pytest.mark.parametrize("d", [9, 16])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_row_hash_is_equal_for_equal_rows_and_moves_with_any_one_bit(dtype, d):
    rows = np.random.default_rng(6).standard_normal((50, d)).astype(dtype)
    rows[3, 4] = 0.0
    rows[10] = rows[3]
    rows[11] = rows[3]
    rows[11, 4] = -0.0  # equal to 0.0: the same row for EA003
    rows[12] = rows[3]
    rows[12, -1] = np.nextafter(rows[3, -1], dtype(np.inf))  # the last value's lowest bit
    rows[13] = rows[3]
    rows[13, 0] = -rows[3, 0]  # the first value's sign bit
    hashes = embaudit.stats._hash_rows(rows)
    assert hashes.dtype == np.uint64
    assert hashes[10] == hashes[3] == hashes[11]
    # A value changed changes its folded word (the fold is one-to-one), and the sum by
    # weight x change: never 0 mod 2^64, the weights being odd.
    assert hashes[12] != hashes[3] and hashes[13] != hashes[3]
    assert len(np.unique(np.delete(hashes, [10, 11]))) == len(rows) - 2


def test_duplicate_grouping_does_not_trust_the_hash(monkeypatch):
    def colliding(values, scratch=None):
        return np.zeros(len(values), dtype=np.uint64)

    monkeypatch.setattr(embaudit.stats.fold, "_hash_rows", colliding)
    values = np.random.default_rng(4).standard_normal((30, 3))
    values[25] = values[2]
    stats = _scan(values, chunk_rows=7)
    assert stats.duplicate_rows == 1
    assert [group.rows for group in stats.duplicate_groups] == [[2, 25]]


def test_non_finite_rows_are_not_duplicates():
    values = np.full((4, 2), np.nan)
    values[3] = [1.0, 2.0]
    assert _scan(values).duplicate_rows == 0

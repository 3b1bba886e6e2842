"""Beyond SKETCH_ROWS rows the norms are summarized by a KLL sketch and the duplicates found by a
hash-partitioned shuffle: checked against numpy on every norm and a brute-force search of the
identical rows. (The shuffle on the Ray cluster: tests/test_engines.py.)"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import embaudit
from embaudit.errors import IncompleteError
from embaudit.sources import Fragment, open_source
from embaudit.sources.base import FRAGMENT_BYTES, MAX_FRAGMENTS, fragment_bytes
from embaudit.stats import (
    NormSummary,
    PartMerge,
    finish,
    fold_fragment,
    ks_statistic,
    norm_summary,
    scan,
)
from embaudit.stats.norm_summary import RANK_ERROR, NormParts
from embaudit.stats.scan_stats import Duplicates
from embaudit.stats.shuffle import MIN_SHARE_BYTES, bucket_count, reduce_bucket, split_part


def _rows(n: int = 6000, d: int = 8, seed: int = 0) -> np.ndarray:
    """Rows with norms spread over two orders of magnitude, a NaN row, zero rows and identical
    rows (three groups, across the whole range)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.lognormal(0.0, 1.0, size=(n, 1))
    x = x.astype(np.float32)
    x[3, 1] = np.nan
    x[[10, 4000]] = 0.0
    x[[100, 2999, 5999]] = x[50]
    x[4500] = x[7]
    x[1234] = x[4321]
    return x


def _brute_force_duplicates(x: np.ndarray) -> list[list[int]]:
    """Groups of identical clean rows, by comparing every row's bytes."""
    groups: dict[bytes, list[int]] = {}
    for row, values in enumerate(x):
        if np.isfinite(values).all() and np.linalg.norm(values) > 0:
            groups.setdefault((values + np.float32(0)).tobytes(), []).append(row)
    return sorted((rows for rows in groups.values() if len(rows) > 1), key=lambda rows: rows[0])


def _rank(norms: np.ndarray, value: float) -> tuple[float, float]:
    """The range of normalized ranks of ``value`` among ``norms``."""
    ordered = np.sort(norms)
    return (
        np.searchsorted(ordered, value, side="left") / len(ordered),
        np.searchsorted(ordered, value, side="right") / len(ordered),
    )


def test_sketched_quantiles_lie_within_the_stated_rank_error() -> None:
    norms = np.random.default_rng(1).lognormal(0.0, 1.5, size=200_000)
    parts = [NormParts.empty() for _ in range(4)]
    for part, block in zip(parts, np.array_split(norms, 4), strict=True):
        for piece in np.array_split(block, 7):
            part.add(piece)
    merged = NormParts.empty()
    for part in parts:
        merged.merge(part)
    sketch, exact = NormSummary(parts=merged), NormSummary(exact=norms)
    assert sketch.count == len(norms) and sketch.rank_error == RANK_ERROR
    assert (sketch.min, sketch.max) == (norms.min(), norms.max())
    assert sketch.mean == pytest.approx(norms.mean(), rel=1e-12)
    assert sketch.cv == pytest.approx(norms.std() / norms.mean(), rel=1e-10)
    for level, value in zip([0.01, 0.5, 0.99], sketch.quantiles([0.01, 0.5, 0.99]), strict=True):
        low, high = _rank(norms, value)
        assert low - RANK_ERROR <= level <= high + RANK_ERROR
    edges, counts = sketch.histogram(20)
    exact_counts, _ = np.histogram(norms, bins=edges)
    assert sum(counts) == pytest.approx(len(norms), abs=20)
    assert np.abs(np.cumsum(counts) - np.cumsum(exact_counts)).max() <= RANK_ERROR * len(norms)
    shifted = NormSummary(exact=norms * 1.05)
    assert ks_statistic(sketch, shifted) == pytest.approx(
        ks_statistic(exact, shifted), abs=2 * RANK_ERROR
    )


def test_the_summary_pickles_with_its_sketch() -> None:
    import pickle

    part = NormParts.empty()
    part.add(np.arange(1.0, 1001.0))
    back = pickle.loads(pickle.dumps(part))
    assert NormSummary(parts=back).quantiles([0.5]) == NormSummary(parts=part).quantiles([0.5])


@pytest.mark.parametrize("buckets", [1, 2, 16])
def test_the_shuffle_finds_the_duplicates_of_a_brute_force_search(
    tmp_path: Path, buckets: int
) -> None:
    x = _rows()
    path = tmp_path / "rows.npy"
    np.save(path, x)
    source = open_source(path)
    cuts = [0, 1000, 2500, 2501, 6000]
    parts = [
        fold_fragment(source, Fragment(i, start, stop, None), sketch=True)
        for i, (start, stop) in enumerate(itertools.pairwise(cuts))
    ]
    split = [split_part(part, buckets) for part in parts if part is not None]
    assert all(part is not None and part.hashes is None for part in parts)
    found = Duplicates.merged(
        reduce_bucket(source, *[arrays[b] for arrays in split]) for b in range(buckets)
    )
    expected = _brute_force_duplicates(x)
    assert found.groups == expected
    assert found.count == len(expected) == 3
    assert found.rows == sum(len(group) - 1 for group in expected)


def test_bucket_count_grows_with_the_rows_and_keeps_shares_out_of_the_driver() -> None:
    assert bucket_count(1000) == 1
    assert bucket_count(100_000_000) == 8  # 1.6 GB of entries in 256 MiB buckets
    assert bucket_count(5_850_000_000) == 512
    # LAION-5B (768-d float16) in fragments of fragment_bytes: each fragment's share of a
    # bucket at least 128 KiB, so that Ray keeps it in the object store, not in the driver.
    total = 5_850_000_000 * 768 * 2
    fragments = -(-total // fragment_bytes(total))
    assert fragments == MAX_FRAGMENTS
    buckets = bucket_count(5_850_000_000, fragments)
    assert buckets == 256
    assert 5_850_000_000 * 16 / fragments / buckets >= MIN_SHARE_BYTES
    assert fragment_bytes(10**9) == FRAGMENT_BYTES  # under 512 GB: the fragments of before


def _without_quantiles(report: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(report.to_dict()))
    out.pop("timings")
    for check in out["checks"]:
        if check["code"] == "EA101":
            for key in ("p1", "p50", "p99", "histogram", "quantile_rank_error"):
                check["metrics"].pop(key, None)
            check.pop("value")
            check.pop("message")
    return out


def test_a_sketched_audit_reports_the_exact_counts_and_extremes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _rows()
    path = tmp_path / "rows.npy"
    np.save(path, x)
    exact = embaudit.audit(path, seed=1)
    monkeypatch.setattr(norm_summary, "SKETCH_ROWS", 1000)
    sketched = embaudit.audit(path, seed=1)
    found = {check.code: check for check in sketched.checks}
    norms = found["EA101"].metrics
    assert norms["quantile_rank_error"] == RANK_ERROR
    clean = np.linalg.norm(x.astype(np.float64), axis=1)
    clean = clean[np.isfinite(clean) & (clean > 0)]
    for level, key in ((0.01, "p1"), (0.5, "p50"), (0.99, "p99")):
        low, high = _rank(clean, norms[key])
        assert low - RANK_ERROR <= level <= high + RANK_ERROR
    a, b = _without_quantiles(exact), _without_quantiles(sketched)
    assert a.keys() == b.keys()
    for one, other in zip(a["checks"], b["checks"], strict=True):
        assert _close(one, other), one["code"]
    listed = [group["rows"] for group in found["EA003"].metrics["examples"]]
    assert listed == _brute_force_duplicates(x)


def _close(one: Any, other: Any) -> bool:
    """Equal, floats to 1e-9 relative (a mean merged from moments, not summed at once)."""
    if isinstance(one, dict):
        return one.keys() == other.keys() and all(_close(one[k], other[k]) for k in one)
    if isinstance(one, list):
        return len(one) == len(other) and all(_close(a, b) for a, b in zip(one, other, strict=True))
    if isinstance(one, float) and isinstance(other, float):
        return one == pytest.approx(other, rel=1e-9)
    return bool(one == other)


def test_scan_lists_the_first_rows_and_counts_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _rows()
    x[1000:1050] = np.nan  # 51 non-finite rows: the list stops at 20
    path = tmp_path / "rows.npy"
    np.save(path, x)
    monkeypatch.setattr(norm_summary, "SKETCH_ROWS", 1000)
    stats = scan(open_source(path), chunk_rows=300)
    assert stats.non_finite.count == 51 and stats.non_finite.rows == [3, *range(1000, 1019)]
    assert stats.zero.count == 2 and stats.zero.rows == [10, 4000]
    assert stats.norms is None and stats.n_clean == len(x) - 53


@pytest.mark.parametrize("sketch", [False, True])
def test_parts_merged_as_they_arrive_equal_the_merge_of_all(tmp_path: Path, sketch: bool) -> None:
    """Parts folded in row order as they come, whatever order they come in: the statistics of
    the merge of all of them at the end, and the early ones wait, not the others."""
    x = _rows()
    path = tmp_path / "rows.npy"
    np.save(path, x)
    source = open_source(path)
    cuts = [0, 1000, 2500, 2501, 6000]
    fragments = [Fragment(i, a, b, None) for i, (a, b) in enumerate(itertools.pairwise(cuts))]

    def parts() -> list[Any]:
        return [fold_fragment(source, fragment, sketch=sketch) for fragment in fragments]

    merge = PartMerge(source)
    for part in reversed(parts()[1:]):
        merge.add(part)
        assert merge.covered == 0
    merge.add(parts()[0])
    assert merge.covered == len(x) and not merge.waiting
    arriving, at_once = finish(source, merge), finish(source, parts())
    assert arriving.moments.mean.tolist() == at_once.moments.mean.tolist()  # to the last bit
    assert arriving.unit_sq_sum.tolist() == at_once.unit_sq_sum.tolist()
    assert arriving.duplicate_groups == at_once.duplicate_groups
    assert arriving.norm_summary.mean == at_once.norm_summary.mean
    incomplete = PartMerge(source)
    incomplete.add(parts()[0])
    with pytest.raises(IncompleteError, match="only 1,000 of 6,000 rows were read"):
        finish(source, incomplete)


def test_clean_rows_among_the_gauge_rows_without_the_clean_flags(tmp_path: Path) -> None:
    """When the engine kept no clean flags (its shuffle took them), the clean gauge rows are
    counted from the rows themselves: the count of the flags."""
    from embaudit.measurement.steps import _clean_among

    x = _rows()
    x[20000 % len(x)] = np.inf
    path = tmp_path / "rows.npy"
    np.save(path, x)
    source = open_source(path)
    exact = scan(source)
    part = fold_fragment(source, Fragment(0, 0, len(x), None), sketch=True)
    assert part is not None
    split_part(part, 1)
    shuffled = finish(source, [part], duplicates=Duplicates(0, 0, []))
    assert shuffled.clean is None and exact.clean is not None
    positions = np.arange(0, len(x), 3)
    expected = int(exact.clean[positions].sum())
    assert expected < len(positions)  # the NaN, Inf or zero rows among them
    assert _clean_among(shuffled, source, positions) == expected

"""The diagnostics and the verdict: identities, invariances and behaviours (docs/science.md)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embaudit import Level, Status, audit
from embaudit.checks.gauges import s50
from embaudit.geometry import PAIR_BLOCK, pair_cosines, unit_rows
from embaudit.knn import Block, NeighborSearch
from embaudit.measurement.gauges import canonical_scale
from embaudit.measurement.neighbors import Neighbors
from embaudit.measurement.sample import cosine_change as _cosine_change
from embaudit.measurement.sampling import Sampling
from embaudit.measurement.steps import measure
from embaudit.sources import open_source
from tests.exports import encoder_like, exact_cosine_top, set_overlap
from tests.test_knn import clean_rows

SMALL = Sampling(queries=120, gauge_queries=40, gauge_draws=2, sample=600, pairs=3000)
PROPERTY = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _clustered(n=600, d=24, clusters=8, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    return centres[rng.integers(clusters, size=n)] + spread * rng.standard_normal((n, d))


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# Identities ------------------------------------------------------------------------------------


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.integers(2, 40))
def test_on_unit_vectors_one_minus_cosine_is_half_the_squared_distance(seed, d):
    unit = unit_rows(np.random.default_rng(seed).standard_normal((50, d)))
    first, second = np.arange(49), np.arange(1, 50)
    cosines = pair_cosines(unit, first, second)
    squared = ((unit[first] - unit[second]) ** 2).sum(axis=1)
    np.testing.assert_allclose(1 - cosines, squared / 2, atol=1e-14)


def test_pair_cosines_in_blocks_are_each_pairs_own_sum():
    rng = np.random.default_rng(7)
    unit = unit_rows(rng.standard_normal((300, 33)))
    count = 3 * PAIR_BLOCK + 7  # three whole blocks and a partial one
    first, second = rng.integers(300, size=count), rng.integers(300, size=count)
    cosines = pair_cosines(unit, first, second)
    assert cosines.shape == (count,) and cosines.dtype == np.float64
    whole = np.einsum("ij,ij->i", unit[first], unit[second])  # every pair's rows at once
    np.testing.assert_array_equal(cosines, whole)
    direct = [float(unit[i] @ unit[j]) for i, j in zip(first, second, strict=True)]
    np.testing.assert_allclose(cosines, direct, rtol=0, atol=1e-15)
    assert pair_cosines(unit[:, :0], first[:0], second[:0]).shape == (0,)


def test_cosine_change_is_the_mean_shift_of_each_rescaled_pair():
    rng = np.random.default_rng(8)
    rows = rng.standard_normal((200, 16)) * rng.lognormal(size=(200, 1))
    count = PAIR_BLOCK + 90
    first, second = rng.integers(200, size=count), rng.integers(200, size=count)
    unit = unit_rows(rows)
    sample = SimpleNamespace(
        rows=rows, pairs=(first, second), pair_cosines=pair_cosines(unit, first, second)
    )
    gauges = [
        (0.5, rng.lognormal(0, 0.5, 16)),
        (0.5, rng.lognormal(0, 0.5, 16)),
        (1.0, rng.lognormal(0, 1, 16)),
    ]
    change = _cosine_change(sample, gauges)

    def shift(scale):  # cos under D from the rescaled rows themselves, pair by pair
        scaled = rows * scale
        return np.mean(
            [
                abs(
                    scaled[i] @ scaled[j] / np.linalg.norm(scaled[i]) / np.linalg.norm(scaled[j])
                    - rows[i] @ rows[j] / np.linalg.norm(rows[i]) / np.linalg.norm(rows[j])
                )
                for i, j in zip(first, second, strict=True)
            ]
        )

    assert set(change) == {0.5, 1.0}
    assert change[0.5] == pytest.approx((shift(gauges[0][1]) + shift(gauges[1][1])) / 2, rel=1e-12)
    assert change[1.0] == pytest.approx(shift(gauges[2][1]), rel=1e-12)
    assert change[1.0] > change[0.5] > 0


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.integers(2, 48), st.sampled_from([np.float32, np.float64]))
def test_ea401_is_exactly_one_on_unit_vectors(seed, d, dtype):
    x = _unit(np.random.default_rng(seed).standard_normal((300, d))).astype(dtype)
    report = audit(x, sampling=SMALL, seed=seed % 1000)
    assert report.check("EA401").value == 1.0
    assert report.check("EA402").value == 1.0


def test_ea401_is_one_on_normalized_data_with_duplicate_rows():
    x = _unit(_clustered(n=200)).astype(np.float32)
    x = np.concatenate([x, x[:100], x[:50]])  # many exact ties
    report = audit(x, sampling=SMALL)
    assert report.check("EA003").status == Status.WARN
    assert report.check("EA401").value == 1.0
    assert report.check("EA402").value == 1.0


@PROPERTY
@given(st.integers(0, 2**32 - 1))
def test_rescaling_rows_never_changes_the_cosine_checks(seed):
    rng = np.random.default_rng(seed)
    x = _clustered(n=400, d=16, seed=seed % 1000)
    scaled = x * rng.lognormal(0.0, 1.0, size=(400, 1))
    a, b = audit(x, sampling=SMALL), audit(scaled, sampling=SMALL)
    for code in ("EA201", "EA204"):
        assert a.check(code).value == pytest.approx(b.check(code).value, abs=1e-9)
    for code in ("EA301", "EA501"):
        assert a.check(code).value == pytest.approx(b.check(code).value, abs=2e-3)


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.floats(0.1, 2.0))
def test_the_canonical_gauge_is_unchanged_by_any_diagonal_rescaling(seed, s):
    rng = np.random.default_rng(seed)
    x = _clustered(n=300, d=12, seed=seed % 1000)
    scale = np.exp(rng.normal(0.0, s, size=12))
    query_rows = np.arange(0, 300, 5)
    # Equal up to one overall factor, which cosine does not see.
    np.testing.assert_allclose(
        unit_rows((x * scale) * canonical_scale((x * scale)[query_rows])),
        unit_rows(x * canonical_scale(x[query_rows])),
        rtol=1e-12,
    )
    lists = []
    for data in (x, x * scale):
        block = Block("canonical", len(query_rows), canonical_scale(data[query_rows]))
        search = NeighborSearch(data[query_rows], query_rows, 5, [Block("base", 60), block])
        search.add(clean_rows(data))
        lists.append(search.list_for("cosine", 1))
    # Either search scores the other's list the same way up to rounding.
    overlap = search.overlap(lists[0], lists[1])
    assert np.all(overlap == 1.0)


def _canonical_reference(
    x: np.ndarray, query_rows: np.ndarray, scale_rows: np.ndarray, k: int
) -> float:
    """EA302 by brute force in float64: cosine kNN of X against those of X with every live
    column divided by its std on the scale rows and every dead column (std at most 1e-6 of
    the rms coordinate) left out."""
    rows = x[scale_rows]
    std = rows.std(axis=0)
    rms = np.sqrt(np.mean(np.sum(rows**2, axis=1)) / x.shape[1])
    live = std > 1e-6 * rms
    standardized = x[:, live] / std[live]
    return set_overlap(
        exact_cosine_top(x, query_rows, k), exact_cosine_top(standardized, query_rows, k)
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("normalize", [True, False])
def test_the_canonical_gauge_leaves_constant_columns_out(dtype, normalize):
    # A real encoder export has a few constant dimensions; their computed std is rounding noise
    # (about 1e-17 of the value in float64), which must not become a standardizing scale.
    x = encoder_like(3000, 64, dead=(3, 17, 40), seed=4, normalize=normalize).astype(dtype)
    report = audit(x, trained_with="dot", seed=1, sampling=Sampling(queries=200, gauge_queries=200))
    neighbors = report_neighbors(x, seed=1)
    reference = _canonical_reference(
        x.astype(np.float64), neighbors.query_rows, neighbors.canonical_rows, 10
    )
    ea302 = report.check("EA302").value
    assert reference > 0.5  # far from the collapse that a rounding-noise scale causes
    # Exact kNN on both sides: only float32 near-ties may differ, one neighbour in a thousand.
    assert ea302 == pytest.approx(reference, abs=1e-3)
    assert report.check("EA302").metrics["dead_dimensions"] == [3, 17, 40]


def report_neighbors(x: np.ndarray, seed: int) -> Neighbors:
    measured = measure(
        open_source(x),
        k=10,
        seed=seed,
        sampling=Sampling(queries=200, gauge_queries=200),
    )
    assert measured.neighbors is not None
    return measured.neighbors


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.integers(1, 10))
def test_a_diagonal_gauge_leaves_every_product_unchanged(seed, d):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((7, d)), rng.standard_normal((5, d))
    gauge = np.exp(rng.normal(0, 1, size=d))
    np.testing.assert_allclose((a * gauge) @ (b / gauge).T, a @ b.T, rtol=1e-10, atol=1e-12)


# Checks ----------------------------------------------------------------------------------------


def test_a_common_offset_is_caught_by_mean_cosine_direction_and_spectrum():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((800, 32)) + 6.0 * np.ones(32)  # every vector shares an offset
    report = audit(x, sampling=SMALL, trained_with="cosine")
    assert report.check("EA201").status == Status.FAIL  # mean cosine > 0.9: collapse
    assert report.check("EA202").status == Status.WARN
    assert report.verdict.level == Level.UNTRUSTWORTHY
    assert any("Centre the vectors" in r for r in report.verdict.recommendations)


def test_mean_cosine_is_exact_over_all_distinct_pairs():
    x = np.random.default_rng(2).standard_normal((150, 5)) + np.array([1.0, 0, 0, 0, 0])
    unit = _unit(x)
    cos = unit @ unit.T
    expected = (cos.sum() - np.trace(cos)) / (150 * 149)
    assert audit(x, sampling=SMALL).check("EA201").value == pytest.approx(expected, rel=1e-12)


def test_a_dominant_component_warns_in_the_spectrum():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1000, 16))
    x[:, 0] *= 10
    check = audit(x, sampling=SMALL).check("EA203")
    assert check.status == Status.WARN
    assert check.metrics["top_share"] > 0.5
    assert check.metrics["reference"]["top_share"] < 0.2


def test_rogue_dimensions_are_named():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1000, 32))
    x[:, [5, 17, 29]] += rng.normal(8.0, 3.0, size=(1000, 3))
    check = audit(x, sampling=SMALL).check("EA204")
    assert check.status in (Status.WARN, Status.FAIL)
    assert sorted(check.metrics["dimensions"]) == [5, 17, 29]
    assert check.value > 0.5


def test_scale_spread_sees_rescaled_columns():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1000, 32))
    even = audit(x, sampling=SMALL).check("EA205")
    uneven = audit(x * np.exp(rng.normal(0, 1.5, size=32)), sampling=SMALL).check("EA205")
    assert even.status == Status.PASS and even.value < 0.1
    assert uneven.status == Status.WARN and uneven.value > 1.0


def test_gauge_checks_fail_for_a_dot_model_and_do_not_matter_for_a_cosine_model(monkeypatch):
    # Measured once: a check at its threshold would be measured again for the dot model only.
    monkeypatch.setattr("embaudit.pipelines.check.MAX_ROUNDS", 0)
    x = _clustered(spread=0.8) * np.exp(np.random.default_rng(6).normal(0, 1.0, size=24))
    dot = audit(x, sampling=SMALL, trained_with="dot")
    cosine = audit(x, sampling=SMALL, trained_with="cosine")
    assert dot.check("EA301").status == Status.FAIL
    assert dot.check("EA302").status == Status.FAIL
    assert dot.verdict.level == Level.UNTRUSTWORTHY
    assert any("dot product" in r for r in dot.verdict.recommendations)
    assert cosine.check("EA301").status == Status.PASS
    assert cosine.check("EA301").value == dot.check("EA301").value  # same measurement
    levels = dot.check("EA301").metrics["levels"]
    overlaps = [level["overlap_at_k"] for level in levels]
    assert overlaps == sorted(overlaps, reverse=True)  # stronger rescaling, fewer neighbours kept
    assert all(level["cosine_change"] > 0 for level in levels)


def test_s50_interpolates_in_log_s_and_reports_bounds():
    value, bound = s50([0.1, 0.25, 0.5, 1.0], [0.9, 0.7, 0.3, 0.1])
    assert bound is None
    assert value == pytest.approx(np.exp(np.log(0.25) + 0.5 * (np.log(0.5) - np.log(0.25))))
    assert s50([0.1, 1.0], [0.4, 0.2]) == (None, "<")
    assert s50([0.1, 1.0], [0.9, 0.8]) == (None, ">")


def test_cosine_vs_dot_fails_only_for_a_dot_model():
    x = _unit(_clustered()) * np.random.default_rng(7).lognormal(0, 1, size=(600, 1))
    assert audit(x, sampling=SMALL, trained_with="dot").check("EA402").status == Status.FAIL
    assert audit(x, sampling=SMALL, trained_with="cosine").check("EA402").status == Status.WARN
    l2 = audit(x, sampling=SMALL, trained_with="l2")
    assert l2.check("EA401").status == Status.FAIL
    assert l2.verdict.level == Level.UNTRUSTWORTHY


def test_hubness_is_reported_next_to_its_isotropic_reference():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((800, 64)) * np.exp(rng.normal(0, 1.5, size=(800, 1)))
    x[:, 0] += 3.0
    check = audit(x, sampling=SMALL).check("EA501")
    graph = check.metrics["sample_graph"]
    assert graph["skewness"] > graph["reference"]["skewness"]
    # The k-occurrences of every graph measured (more when EA502 grew them), pooled.
    assert sum(graph["occurrence_counts"]) == graph["rows"] * graph["graphs"]
    assert check.value < graph["reference"]["spread"]


def test_unknown_objective_raises_caution_and_names_the_declaration():
    x = _clustered(spread=0.8) * np.exp(np.random.default_rng(6).normal(0, 1.0, size=24))
    report = audit(x, sampling=SMALL)
    assert report.verdict.level == Level.CAUTION
    assert any("--trained-with" in reason for reason in report.verdict.reasons)


def test_tiny_inputs_skip_what_they_cannot_measure():
    report = audit(np.array([[1.0, 2.0]]), sampling=SMALL)
    statuses = {check.code: check.status for check in report.checks}
    for code in ("EA201", "EA203", "EA301", "EA401", "EA501"):
        assert statuses[code] == Status.SKIP
    assert report.verdict.level == Level.CAUTION  # nothing measured is not "trustworthy"
    assert any("every cosine check skipped" in reason for reason in report.verdict.reasons)


def test_the_same_seed_gives_the_same_report_and_another_seed_other_samples():
    x = _clustered()
    first = audit(x, sampling=SMALL, seed=3).to_dict()
    second = audit(x, sampling=SMALL, seed=3).to_dict()
    other = audit(x, sampling=SMALL, seed=4).to_dict()
    for report in (first, second, other):
        report.pop("timings")
    assert first == second
    assert first["checks"] != other["checks"]

"""Checks EA001–EA004 and EA101 through the public API, against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embaudit import Level, Status, audit
from embaudit.measurement.sampling import Sampling
from tests.exports import encoder_like


def _unit(n=200, d=16, seed=0):
    values = np.random.default_rng(seed).standard_normal((n, d))
    return values / np.linalg.norm(values, axis=1, keepdims=True)


def test_ea004_flags_constant_zero_and_near_constant_dimensions():
    values = np.random.default_rng(1).standard_normal((300, 8))
    values[:, 2] = 0.0
    values[:, 5] = 0.37  # constant but non-zero: still dead
    values[:, 6] = 1e-9 * np.random.default_rng(2).standard_normal(300)
    check = audit(values).check("EA004")
    assert check.status == Status.WARN
    assert check.metrics["dimensions"] == [2, 5, 6]
    assert check.metrics["count"] == 3
    # The value is what the threshold judges: the smallest std / rms coordinate (0 here).
    assert check.value == 0.0 and check.value <= check.threshold
    assert check.recommendation is not None
    assert "Drop dead dimensions 2, 5, 6" in check.recommendation.text
    assert check.message.startswith("3 dimensions of 8 are dead (constant): 2, 5, 6")


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([np.float32, np.float64]),
    st.floats(-1e3, 1e3, allow_subnormal=False).filter(lambda v: abs(v) > 1e-12),
    st.integers(50, 3000),
    st.integers(0, 2**32 - 1),
)
def test_ea004_finds_a_constant_column_whatever_its_value_dtype_and_chunking(
    dtype, value, chunk_rows, seed
):
    # Unit rows of d = 64 with one constant column (a bias that survives the last layer): the
    # column's rounding residue must stay below 1e-6 of the rms coordinate at any magnitude.
    x = np.random.default_rng(seed).standard_normal((3000, 64))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[:, 7] = value
    sampling = Sampling(queries=5, gauge_queries=5, gauge_draws=1, sample=100, pairs=100)
    report = audit(x.astype(dtype), select="EA004", chunk_rows=chunk_rows, sampling=sampling)
    check = report.check("EA004")
    assert check.metrics["dimensions"] == [7]
    # A constant adds value^2 to every dot product of rows of squared norm about 1: it shifts
    # cosines (a warning) above about 1e-3, and is zero for the check (a pass) well below.
    if abs(value) > 1e-2:
        assert (check.status, check.message) == (
            Status.WARN,
            "1 dimension of 64 is dead (constant): 7",
        )
    elif abs(value) < 1e-4:
        assert check.status == Status.PASS
        assert check.message.startswith("1 dimension of 64 is always zero: 7;")


def test_ea004_is_relative_to_the_scale_of_the_data():
    values = np.random.default_rng(3).standard_normal((100, 8)).astype(np.float32) * 1e-30
    assert audit(values).check("EA004").status == Status.PASS


def test_ea004_skips_with_fewer_than_two_rows():
    assert audit(np.ones((1, 4))).check("EA004").status == Status.SKIP


def test_ea101_statistics_match_numpy_on_the_clean_rows():
    rng = np.random.default_rng(4)
    values = rng.standard_normal((500, 12)) * rng.lognormal(size=(500, 1))
    values[7] = np.nan
    values[9] = 0.0
    metrics = audit(values).check("EA101").metrics
    clean = np.delete(values, [7, 9], axis=0)
    norms = np.array([math.hypot(*row) for row in clean.tolist()])
    assert metrics["min"] == pytest.approx(norms.min(), rel=1e-14)
    assert metrics["max"] == pytest.approx(norms.max(), rel=1e-14)
    for name, q in (("p1", 0.01), ("p50", 0.5), ("p99", 0.99)):
        assert metrics[name] == pytest.approx(np.quantile(norms, q), rel=1e-12)
    assert metrics["cv"] == pytest.approx(norms.std() / norms.mean(), rel=1e-12)
    assert metrics["normalized"] is False
    assert sum(metrics["histogram"]["counts"]) == 498


def test_ea101_normalized_within_tolerance_only():
    values = _unit()
    assert audit(values).check("EA101").metrics["normalized"] is True
    values[0] *= 1.002
    result = audit(values).check("EA101")
    assert result.metrics["normalized"] is False
    assert result.status == Status.WARN


def test_ea101_constant_norm_is_a_pass_not_normalized():
    result = audit(_unit() * 3.0).check("EA101")
    assert result.status == Status.PASS
    assert result.metrics["normalized"] is False
    assert "rankings agree" in result.message


@pytest.mark.parametrize(
    ("trained_with", "status", "level"),
    [
        ("unknown", Status.WARN, Level.CAUTION),
        ("cosine", Status.WARN, Level.TRUSTWORTHY),
        ("l2", Status.WARN, Level.UNTRUSTWORTHY),  # EA401: cosine disagrees with L2
        ("dot", Status.PASS, Level.UNTRUSTWORTHY),  # EA402: cosine disagrees with the dot
    ],
)
def test_varying_norms_weigh_by_declared_objective(trained_with, status, level):
    values = _unit() * np.random.default_rng(5).lognormal(size=(200, 1))
    report = audit(values, trained_with=trained_with)
    assert report.check("EA101").status == status
    assert report.verdict.level == level


def test_cosine_objective_still_recommends_normalizing_for_l2_indexes():
    values = _unit() * np.random.default_rng(5).lognormal(size=(200, 1))
    report = audit(values, trained_with="cosine")
    assert "Normalize the vectors before indexing with L2 or inner product" in (
        report.verdict.recommendations
    )


def test_unknown_objective_says_which_declaration_settles_it():
    values = _unit() * np.random.default_rng(5).lognormal(size=(200, 1))
    reasons = audit(values).verdict.reasons
    assert any("--trained-with" in reason for reason in reasons)


def test_duplicates_warn_but_do_not_lower_the_verdict():
    values = _unit()
    values[10] = values[0]
    report = audit(values, trained_with="cosine")
    assert report.check("EA003").status == Status.WARN
    assert report.check("EA003").value == pytest.approx(1 / 200)
    assert report.verdict.level == Level.TRUSTWORTHY
    assert any("Deduplicate" in action for action in report.verdict.recommendations)


def test_undefined_rows_make_cosine_untrustworthy():
    values = _unit()
    values[3] = 0.0
    report = audit(values, trained_with="cosine")
    assert report.check("EA002").status == Status.FAIL
    assert report.verdict.level == Level.UNTRUSTWORTHY
    assert report.failed()


def test_clean_sphere_data_is_trustworthy_with_every_check_passing():
    # Clustered unit rows: isotropic noise would warn EA206 (no contrast between neighbours).
    report = audit(encoder_like(1000, 32, seed=0, common=0.5), trained_with="cosine")
    assert "EA504" not in {check.code for check in report.checks}  # a query file's results
    assert {check.status for check in report.checks} == {Status.PASS}
    assert report.verdict.level == Level.TRUSTWORTHY
    assert not report.failed()

"""A real sentence encoder's output (fixtures/minilm_docstrings.npy, all-MiniLM-L6-v2 on 1,000
docstring paragraphs, made by benchmarks/real_encoders.py): a clean cosine-trained corpus passes
every check, and the geometry checks still catch what they were made for when it is spoiled."""

from __future__ import annotations

import numpy as np
import pytest

from embaudit import Status, audit
from embaudit.measurement.sampling import Sampling

SMALL = Sampling(queries=200, gauge_queries=40, gauge_draws=2, sample=600, pairs=3000)


@pytest.fixture(scope="module")
def minilm() -> np.ndarray:
    from tests.conftest import FIXTURES

    return np.load(FIXTURES / "minilm_docstrings.npy")


def _mean_cosine(x: np.ndarray) -> float:
    unit = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    cosines = unit @ unit.T
    n = len(unit)
    return float((cosines.sum() - np.trace(cosines)) / (n * (n - 1)))


def _with_offset(x: np.ndarray, length: float) -> np.ndarray:
    """The rows plus one shared vector of the given length (a common direction), renormalized
    as the encoder's pipeline would."""
    direction = np.random.default_rng(0).standard_normal(x.shape[1])
    shifted = x.astype(np.float64) + length * direction / np.linalg.norm(direction)
    return shifted / np.linalg.norm(shifted, axis=1, keepdims=True)


def test_a_real_cosine_encoder_corpus_declared_cosine_passes_fail_on_warn(cli, fixtures):
    result = cli(
        "check",
        fixtures / "minilm_docstrings.npy",
        "--trained-with",
        "cosine",
        "--fail-on",
        "warn",
        "--format",
        "json",
    )
    assert result.code == 0, result.stdout[-2000:]
    statuses = {check["code"]: check["status"] for check in result.json()["checks"]}
    assert set(statuses.values()) <= {"pass", "skip"}, statuses
    assert statuses["EA201"] == statuses["EA202"] == statuses["EA004"] == "pass"


def test_the_real_corpus_geometry_matches_brute_force(minilm):
    report = audit(minilm, sampling=SMALL, select="EA201,EA202", trained_with="cosine")
    assert report.check("EA201").value == pytest.approx(_mean_cosine(minilm), rel=1e-9)
    x = minilm.astype(np.float64)
    ratio = np.linalg.norm(x.mean(axis=0)) / np.linalg.norm(x, axis=1).mean()
    assert report.check("EA202").value == pytest.approx(ratio, rel=1e-9)
    # Far from both thresholds: a real encoder's mean cosine is small, not merely below 0.5.
    assert report.check("EA201").value < 0.2 and report.check("EA202").value < 0.4


def test_a_common_direction_added_to_the_real_rows_is_caught(minilm):
    spoiled = _with_offset(minilm, 1.0)  # as long as every row: a dominant shared component
    report = audit(spoiled, sampling=SMALL, select="EA201,EA202", trained_with="cosine")
    assert report.check("EA202").status == Status.WARN
    assert report.check("EA201").status == Status.WARN
    assert 0.5 < _mean_cosine(spoiled) <= 0.9


def test_a_collapsed_version_of_the_real_rows_fails(minilm):
    collapsed = _with_offset(minilm, 4.0)
    assert _mean_cosine(collapsed) > 0.9
    report = audit(collapsed, sampling=SMALL, select="EA201,EA202", trained_with="cosine")
    assert report.check("EA201").status == Status.FAIL
    assert report.check("EA202").status == Status.WARN


def test_the_encoder_s_zero_dimensions_are_found_and_pass(minilm):
    check = audit(minilm, sampling=SMALL, select="EA004").check("EA004")
    assert check.metrics["dimensions"] == [127, 223, 319]
    assert np.all(minilm[:, [127, 223, 319]] ** 2 <= 1e-6 / 384)  # zero within float32
    assert check.status == Status.PASS and "always zero" in check.message


def test_a_non_zero_constant_dimension_in_the_real_rows_warns(minilm):
    biased = minilm.copy()
    biased[:, 127] = 0.05  # a bias left by the last layer: adds 0.0025 to every dot product
    check = audit(biased, sampling=SMALL, select="EA004").check("EA004")
    assert check.status == Status.WARN
    assert check.message == "3 dimensions of 384 are dead (constant): 127, 223, 319"


def test_zero_dimensions_beyond_five_percent_of_the_output_warn(minilm):
    wide = np.zeros((len(minilm), 384 + 20), dtype=np.float32)  # 23 zero of 404: 5.7%
    wide[:, :384] = minilm
    check = audit(wide, sampling=SMALL, select="EA004").check("EA004")
    assert check.metrics["count"] == 23
    assert check.status == Status.WARN
    narrow = wide[:, : 384 + 16]  # 19 zero of 400: 4.75%
    assert audit(narrow, sampling=SMALL, select="EA004").check("EA004").status == Status.PASS


def test_a_half_length_common_direction_warns_in_ea202_before_ea201(minilm):
    spoiled = _with_offset(minilm, 0.5)
    ratio = np.linalg.norm(spoiled.mean(axis=0)) / np.linalg.norm(spoiled, axis=1).mean()
    mean = _mean_cosine(spoiled)
    n = len(spoiled)
    assert ratio**2 == pytest.approx(mean + (1 - mean) / n, rel=1e-9)  # on unit rows
    report = audit(spoiled, sampling=SMALL, select="EA201,EA202", trained_with="cosine")
    assert report.check("EA202").value == pytest.approx(ratio, rel=1e-9) and ratio > 0.5
    assert report.check("EA202").status == Status.WARN
    assert report.check("EA201").status == Status.PASS

"""Awkward but valid inputs: tiny shapes, extreme magnitudes, unusual layouts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embaudit import Status, audit


def _norm_metrics(report):
    return report.check("EA101").metrics


def test_a_single_row(cli, tmp_path):
    np.save(tmp_path / "one.npy", np.array([[3.0, 4.0]], dtype=np.float32))
    result = cli("check", tmp_path / "one.npy", "-f", "json")
    assert result.code == 0, result.stderr
    checks = {c["code"]: c for c in result.json()["checks"]}
    assert checks["EA101"]["metrics"]["p50"] == 5.0
    assert checks["EA004"]["status"] == "skip"


def test_a_single_dimension():
    values = np.array([[2.0], [-3.0], [0.5]], dtype=np.float32)
    metrics = _norm_metrics(audit(values))
    assert (metrics["min"], metrics["max"]) == (0.5, 3.0)


def test_k_at_least_n_is_accepted(cli, tmp_path):
    np.save(tmp_path / "five.npy", np.eye(5, dtype=np.float32))
    result = cli("check", tmp_path / "five.npy", "-k", "50", "-f", "json")
    assert result.code == 0
    assert result.json()["params"]["k"] == 50


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(np.float16, 65504.0), (np.float32, 1e30), (np.float32, 1e-30), (np.float64, 1e200)],
)
def test_extreme_magnitudes_give_finite_correct_norms(tmp_path, dtype, scale):
    rng = np.random.default_rng(0)
    values = (rng.uniform(-1, 1, size=(64, 96)) * scale).astype(dtype)
    np.save(tmp_path / "x.npy", values)
    report = audit(tmp_path / "x.npy")
    expected = np.array([math.hypot(*row) for row in values.astype(np.float64).tolist()])
    metrics = _norm_metrics(report)
    assert report.check("EA002").status == Status.PASS
    assert report.check("EA001").status == Status.PASS
    assert metrics["max"] == pytest.approx(expected.max(), rel=1e-14)
    assert metrics["min"] == pytest.approx(expected.min(), rel=1e-14)
    assert report.check("EA004").status == Status.PASS


def test_fortran_order_and_big_endian_give_the_same_report(tmp_path):
    values = np.random.default_rng(1).standard_normal((300, 10)).astype(np.float32)
    values[4] = np.nan
    values[8] = values[9]
    np.save(tmp_path / "c.npy", values)
    np.save(tmp_path / "f.npy", np.asfortranarray(values))
    np.save(tmp_path / "be.npy", values.astype(">f4"))
    reports = [audit(tmp_path / name).to_dict() for name in ("c.npy", "f.npy", "be.npy")]
    for report in reports:
        report["input"].pop("path")
        report.pop("timings")
    assert reports[0] == reports[1] == reports[2]


def test_in_memory_array_and_file_give_the_same_checks(tmp_path):
    values = np.random.default_rng(2).standard_normal((100, 6)).astype(np.float32)
    np.save(tmp_path / "v.npy", values)
    from_file = [c.to_dict() for c in audit(tmp_path / "v.npy").checks]
    from_memory = [c.to_dict() for c in audit(values).checks]
    assert from_file == from_memory

"""`embaudit gauge`: score-preserving gauges of two towers and the cosine neighbours they move."""

from __future__ import annotations

import numpy as np
import pytest

from embaudit import UsageError, audit_gauge
from embaudit.gauge import GaugeSettings, audit_side, prediction_change


def _towers(tmp_path, d=12, items=300, users=400, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.normal(0, 1, size=d))  # an arbitrary, uneven gauge as MF exports have
    item_rows = rng.standard_normal((items, d)) * scales
    user_rows = rng.standard_normal((users, d)) / scales
    np.save(tmp_path / "items.npy", item_rows)
    np.save(tmp_path / "users.npy", user_rows)
    return tmp_path / "items.npy", tmp_path / "users.npy"


def test_gauge_json_reports_the_worst_case_the_curve_and_unchanged_predictions(cli, tmp_path):
    items, users = _towers(tmp_path)
    result = cli("gauge", items, users, "-f", "json", "--sample", "300")
    report = result.json()
    assert report["mode"] == "towers"
    for key in (
        "worst_overlap_at_k",
        "overlap_by_condition",
        "prediction_max_rel_change",
        "cosine_range",
    ):
        assert key in report
    assert report["prediction_max_rel_change"] < 1e-12
    curve = [point["overlap_at_k"] for point in report["overlap_by_condition"]]
    assert [p["condition"] for p in report["overlap_by_condition"]] == [1.25, 1.5, 2, 3, 5, 10]
    assert curve == sorted(curve, reverse=True)  # larger gauges move more neighbours
    assert report["worst_overlap_at_k"] <= min(curve)  # the search beats random draws
    assert report["cosine_range"]["min"] < report["cosine_range"]["max"]
    assert result.code == (1 if report["worst_overlap_at_k"] < 0.5 else 0)


def test_a_one_dimensional_model_has_no_gauge_to_move_cosines(cli, tmp_path):
    np.save(tmp_path / "items.npy", np.random.default_rng(1).uniform(0.5, 2, size=(50, 1)))
    np.save(tmp_path / "users.npy", np.random.default_rng(2).uniform(0.5, 2, size=(60, 1)))
    result = cli("gauge", tmp_path / "items.npy", tmp_path / "users.npy", "-f", "json")
    assert result.code == 0
    assert result.json()["worst_overlap_at_k"] == 1.0


def test_both_sides_and_the_gate(cli, tmp_path):
    items, users = _towers(tmp_path)
    strict = cli("gauge", items, users, "--side", "both", "--min-overlap", "1.0", "-f", "json")
    assert strict.code == 1
    assert [side["side"] for side in strict.json()["sides"]] == ["items", "users"]
    lenient = cli("gauge", items, users, "--side", "both", "--min-overlap", "0.0", "-q")
    assert lenient.code == 0


def test_towers_must_share_the_dimension(cli, tmp_path):
    np.save(tmp_path / "items.npy", np.ones((5, 4)))
    np.save(tmp_path / "users.npy", np.ones((5, 3)))
    result = cli("gauge", tmp_path / "items.npy", tmp_path / "users.npy")
    assert result.code == 2
    assert "has dimension 3" in result.stderr and "share d" in result.stderr


def test_the_search_stays_inside_the_condition_bound():
    rows = np.random.default_rng(3).standard_normal((200, 8))
    result, scale = audit_side("items", rows, GaugeSettings(max_condition=4.0, budget=100))
    assert scale.max() / scale.min() <= 4.0 + 1e-9
    assert result.worst_condition <= 4.0 + 1e-9
    assert result.evaluations <= 100


def test_prediction_change_stays_at_float64_rounding_for_any_gauge():
    rng = np.random.default_rng(4)
    items, users = rng.standard_normal((100, 6)), rng.standard_normal((100, 6))
    for spread in (0.5, 2.0, 5.0):
        gauge = np.exp(rng.normal(0, spread, size=6))
        assert prediction_change(items, users, gauge) < 1e-12


def test_the_api_matches_the_cli(tmp_path):
    items, users = _towers(tmp_path)
    report = audit_gauge(items, users, sample=300)
    assert report.kind == "gauge"
    assert 0.0 <= report.results["worst_overlap_at_k"] <= 1.0
    with pytest.raises(UsageError, match="--side"):
        audit_gauge(items, users, side="rows")

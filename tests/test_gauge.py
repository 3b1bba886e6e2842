"""`embaudit gauge`: score-preserving gauges of two towers and the cosine neighbours they move."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embaudit import UsageError, audit_gauge
from embaudit.gauge import (
    BALANCED_CONDITION,
    GaugeSettings,
    Gram,
    audit_side,
    balance,
    column_norms,
    prediction_change,
    users_metric,
)
from tests.exports import exact_cosine_top, set_overlap


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
    result, scale = audit_side(
        "items", rows, GaugeSettings(k=10, seed=0, max_condition=4.0, sample=2000, budget=100)
    )
    assert scale.max() / scale.min() <= 4.0 + 1e-9
    assert result.worst_condition <= 4.0 + 1e-9
    assert result.evaluations <= 100


def test_prediction_change_stays_at_float64_rounding_for_any_gauge():
    rng = np.random.default_rng(4)
    items, users = rng.standard_normal((100, 6)), rng.standard_normal((100, 6))
    for spread in (0.5, 2.0, 5.0):
        gauge = np.exp(rng.normal(0, spread, size=6))
        assert prediction_change(items, users, gauge) < 1e-12


def test_the_api_matches_the_cli(cli, tmp_path):
    items, users = _towers(tmp_path)
    report = audit_gauge(items, users, sample=300, side="both", seed=4)
    printed = cli("gauge", items, users, "--sample", "300", "--side", "both", "--seed", "4")
    assert report.kind == "gauge"
    document = report.to_dict()
    expected = cli(
        "gauge", items, users, "--sample", "300", "--side", "both", "--seed", "4", "-f", "json"
    ).json()
    for produced in (document, expected):
        produced.pop("timings")
    assert json.loads(json.dumps(document)) == expected
    assert f"{report.worst_overlap_at_k:.3f}" in printed.stdout
    with pytest.raises(UsageError, match=r"^side must be one of items, users, both"):
        audit_gauge(items, users, side="rows")


# The balance of the towers, on the closed forms of Steck, Ekanadham & Kallus (2024)
# (docs/science.md):
# data X (users × items) = U Σ Vᵀ, item rows B, user rows X A.
RANK, EQ1_PENALTY, EQ2_PENALTY = 8, 50.0, 5.0


def _svd(seed=0, users=300, items=60):
    rng = np.random.default_rng(seed)
    matrix = (rng.random((users, items)) < 0.1 + 0.3 * rng.random(items)).astype(np.float64)
    left, sigma, right_t = np.linalg.svd(matrix, full_matrices=False)
    return matrix, left[:, :RANK], sigma[:RANK], right_t[:RANK].T


def _eq2(left, sigma, right, penalty=EQ2_PENALTY):
    """B = V_k diag(√(σ(1 − λ/σ)₊)), X A = U_k diag(same): unique up to rotation."""
    weight = np.sqrt(sigma * np.clip(1 - penalty / sigma, 0, None))
    return right * weight, left * weight


def _eq1(matrix, sigma, right, gauge, penalty=EQ1_PENALTY):
    """B = V_k diag(g)^½ D, A = V_k diag(g)^½ D⁻¹, g = 1/(1 + λ/σ²): optimal for every D."""
    root_g = np.sqrt(1 / (1 + penalty / sigma**2))
    return right * root_g * gauge, matrix @ (right * root_g / gauge)


def _balance_of(items, users):
    return balance(
        column_norms([items], items.shape[1], items.dtype),
        column_norms([users], users.shape[1], users.dtype),
    )


def test_the_eq2_solution_is_balanced_exactly():
    _, left, sigma, right = _svd()
    assert sigma.min() > EQ2_PENALTY  # every dimension survives the penalty
    towers = _balance_of(*_eq2(left, sigma, right))
    assert towers.balanced
    assert towers.condition == pytest.approx(1.0, abs=1e-12)
    assert towers.log_scale_std < 1e-12
    np.testing.assert_allclose(towers.scale, 1.0, rtol=1e-12)


def test_an_eq1_split_is_as_far_from_balance_as_its_gauge_puts_it():
    # Item column norms ‖V_:j‖ = √g_j D_j, user column norms ‖X A_:j‖ = σ_j √g_j / D_j: the
    # balancing gauge is √(σ_j) / D_j, whatever g.
    matrix, _, sigma, right = _svd()
    gauge = np.exp(np.random.default_rng(5).normal(0, 1, size=RANK))
    towers = _balance_of(*_eq1(matrix, sigma, right, gauge))
    expected = np.sqrt(sigma) / gauge
    np.testing.assert_allclose(towers.scale, expected, rtol=1e-10)
    assert towers.condition == pytest.approx(expected.max() / expected.min(), rel=1e-10)
    assert not towers.balanced


def test_a_gauge_applied_to_a_balanced_split_is_the_condition_it_reports():
    # (B·D, X A·D⁻¹) from the balanced Eq. 2 towers: the balancing gauge is D⁻¹, its condition
    # max(D)/min(D); the ratio of user to item column norms spreads by its square.
    _, left, sigma, right = _svd()
    items, users = _eq2(left, sigma, right)
    gauge = np.exp(np.random.default_rng(6).uniform(-1, 1, size=RANK))
    towers = _balance_of(items * gauge, users / gauge)
    assert towers.condition == pytest.approx(gauge.max() / gauge.min(), rel=1e-10)
    np.testing.assert_allclose(towers.scale, 1 / gauge, rtol=1e-10)
    ratio = np.linalg.norm(users / gauge, axis=0) / np.linalg.norm(items * gauge, axis=0)
    assert ratio.max() / ratio.min() == pytest.approx(towers.condition**2, rel=1e-10)


@given(st.lists(st.floats(-3, 3), min_size=RANK, max_size=RANK))
@settings(max_examples=30, deadline=None)
def test_rebalancing_removes_whatever_gauge_the_export_was_in(log_gauge):
    # The balanced split of (B·D, X A·D⁻¹) is the same for every D: balancing fixes the gauge.
    matrix, _, sigma, right = _svd()
    reference = _eq1(matrix, sigma, right, np.ones(RANK))
    gauge = np.exp(np.array(log_gauge))
    items, users = reference[0] * gauge, reference[1] / gauge
    towers, reference_scale = _balance_of(items, users), _balance_of(*reference).scale
    np.testing.assert_allclose(towers.scale, reference_scale / gauge, rtol=1e-9)
    np.testing.assert_allclose(items * towers.scale, reference[0] * reference_scale, rtol=1e-9)
    rebalanced = _balance_of(items * towers.scale, users / towers.scale)
    assert rebalanced.condition == pytest.approx(1.0, abs=1e-9)


def test_the_cli_reports_the_balance_of_both_closed_forms(cli, tmp_path):
    matrix, left, sigma, right = _svd()
    gauge = np.exp(np.random.default_rng(5).normal(0, 1, size=RANK))
    exports = {"eq1": _eq1(matrix, sigma, right, gauge), "eq2": _eq2(left, sigma, right)}
    reports = {}
    for name, (items, users) in exports.items():
        np.save(tmp_path / f"{name}-items.npy", items)
        np.save(tmp_path / f"{name}-users.npy", users)
        result = cli(
            "gauge",
            tmp_path / f"{name}-items.npy",
            tmp_path / f"{name}-users.npy",
            "--sample",
            "40",
            "--min-overlap",
            "0",
            "-f",
            "json",
        )
        assert result.code == 0, result.stderr
        reports[name] = result.json()
    eq1, eq2 = reports["eq1"]["balance"], reports["eq2"]["balance"]
    expected = np.sqrt(sigma) / gauge
    assert eq1["condition"] == pytest.approx(expected.max() / expected.min(), rel=1e-10)
    assert eq1["balanced"] is False
    assert eq2["condition"] == pytest.approx(1.0, abs=1e-12)
    assert eq2["balanced"] is True
    assert eq2["rows"] == {"items": matrix.shape[1], "users": matrix.shape[0]}  # every row
    assert eq2["tolerance"] == BALANCED_CONDITION
    rows = {name: report["checks"][-1] for name, report in reports.items()}
    assert rows["eq1"]["name"] == rows["eq2"]["name"] == "gauge-balance"
    assert (rows["eq1"]["status"], rows["eq2"]["status"]) == ("warn", "pass")
    assert rows["eq1"]["value"] == eq1["condition"]
    assert "not the split weight decay on both towers selects" in rows["eq1"]["message"]


def test_the_balance_sums_over_every_row_not_the_sample(tmp_path):
    items, users = _towers(tmp_path)
    user_rows = np.load(users)
    user_rows[7] = np.nan  # left out, as everywhere
    np.save(users, user_rows)
    report = audit_gauge(items, users, sample=20)
    towers = report.balance
    expected = _balance_of(np.load(items), np.delete(user_rows, 7, axis=0))
    assert towers.rows == {"items": 300, "users": 399}
    assert towers.condition == pytest.approx(expected.condition, rel=1e-12)


def test_float32_towers_at_balance_count_as_balanced(tmp_path):
    _, left, sigma, right = _svd()
    items, users = (tower.astype(np.float32) for tower in _eq2(left, sigma, right))
    np.save(tmp_path / "items.npy", items)
    np.save(tmp_path / "users.npy", users)
    towers = audit_gauge(tmp_path / "items.npy", tmp_path / "users.npy", sample=40)
    assert towers.balance.condition == pytest.approx(1.0, abs=1e-5)
    assert towers.balance.balanced is True


def test_dimensions_zero_in_both_towers_are_left_out():
    # Eq. 2 zeroes the dimensions whose σ is below the penalty, in both towers alike.
    _, left, sigma, right = _svd()
    penalty = float(sigma[RANK - 3 : RANK - 1].mean())  # the last two dimensions die
    towers = _balance_of(*_eq2(left, sigma, right, penalty=penalty))
    assert towers.dead == {"items": [], "users": [], "both": [RANK - 2, RANK - 1]}
    assert towers.condition == pytest.approx(1.0, abs=1e-12)
    assert towers.balanced
    assert towers.to_dict()["scale"][-2:] == [None, None]


def test_a_dimension_zero_in_one_tower_only_cannot_be_balanced(cli, tmp_path):
    _, left, sigma, right = _svd()
    items, users = _eq2(left, sigma, right)
    users[:, 2] = 0.0
    np.save(tmp_path / "items.npy", items)
    np.save(tmp_path / "users.npy", users)
    result = cli(
        "gauge", tmp_path / "items.npy", tmp_path / "users.npy", "--sample", "40", "-f", "json"
    )
    assert result.code in (0, 1), result.stderr
    assert result.stderr == ""  # no numpy warning on the way (warnings are errors here, too)
    towers = result.json()["balance"]
    assert towers["condition"] is None
    assert towers["live_condition"] == pytest.approx(1.0, abs=1e-12)
    assert towers["balanced"] is False
    assert towers["dead_dimensions"] == {"items": [], "users": [2], "both": []}
    assert towers["scale"][2] is None
    row = result.json()["checks"][-1]
    assert row["status"] == "warn" and row["value"] is None
    assert "zero in the users but not the items" in row["message"]
    table = cli("gauge", tmp_path / "items.npy", tmp_path / "users.npy", "--sample", "40")
    assert "zero in the users but not the items" in table.stdout


def test_an_unbalanced_export_warns_and_fails_only_a_warn_gate(cli, tmp_path):
    items, users = _towers(tmp_path)
    args = ("gauge", items, users, "--sample", "100", "--min-overlap", "0")
    assert cli(*args).code == 0
    strict = cli(*args, "--fail-on", "warn")
    assert strict.code == 1
    assert "gate failed" in strict.stdout and "balancing gauge of condition" in strict.stdout


def test_column_norms_are_exact_across_blocks_and_float64_extremes():
    rows = np.random.default_rng(7).standard_normal((500, 5))
    for magnitude in (1.0, 1e300, 1e-300):
        folded = column_norms(np.array_split(rows * magnitude, 7), 5, np.dtype(np.float64))
        np.testing.assert_allclose(
            folded.log_norms() - np.log(magnitude), np.log(np.linalg.norm(rows, axis=0)), atol=1e-12
        )
        assert folded.rows == 500


# The item similarity both towers identify: cosine in the users' metric -----------------------


def test_items_in_the_users_metric_are_the_same_for_every_split(tmp_path):
    # (A·M⁻ᵀ, B·M) gives every score of (A, B) for any invertible M, not only diagonal ones; the
    # inner products of B·(AᵀA)^½ are the same for all of them.
    _, left, sigma, right = _svd(seed=3)
    items, users = _eq2(left, sigma, right)
    mixing = np.random.default_rng(3).standard_normal((RANK, RANK))
    written = []
    for name, (b, a) in {
        "plain": (items, users),
        "mixed": (items @ mixing, users @ np.linalg.inv(mixing).T),
    }.items():
        np.save(tmp_path / f"{name}-items.npy", b)
        np.save(tmp_path / f"{name}-users.npy", a)
        out = tmp_path / f"{name}-invariant.npy"
        audit_gauge(
            tmp_path / f"{name}-items.npy",
            tmp_path / f"{name}-users.npy",
            sample=40,
            write_items=out,
        )
        rows = np.load(out).astype(np.float64)
        written.append(rows @ rows.T)
    np.testing.assert_allclose(written[0], written[1], rtol=0, atol=1e-5 * np.abs(written[0]).max())
    # ... and equal to B (AᵀA) Bᵀ itself.
    np.testing.assert_allclose(
        written[0],
        items @ (users.T @ users) @ items.T,
        rtol=0,
        atol=1e-5 * np.abs(written[0]).max(),
    )


def test_the_users_metric_overlap_is_the_brute_force_one():
    rng = np.random.default_rng(4)
    items, users = rng.standard_normal((150, 6)), rng.standard_normal((900, 6)) * [1, 2, 3, 1, 5, 1]
    gram = Gram(6)
    gram.fold(users[:400])
    gram.fold(users[400:] * 1e-3)  # blocks of other magnitudes merge exactly (powers of two)
    exact = users[:400].T @ users[:400] + (users[400:] * 1e-3).T @ (users[400:] * 1e-3)
    np.testing.assert_allclose(np.ldexp(gram.matrix, 2 * gram.exponent), exact, rtol=1e-12)
    found = users_metric(items, gram, 10)
    root = gram.root()
    expected = set_overlap(
        exact_cosine_top(items, np.arange(150), 10),
        exact_cosine_top(items @ root, np.arange(150), 10),
    )
    assert found.overlap_at_k == pytest.approx(expected, abs=1e-12)
    assert found.rank == 6 and found.k == 10


def test_gauge_says_which_similarity_answers_which_question(cli, tmp_path):
    _, left, sigma, right = _svd()
    for name, (items, users) in {"eq2": _eq2(left, sigma, right)}.items():
        np.save(tmp_path / f"{name}-items.npy", items)
        np.save(tmp_path / f"{name}-users.npy", users)
    report = cli(
        "gauge",
        tmp_path / "eq2-items.npy",
        tmp_path / "eq2-users.npy",
        "--sample",
        "40",
        "-f",
        "json",
    ).json()
    advice = report["recommendations"]
    assert advice[0].startswith("User→item scores: the dot product")
    assert advice[1].startswith("Item→item similarity: cosine in the users' metric")
    assert "dot-regularized" in advice[2]  # Eq. 2 is balanced
    assert 0.0 <= report["users_metric"]["overlap_at_k"] <= 1.0


def test_one_archive_holding_both_towers_takes_a_key_per_tower(cli, tmp_path):
    item_path, user_path = _towers(tmp_path)
    np.savez(tmp_path / "mf.npz", item_factors=np.load(item_path), user_factors=np.load(user_path))
    both = cli(
        "gauge",
        tmp_path / "mf.npz",
        tmp_path / "mf.npz",
        "--items-key",
        "item_factors",
        "--users-key",
        "user_factors",
        "--sample",
        "300",
        "-f",
        "json",
    )
    separate = cli("gauge", item_path, user_path, "--sample", "300", "-f", "json")
    assert both.code == separate.code
    assert both.json()["worst_overlap_at_k"] == separate.json()["worst_overlap_at_k"]
    assert both.json()["balance"]["condition"] == separate.json()["balance"]["condition"]


def test_a_tower_compared_with_itself_is_refused(cli, tmp_path):
    item_path, _ = _towers(tmp_path)
    np.savez(tmp_path / "mf.npz", item_factors=np.load(item_path))
    same = cli("gauge", tmp_path / "mf.npz", tmp_path / "mf.npz", "--key", "item_factors")
    assert same.code == 2 and "the same array" in same.stderr
    assert cli("gauge", item_path, item_path).code == 2

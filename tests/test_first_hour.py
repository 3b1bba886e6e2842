"""A newcomer's first hour: the gate never looks greener than the evidence, and says why."""

from __future__ import annotations

import numpy as np
import pytest

from embaudit import Level, Status, audit
from tests.exports import encoder_like


def test_a_selection_without_any_cosine_check_is_not_trustworthy(fixtures):
    report = audit(fixtures / "sphere.npy", trained_with="dot", select="EA0")
    assert report.verdict.level == Level.CAUTION
    assert any("nothing about cosine was assessed" in r for r in report.verdict.reasons)


def test_a_selection_with_a_cosine_check_is_judged_on_it(fixtures):
    # The other direction: one geometry check that passes is evidence enough.
    report = audit(fixtures / "sphere.npy", trained_with="cosine", select="EA0,EA401")
    assert report.verdict.level == Level.TRUSTWORTHY
    assert not any("nothing about cosine" in r for r in report.verdict.reasons)


@pytest.mark.parametrize(("output_format", "noted"), [("table", True), ("github", True)])
def test_an_undeclared_objective_is_noted_where_ci_users_look(cli, fixtures, output_format, noted):
    result = cli("check", fixtures / "sphere.npy", "-f", output_format)
    assert ("objective is not declared" in result.stderr) is noted
    declared = cli("check", fixtures / "sphere.npy", "-f", output_format, "--trained-with", "l2")
    assert "objective is not declared" not in declared.stderr


def test_json_says_whether_the_objective_was_declared(cli, fixtures):
    undeclared = cli("check", fixtures / "sphere.npy", "-f", "json")
    assert undeclared.stderr == ""
    assert undeclared.json()["verdict"]["objective_declared"] is False
    declared = cli("check", fixtures / "sphere.npy", "-f", "json", "--trained-with", "cosine")
    assert declared.json()["verdict"]["objective_declared"] is True


def test_require_objective_in_the_config_refuses_an_undeclared_objective(
    cli, fixtures, tmp_path, monkeypatch
):
    (tmp_path / "embaudit.toml").write_text("require-objective = true\n")
    monkeypatch.chdir(tmp_path)
    refused = cli("check", fixtures / "sphere.npy", "-q")
    assert refused.code == 2 and "must be declared" in refused.stderr
    assert refused.stderr.count("\n") == 1
    accepted = cli("check", fixtures / "sphere.npy", "-q", "--trained-with", "cosine")
    assert accepted.code == 0, accepted.stderr


@pytest.mark.parametrize(
    "make",
    [
        lambda fixtures: np.load(fixtures / "sphere.npy"),
        lambda fixtures: encoder_like(6000, 384, seed=12, common=0.5).astype(np.float32),
    ],
    ids=["sphere-fixture", "clean-sentence-like"],
)
def test_clean_corpora_pass_a_warn_gate_when_declared(cli, fixtures, tmp_path, make):
    np.save(tmp_path / "x.npy", make(fixtures))
    result = cli("check", tmp_path / "x.npy", "--trained-with", "cosine", "--fail-on", "warn", "-q")
    assert result.code == 0, result.stdout
    assert result.stdout.strip().endswith(": trustworthy")


def test_hubness_warns_where_most_rows_are_never_retrieved():
    # Three rogue dimensions 30 times the others: half the rows are in no neighbour list.
    rows = np.random.default_rng(5).standard_normal((5000, 384))
    rows[:, :3] *= 30
    check = audit(rows, select="EA5").check("EA501")
    assert check.status == Status.WARN
    assert check.value < check.threshold  # every row a query: the corpus's own graph, exact
    assert check.metrics["standard_error"] is None
    assert check.metrics["sample_graph"]["antihub_rate"] > 0.3


def test_hubness_of_clustered_data_passes_though_its_skewness_is_high(fixtures):
    check = audit(fixtures / "sphere.npy", select="EA5").check("EA501")
    assert check.metrics["sample_graph"]["skewness"] > 2  # the classic measure would have warned
    assert check.status == Status.PASS and check.value >= check.threshold


@pytest.mark.parametrize(
    ("code", "passes_above"),
    [("EA004", True), ("EA101", False), ("EA203", False), ("EA501", True)],
)
def test_the_value_shown_is_the_one_the_threshold_judges(code, passes_above):
    # On one side of the threshold the check passes, on the other it does not: both are seen.
    statuses = set()
    for data in _clean_and_spoiled(code):
        check = audit(data, trained_with="cosine").check(code)
        above = check.value > check.threshold
        assert (above == passes_above) == (check.status == Status.PASS), check
        statuses.add(check.status)
    assert statuses == {Status.PASS, Status.WARN}


def _clean_and_spoiled(code: str) -> tuple[np.ndarray, np.ndarray]:
    """Clean sentence-like rows, and the same rows with the defect ``code`` looks for."""
    rng = np.random.default_rng(3)
    clean = encoder_like(3000, 384, seed=3, common=0.5)
    spoiled = clean.copy()
    if code == "EA004":
        spoiled[:, 3] = 0.25
    elif code == "EA101":
        spoiled *= np.linspace(0.5, 2.0, len(clean))[:, None]
    elif code == "EA203":
        spoiled[:, 0] += 5 * rng.standard_normal(len(clean))
    else:  # an uncentred cloud: hubs near its mean direction, a third of the rows in no list
        spoiled = rng.standard_normal(clean.shape) + 3.0
    return clean, spoiled


def test_the_one_line_summary_names_what_failed_the_gate(cli, fixtures):
    failed = cli("check", fixtures / "sphere.npy", "--fail-on", "warn", "-q")
    assert failed.code == 1
    assert "gate failed on EA301 warn, verdict caution (--fail-on warn)" in failed.stdout
    passed = cli("check", fixtures / "sphere.npy", "--trained-with", "cosine", "-q")
    assert passed.code == 0 and "gate failed" not in passed.stdout


def test_an_output_in_a_missing_directory_fails_before_the_audit(cli, fixtures, tmp_path):
    import embaudit.cli

    calls = []
    original = embaudit.cli.audit
    embaudit.cli.audit = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    try:
        result = cli("check", fixtures / "sphere.npy", "-o", tmp_path / "missing" / "r.json")
    finally:
        embaudit.cli.audit = original
    assert result.code == 2 and "no such directory" in result.stderr
    assert calls == []


def test_explain_takes_names_as_well_as_codes(cli):
    by_name = cli("explain", "gauge-sensitivity")
    assert by_name.code == 0 and by_name.stdout == cli("explain", "EA301").stdout
    assert cli("explain", "no-such-check").code == 2


def test_input_options_are_configuration_keys_too(cli, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    rows[7] = np.nan
    table = pa.table(
        {
            "doc": [f"d{i}" for i in range(300)],
            "vec": pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), 8),
            "other": pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), 8),
        }
    )
    pq.write_table(table, tmp_path / "e.parquet")
    (tmp_path / "embaudit.toml").write_text('column = "vec"\nid-column = "doc"\n')
    monkeypatch.chdir(tmp_path)
    report = cli("check", "e.parquet", "-f", "json").json()
    assert report["input"]["column"] == "vec"
    assert report["checks"][0]["metrics"]["ids"] == ["d7"]
    (tmp_path / "embaudit.toml").write_text("column = 3\n")
    bad = cli("check", "e.parquet")
    assert bad.code == 2 and "'column' in embaudit.toml: must be a non-empty string" in bad.stderr


def test_dot_models_are_not_told_to_drop_their_strongest_dimensions():
    rows = encoder_like(3000, 64, seed=2)
    rows[:, :3] *= 8
    for trained_with, dropped in (("cosine", True), ("dot", False)):
        check = audit(rows, trained_with=trained_with, select="EA2").check("EA204")
        assert check.status != Status.PASS
        assert check.recommendation is not None
        assert ("or drop dimensions" in check.recommendation.text) is dropped


def test_a_regularized_dot_model_is_judged_on_its_dot_product_not_on_the_gauge(fixtures):
    # Steck et al. Eq. 2: the per-factor penalty fixes the gauge, the scores stay inner products.
    free = audit(fixtures / "unnormalized.npy", trained_with="dot")
    fixed = audit(fixtures / "unnormalized.npy", trained_with="dot-regularized")
    assert free.check("EA301").status == Status.FAIL
    assert fixed.check("EA301").status == Status.PASS
    assert "fixes the split up to a rotation" in fixed.check("EA301").message
    assert fixed.check("EA402").status == Status.FAIL  # cosine still disagrees with the dot
    assert fixed.check("EA101").status == Status.PASS  # the norms are part of its scores
    assert fixed.verdict.level == Level.UNTRUSTWORTHY
    assert [r.split()[0] for r in fixed.verdict.reasons] == ["EA402"]


def test_markdown_carries_what_the_table_carries_and_no_pass_mark_without_a_gate(cli, fixtures):
    files = (fixtures / "list.parquet", fixtures / "fixed_size_list.parquet")
    ungated = cli("compare-knn", *files, "-f", "markdown").stdout
    assert "✅" not in ungated and "measured" in ungated and "passed" not in ungated
    for detail in ("Overlap by k", "Per-item overlap", "Changed most"):
        assert detail in ungated
    # The two files hold the same vectors: no item is listed as changed.
    assert "**Changed most**: none — all" in ungated and "doc-" not in ungated
    gated = cli("compare-knn", *files, "-f", "markdown", "--min-overlap", "0.5").stdout
    assert "✅" in gated and "**passed**" in gated
    failing = cli("compare-knn", *files, "-f", "markdown", "--min-overlap", "1.0", "-k", "5")
    metrics = cli("compare-knn", fixtures / "unnormalized.npy", "-f", "markdown").stdout
    assert "top-1 differs" in metrics and "cosine vs dot" in metrics and "✅" not in metrics
    assert failing.code in (0, 1)


def test_gauge_markdown_carries_the_curves_the_balance_and_the_advice(cli, tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "i.npy", rng.standard_normal((300, 6)) * [1, 2, 3, 4, 5, 6])
    np.save(tmp_path / "u.npy", rng.standard_normal((500, 6)))
    text = cli("gauge", tmp_path / "i.npy", tmp_path / "u.npy", "--sample", "200", "-f", "markdown")
    for detail in (
        "under random gauges",
        "Worst gauge found",
        "Cosine of item pairs reached",
        "Balance of the towers",
        "Item→item similarity",
    ):
        assert detail in text.stdout


def test_one_repository_audits_each_export_with_its_own_settings(
    cli, fixtures, tmp_path, monkeypatch
):
    exports = tmp_path / "exports"
    exports.mkdir()
    np.save(exports / "sentences.npy", np.load(fixtures / "sphere.npy"))
    np.savez(exports / "items.npz", item_factors=np.load(fixtures / "unnormalized.npy"))
    (tmp_path / "pyproject.toml").write_text(
        "[tool.embaudit]\n"
        'trained-with = "cosine"\n'
        "[[tool.embaudit.files]]\n"
        'path = "exports/items*.npz"\n'
        'trained-with = "dot"\n'
        'key = "item_factors"\n'
        "[tool.embaudit.files.checks.EA402]\n"
        'severity = "warn"\n'
    )
    monkeypatch.chdir(tmp_path)
    sentences = cli("check", "exports/sentences.npy", "-f", "json").json()
    items = cli("check", "exports/items.npz", "-f", "json").json()
    assert sentences["params"]["trained_with"] == "cosine"
    assert items["params"]["trained_with"] == "dot"
    assert items["input"]["path"].endswith("items.npz[item_factors]")
    statuses = {c["code"]: c["status"] for c in items["checks"]}
    assert statuses["EA402"] == "warn" and statuses["EA301"] == "fail"
    flag = cli("check", "exports/items.npz", "--trained-with", "cosine", "-f", "json").json()
    assert flag["params"]["trained_with"] == "cosine"  # a flag still wins


def test_a_files_entry_without_a_path_names_the_entry(cli, fixtures, tmp_path, monkeypatch):
    (tmp_path / "embaudit.toml").write_text('[[files]]\ntrained-with = "dot"\n')
    monkeypatch.chdir(tmp_path)
    result = cli("check", fixtures / "sphere.npy")
    assert result.code == 2
    assert "'path' in embaudit.toml files[0]: must be a glob" in result.stderr


def test_a_directory_mixing_list_and_fixed_size_list_shards_is_one_dataset(cli, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = np.random.default_rng(6).standard_normal((600, 8)).astype(np.float32)
    shards = tmp_path / "export"
    shards.mkdir()
    listed = pa.array(list(rows[:300]), type=pa.list_(pa.float32()))  # as pandas writes it
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(rows[300:].ravel()), 8)  # as pyarrow
    pq.write_table(pa.table({"embedding": listed}), shards / "part-0.parquet")
    pq.write_table(pa.table({"embedding": fixed}), shards / "part-1.parquet")
    np.save(tmp_path / "same.npy", rows)
    mixed = cli("check", shards, "-f", "json", "--select", "EA0,EA1,EA4")
    assert mixed.code == 0, mixed.stderr
    expected = cli("check", tmp_path / "same.npy", "-f", "json", "--select", "EA0,EA1,EA4").json()
    got = mixed.json()
    assert got["input"]["n"] == 600
    # Two shards merge their moments in another order than one array: equal to rounding.
    assert [c["value"] for c in got["checks"]] == pytest.approx(
        [c["value"] for c in expected["checks"]], rel=1e-12
    )
    # Another dimension is still another dataset.
    other = pa.FixedSizeListArray.from_arrays(pa.array(rows[:10, :4].ravel()), 4)
    pq.write_table(pa.table({"embedding": other}), shards / "part-2.parquet")
    assert cli("check", shards).code == 2


def test_progress_moves_through_the_geometry_after_the_pass(fixtures):
    seen: dict[str, list[int]] = {}

    def reporter(description: str, total: int):
        seen[description] = [total, 0]

        def advance(count: int) -> None:
            seen[description][1] += count

        return advance

    audit(fixtures / "sphere.npy", progress=reporter)
    assert seen["audit sphere.npy"] == [2000, 2000]
    assert seen["geometry of the audit sample"] == [4, 4]


def test_junit_counts_an_ungated_comparison_as_measured_not_passed(cli, fixtures):
    ungated = cli("compare-knn", fixtures / "unnormalized.npy", "-f", "junit").stdout
    assert 'tests="3" failures="0" errors="0" skipped="3"' in ungated
    assert "measured, no gate" in ungated
    gated = cli("compare-knn", fixtures / "unnormalized.npy", "-f", "junit", "--min-overlap", "0")
    assert 'skipped="0"' in gated.stdout


def test_an_error_in_a_named_config_file_names_that_file(cli, fixtures, tmp_path):
    (tmp_path / "bad.toml").write_text("k = 0\n")
    result = cli("check", fixtures / "sphere.npy", "--config", tmp_path / "bad.toml")
    assert result.code == 2
    assert "bad.toml: 'k' in bad.toml: must be an integer in [1, 1000], got 0" in result.stderr
    assert "embaudit.toml" not in result.stderr

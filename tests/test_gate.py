"""The CI gate: compare-knn, configuration, selection, severities, formats, determinism."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embaudit import ConfigError, ParameterError, audit
from embaudit.checks import REGISTRY
from embaudit.config_file import enabled_codes
from embaudit.formats.github import escape_data, escape_property

#: The checks of a default audit: not the drift checks, not those an option asks for.
AUDIT_CODES = sorted(
    code for code, check in REGISTRY.items() if not check.needs_baseline and not check.option
)


def _write_parquet(path, vectors, ids):
    column = pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.astype(np.float32).ravel()), vectors.shape[1]
    )
    pq.write_table(pa.table({"id": ids, "embedding": column}), path)


def _codes(result):
    return [check["code"] for check in result.json()["checks"]]


# compare-knn -----------------------------------------------------------------------------------


def test_compare_knn_metrics_mode_json(cli, fixtures):
    result = cli("compare-knn", fixtures / "unnormalized.npy", "-f", "json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["schema_version"] == 1 and report["mode"] == "metrics" and report["k"] == 10
    pairs = {(p["a"], p["b"]): p for p in report["pairs"]}
    assert set(pairs) == {("cosine", "l2"), ("cosine", "dot"), ("l2", "dot")}
    for pair in pairs.values():
        assert list(pair["by_k"]) == ["1", "5", "10", "50", "100"]
        assert pair["overlap_at_k"] == pair["by_k"]["10"]
        assert 0.0 <= pair["top1_differs"] <= 1.0
    assert pairs[("cosine", "l2")]["overlap_at_k"] < 0.9  # the norms vary


def test_compare_knn_on_unit_vectors_agrees_everywhere(cli, fixtures):
    report = cli("compare-knn", fixtures / "sphere.npy", "-f", "json").json()
    for pair in report["pairs"]:
        assert all(value == 1.0 for value in pair["by_k"].values())
        assert pair["top1_differs"] == 0.0


def test_compare_knn_ladder_stops_where_the_file_does(cli, tmp_path):
    np.save(tmp_path / "small.npy", np.random.default_rng(0).standard_normal((30, 4)))
    report = cli("compare-knn", tmp_path / "small.npy", "-f", "json").json()
    assert list(report["pairs"][0]["by_k"]) == ["1", "5", "10"]


def test_compare_two_identical_exports_keeps_every_neighbour(cli, fixtures):
    result = cli("compare-knn", fixtures / "sphere.npy", fixtures / "sphere.npy", "-f", "json")
    report = result.json()
    assert report["mode"] == "files"
    assert report["overlap_at_k"] == 1.0
    assert report["n_matched"] == 2000 and report["matched_by"] == "row order"
    assert set(report) >= {"schema_version", "mode", "overlap_at_k", "by_k", "n_matched"}


def test_compare_matches_items_by_id_whatever_the_row_order(cli, tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((300, 8))
    ids = [f"item-{i}" for i in range(300)]
    _write_parquet(tmp_path / "old.parquet", vectors, ids)
    order = rng.permutation(300)[:250]  # shuffled, and 50 items dropped
    _write_parquet(tmp_path / "new.parquet", vectors[order], [ids[i] for i in order])
    report = cli(
        "compare-knn", tmp_path / "old.parquet", tmp_path / "new.parquet", "-f", "json"
    ).json()
    assert report["matched_by"] == "id" and report["n_matched"] == 250
    assert report["overlap_at_k"] == 1.0


def test_compare_measures_a_retrain(cli, tmp_path):
    rng = np.random.default_rng(2)
    old = rng.standard_normal((400, 16))
    np.save(tmp_path / "old.npy", old)
    np.save(tmp_path / "new.npy", old + 0.8 * rng.standard_normal(old.shape))
    report = cli("compare-knn", tmp_path / "old.npy", tmp_path / "new.npy", "-f", "json").json()
    assert 0.0 < report["overlap_at_k"] < 0.9
    quantiles = report["quantiles"]
    assert quantiles["min"] <= quantiles["p50"] <= quantiles["p90"]
    changed = report["changed_most"]
    assert changed[0]["overlap_at_k"] == quantiles["min"]


def test_min_overlap_makes_compare_a_gate(cli, tmp_path):
    rng = np.random.default_rng(3)
    old = rng.standard_normal((300, 8))
    np.save(tmp_path / "old.npy", old)
    np.save(tmp_path / "new.npy", old + 0.5 * rng.standard_normal(old.shape))
    failing = cli(
        "compare-knn", tmp_path / "old.npy", tmp_path / "new.npy", "--min-overlap", "0.99"
    )
    passing = cli(
        "compare-knn", tmp_path / "old.npy", tmp_path / "new.npy", "--min-overlap", "0.01"
    )
    assert (failing.code, passing.code) == (1, 0)
    assert "gate failed" in failing.stdout


def test_compare_needs_matching_rows_or_ids(cli, tmp_path):
    np.save(tmp_path / "a.npy", np.ones((5, 3)))
    np.save(tmp_path / "b.npy", np.ones((6, 3)))
    result = cli("compare-knn", tmp_path / "a.npy", tmp_path / "b.npy")
    assert result.code == 2
    assert "has 6 rows but" in result.stderr and "--id-column" in result.stderr


def test_duplicate_ids_are_an_input_error(cli, tmp_path):
    vectors = np.random.default_rng(4).standard_normal((4, 3))
    _write_parquet(tmp_path / "a.parquet", vectors, ["x", "y", "x", "z"])
    _write_parquet(tmp_path / "b.parquet", vectors, ["x", "y", "w", "z"])
    result = cli("compare-knn", tmp_path / "a.parquet", tmp_path / "b.parquet")
    assert result.code == 2 and "duplicate ids" in result.stderr


def test_compare_takes_one_or_two_files(cli, fixtures):
    result = cli(
        "compare-knn", fixtures / "sphere.npy", fixtures / "sphere.npy", fixtures / "sphere.npy"
    )
    assert result.code == 2 and "one or two files" in result.stderr


# Gate semantics ---------------------------------------------------------------------------------


def test_fail_on_warn_fails_on_warnings_and_exit_zero_reports_only(cli, fixtures):
    path = fixtures / "unnormalized.npy"  # warnings and a caution verdict, no failure
    assert cli("check", path, "-q").code == 0
    assert cli("check", path, "-q", "--fail-on", "warn").code == 1
    assert cli("check", path, "-q", "--fail-on", "warn", "--exit-zero").code == 0
    assert cli("check", fixtures / "nan_rows.npy", "-q", "--exit-zero").code == 0


def test_select_and_ignore_take_prefixes(cli, fixtures):
    path = fixtures / "sphere.npy"
    assert _codes(cli("check", path, "-f", "json", "--select", "EA3")) == ["EA301", "EA302"]
    ignored = _codes(cli("check", path, "-f", "json", "--ignore", "EA2,EA501"))
    assert ignored == [c for c in AUDIT_CODES if not c.startswith("EA2") and c != "EA501"]
    # The most specific prefix wins, as in ruff.
    both = _codes(cli("check", path, "-f", "json", "--select", "EA301", "--ignore", "EA3"))
    assert both == ["EA301"]


def test_unknown_selector_is_a_usage_error(cli, fixtures):
    result = cli("check", fixtures / "sphere.npy", "--select", "EA9")
    assert result.code == 2 and "'EA9' matches no check code" in result.stderr


def test_ignored_checks_do_not_drive_the_verdict(cli, fixtures):
    result = cli("check", fixtures / "nan_rows.npy", "-f", "json", "--ignore", "EA001")
    assert result.code == 0
    assert result.json()["verdict"]["level"] != "untrustworthy"


def test_enabled_codes_resolution():
    codes = {"EA101", "EA301", "EA302", "EA401"}
    assert enabled_codes(codes, None) == codes
    assert enabled_codes(codes, ("EA3",)) == {"EA301", "EA302"}
    assert enabled_codes(codes, ("EA3",), ("EA401",), ("EA302",)) == {"EA301", "EA401"}
    assert enabled_codes(codes, None, (), ("EA",)) == set()


# Configuration ---------------------------------------------------------------------------------


def test_pyproject_configuration_is_found_from_the_working_directory_up(
    cli, fixtures, tmp_path, monkeypatch
):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.embaudit]\ntrained-with = "cosine"\nk = 7\n'
        'ignore = ["EA5"]\n\n[tool.embaudit.checks.EA301]\nthreshold = 0.3\n'
    )
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    report = cli("check", fixtures / "sphere.npy", "-f", "json").json()
    assert report["params"]["trained_with"] == "cosine" and report["params"]["k"] == 7
    assert "EA501" not in [c["code"] for c in report["checks"]]
    assert next(c for c in report["checks"] if c["code"] == "EA301")["threshold"] == 0.3
    # Flags override the file.
    flagged = cli(
        "check", fixtures / "sphere.npy", "-f", "json", "-k", "5", "--trained-with", "dot"
    )
    assert flagged.json()["params"]["k"] == 5
    assert flagged.json()["params"]["trained_with"] == "dot"


def test_embaudit_toml_and_explicit_config(cli, fixtures, tmp_path, monkeypatch):
    (tmp_path / "embaudit.toml").write_text('select = ["EA1"]\nseed = 4\n')
    monkeypatch.chdir(tmp_path)
    assert _codes(cli("check", fixtures / "sphere.npy", "-f", "json")) == ["EA101"]
    other = tmp_path / "ci.toml"
    other.write_text('select = ["EA00"]\n')
    assert _codes(cli("check", fixtures / "sphere.npy", "-f", "json", "--config", other)) == [
        "EA001",
        "EA002",
        "EA003",
        "EA004",
        "EA005",
    ]


def test_severity_warn_keeps_a_finding_from_failing_the_gate(cli, fixtures, tmp_path):
    config = tmp_path / "embaudit.toml"
    config.write_text('[checks.EA001]\nseverity = "warn"\n')
    result = cli("check", fixtures / "nan_rows.npy", "-f", "json", "--config", config)
    assert result.code == 0
    ea001 = next(c for c in result.json()["checks"] if c["code"] == "EA001")
    assert ea001["status"] == "warn"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("tresholds = 1\n", "unknown key 'tresholds'"),
        ("k = 0\n", "'k' in embaudit.toml: must be an integer in [1, 1000], got 0"),
        ('trained-with = "softmax"\n', "'trained-with' in embaudit.toml"),
        ('select = ["EA9"]\n', "'select' in embaudit.toml: 'EA9' matches no check code"),
        ('fail-on = "error"\n', "'fail-on' in embaudit.toml"),
        ("[checks.EA999]\nthreshold = 1\n", "'checks.EA999' in embaudit.toml: unknown check code"),
        ("[checks.EA301]\nlimit = 1\n", "'checks.EA301.limit'"),
        ('[checks.EA301]\nthreshold = "high"\n', "'checks.EA301.threshold'"),
        ("k = [\n", "invalid TOML"),
    ],
)
def test_bad_configuration_exits_2_naming_the_key_and_the_file(
    cli, fixtures, tmp_path, content, fragment
):
    config = tmp_path / "embaudit.toml"
    config.write_text(content)
    result = cli("check", fixtures / "sphere.npy", "--config", config)
    assert result.code == 2
    assert result.stderr.count("\n") == 1
    assert str(config) in result.stderr and fragment in result.stderr


def test_missing_config_file(cli, fixtures, tmp_path):
    result = cli("check", fixtures / "sphere.npy", "--config", tmp_path / "none.toml")
    assert result.code == 2 and "no such configuration file" in result.stderr


# Formats ---------------------------------------------------------------------------------------


def test_markdown_is_a_table_of_codes_statuses_and_values(cli, fixtures):
    result = cli("check", fixtures / "nan_rows.npy", "-f", "markdown")
    assert result.code == 1
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "EA" in line]
    assert len(rows) == len(AUDIT_CODES)
    assert any("| EA001 | non-finite | fail |" in row for row in rows)
    assert "**untrustworthy**" in result.stdout


def test_junit_is_valid_xml_with_one_testcase_per_check(cli, fixtures):
    result = cli("check", fixtures / "nan_rows.npy", "-f", "junit")
    root = ET.fromstring(result.stdout)
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(AUDIT_CODES) + 1  # and the verdict
    failures = [case for case in cases if case.find("failure") is not None]
    assert {case.get("name") for case in failures} == {"EA001 non-finite", "verdict"}
    for element in (root, suite):
        assert element.get("tests") == str(len(cases))
        assert element.get("failures") == str(len(failures))
        assert element.get("errors") == "0"
        float(element.get("time"))
    warned = cli("check", fixtures / "unnormalized.npy", "-f", "junit", "--fail-on", "warn")
    warned_failures = ET.fromstring(warned.stdout).find("testsuite").get("failures")
    assert int(warned_failures) >= 2


def test_github_annotations_escape_as_the_runner_requires():
    assert escape_data("50% done\nnext\r") == "50%25 done%0Anext%0D"
    assert escape_property("a:b,c%") == "a%3Ab%2Cc%25"


def test_github_format_and_step_summary(cli, fixtures, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = cli("check", fixtures / "nan_rows.npy", "-f", "github")
    assert result.code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("::error title=embaudit EA001 non-finite::")
    assert any(
        line.startswith("::error title=embaudit verdict%3A untrustworthy::") for line in lines
    )
    assert all("\n" not in line for line in lines)
    written = summary.read_text()
    assert written.startswith("earlier step\n")  # appended, not replaced
    assert "| EA001 | non-finite | fail |" in written


@pytest.mark.parametrize("fmt", ["json", "markdown", "junit", "github", "table"])
def test_every_format_renders_compare_reports(cli, fixtures, fmt):
    one = cli("compare-knn", fixtures / "sphere.npy", "-f", fmt)
    two = cli(
        "compare-knn",
        fixtures / "sphere.npy",
        fixtures / "sphere.npy",
        "-f",
        fmt,
        "--min-overlap",
        "0.5",
    )
    assert one.code == 0 and two.code == 0
    assert one.stdout and two.stdout


def test_report_is_written_when_the_gate_fails_in_every_format(cli, fixtures, tmp_path):
    for fmt in ("json", "markdown", "junit", "github", "table"):
        target = tmp_path / f"report.{fmt}"
        result = cli("check", fixtures / "nan_rows.npy", "-f", fmt, "-o", target)
        assert result.code == 1 and result.stdout == ""
        assert "EA001" in target.read_text()


# Baseline and determinism ----------------------------------------------------------------------


def test_baseline_adds_drift_checks(cli, fixtures):
    same = cli(
        "check", fixtures / "sphere.npy", "--baseline", fixtures / "sphere.npy", "-f", "json"
    ).json()
    drift = {c["code"]: c for c in same["checks"] if c["code"].startswith("EA6")}
    assert set(drift) == {"EA601", "EA602", "EA603"}
    assert drift["EA601"]["value"] == 1.0 and drift["EA602"]["value"] == 0.0
    assert all(c["status"] == "pass" for c in drift.values())
    shifted = cli(
        "check", fixtures / "unnormalized.npy", "--baseline", fixtures / "sphere.npy", "-f", "json"
    ).json()
    checks = {c["code"]: c for c in shifted["checks"]}
    assert checks["EA602"]["status"] == "warn" and checks["EA602"]["value"] > 0.3
    assert checks["EA601"]["value"] == 1.0  # rescaled rows: the cosine neighbours are unchanged
    assert shifted["input"]["baseline"]["path"].endswith("sphere.npy")


def test_verdict_change_warns_when_the_export_got_worse(cli, fixtures):
    report = cli(
        "check", fixtures / "nan_rows.npy", "--baseline", fixtures / "sphere.npy", "-f", "json"
    ).json()
    ea603 = next(c for c in report["checks"] if c["code"] == "EA603")
    assert ea603["status"] == "warn"
    assert ea603["metrics"] == {"before": "caution", "after": "untrustworthy"}


def test_same_input_options_and_seed_give_identical_json(cli, fixtures):
    runs = []
    for _ in range(2):
        document = cli("check", fixtures / "unnormalized.npy", "-f", "json", "--seed", "7").json()
        document.pop("timings")
        runs.append(json.dumps(document, sort_keys=True))
    assert runs[0] == runs[1]
    compares = []
    for _ in range(2):
        document = cli("compare-knn", fixtures / "unnormalized.npy", "-f", "json").json()
        document.pop("timings")
        compares.append(document)
    assert compares[0] == compares[1]


def test_shipped_pre_commit_hooks_are_well_formed():
    from pathlib import Path

    import yaml

    hooks = yaml.safe_load((Path(__file__).parent.parent / ".pre-commit-hooks.yaml").read_text())
    assert [hook["id"] for hook in hooks] == ["embaudit", "embaudit-compare-knn"]
    for hook in hooks:
        assert {"id", "name", "entry", "language", "files"} <= set(hook)
        assert hook["entry"].split()[0] == "embaudit"
        assert hook["language"] == "python" and hook["pass_filenames"] is False


# Options that would make a gate pass without measuring anything -------------------------------


def test_k_is_bounded(cli, fixtures):
    result = cli("check", fixtures / "sphere.npy", "-k", "1001")
    assert result.code == 2 and "-k must be an integer in [1, 1000], got 1001" in result.stderr


def test_k_at_least_the_other_rows_skips_the_neighbour_checks(cli, tmp_path):
    np.save(tmp_path / "small.npy", np.random.default_rng(0).standard_normal((30, 4)))
    report = cli("check", tmp_path / "small.npy", "-k", "29", "-f", "json").json()
    statuses = {c["code"]: c["status"] for c in report["checks"]}
    for code in ("EA301", "EA302", "EA401", "EA402"):
        assert statuses[code] == "skip"
    assert "every row is every row's neighbour" in next(
        c["message"] for c in report["checks"] if c["code"] == "EA401"
    )


def test_compare_and_gauge_reject_a_k_that_leaves_nothing_to_compare(cli, fixtures, tmp_path):
    result = cli(
        "compare-knn", fixtures / "sphere.npy", fixtures / "sphere.npy", "-k", "1000", "--seed", "1"
    )
    assert result.code == 0  # 2,000 matched items: k = 1000 still leaves a choice
    np.save(tmp_path / "a.npy", np.random.default_rng(1).standard_normal((20, 4)))
    assert cli("compare-knn", tmp_path / "a.npy", "-k", "19").code == 2
    np.save(tmp_path / "u.npy", np.random.default_rng(2).standard_normal((20, 4)))
    gauge = cli("gauge", tmp_path / "a.npy", tmp_path / "u.npy", "-k", "10", "--sample", "5")
    assert gauge.code == 2 and "--sample" in gauge.stderr
    infinite = cli("gauge", tmp_path / "a.npy", tmp_path / "u.npy", "--max-condition", "inf")
    assert infinite.code == 2


def test_a_selection_that_runs_no_check_is_a_usage_error(cli, fixtures):
    result = cli("check", fixtures / "sphere.npy", "--ignore", "EA")
    assert result.code == 2 and "runs no check" in result.stderr


def test_a_broken_pyproject_meant_for_embaudit_is_an_error(cli, fixtures, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[tool.embaudit\nk = 1\n")
    monkeypatch.chdir(tmp_path)
    result = cli("check", fixtures / "sphere.npy", "-q")
    assert result.code == 2 and "pyproject.toml: invalid TOML" in result.stderr


def test_api_validates_thresholds_and_severities(fixtures):
    from embaudit import UsageError

    with pytest.raises(UsageError, match="thresholds of EA301"):
        audit(fixtures / "sphere.npy", thresholds={"EA301": "x"})
    with pytest.raises(UsageError, match="severities of EA301"):
        audit(fixtures / "sphere.npy", severities={"EA301": "pass"})


def test_compare_says_how_many_rows_it_left_out(cli, fixtures):
    report = cli("compare-knn", fixtures / "nan_rows.npy", "-f", "json").json()
    assert report["excluded_rows"] == 4
    table = cli("compare-knn", fixtures / "nan_rows.npy")
    assert "left out of the neighbour lists: 4" in table.stdout
    files = cli("compare-knn", fixtures / "sphere.npy", fixtures / "zero_rows.npy", "-f", "json")
    assert files.json()["excluded_rows"] == {"old": 0, "new": 2}


def _documented_configuration() -> str:
    """The sample ``[tool.embaudit]`` block of docs/configuration.md."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    block = page.split("```toml\n", 1)[1].split("```", 1)[0]
    assert block.startswith("[tool.embaudit]")
    return block


def test_the_documented_configuration_applies_to_every_format_it_names(cli, tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n' + _documented_configuration()
    )
    (tmp_path / "exports").mkdir()
    items = rng.standard_normal((300, 16)).astype(np.float32)
    np.savez(tmp_path / "exports" / "items1.npz", item_factors=items, user_factors=items[:50])
    np.save(tmp_path / "corpus.npy", items)
    vectors = pa.array(list(items), type=pa.list_(pa.float32(), 16))
    other = pa.array(list(items[:, :8]), type=pa.list_(pa.float32(), 8))
    pq.write_table(pa.table({"other": other, "embedding": vectors}), tmp_path / "corpus.parquet")
    monkeypatch.chdir(tmp_path)

    for name, objective in [
        ("exports/items1.npz", "dot"),  # its glob: the objective and the array
        ("corpus.npy", "cosine"),  # no glob: the top-level settings only
        ("corpus.parquet", "cosine"),  # its glob: the column of two vector columns
    ]:
        result = cli("check", name, "-f", "json")
        assert result.code in (0, 1), (name, result.stderr)
        report = result.json()
        assert report["params"]["trained_with"] == objective and report["input"]["d"] == 16
        codes = [check["code"] for check in report["checks"]]
        assert "EA501" not in codes  # ignored
        assert next(c for c in report["checks"] if c["code"] == "EA301")["threshold"] == 0.7
        # From Python, config=True reads the file as the command line does, globs included.
        api = audit(name, config=True, select="EA3")
        assert api.options.trained_with.value == objective and api.input["d"] == 16
        assert api.check("EA301").threshold == 0.7
    # Without the parquet glob (the page's last table), the file's two vector columns are
    # ambiguous: its column comes from the glob.
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n'
        + _documented_configuration().split("[[tool.embaudit.files]]\npath")[0]
    )
    ambiguous = cli("check", "corpus.parquet", "-q")
    assert ambiguous.code == 2 and "corpus.parquet" in ambiguous.stderr


@pytest.mark.parametrize(
    ("setting", "flag", "value", "where"),
    [
        ('column = "embedding"', "--column", "embedding", "'column' in [tool.embaudit]: applies"),
        ('key = "items"', "--key", "items", "'key' in [tool.embaudit]: applies to .npz"),
        ("truncate = [64]", "--truncate", 64, "'truncate' in [tool.embaudit]: must be below"),
    ],
)
def test_an_option_the_input_rejects_is_named_where_it_was_set(
    cli, fixtures, tmp_path, monkeypatch, setting, flag, value, where
):
    # Checked against the input after the options are read: the configuration's file and key
    # when it set the value, the flag when the command line did (which overrides the file).
    configuration = tmp_path / "pyproject.toml"
    configuration.write_text(f"[tool.embaudit]\n{setting}\n")
    monkeypatch.chdir(tmp_path)
    from_file = cli("check", fixtures / "unnormalized.npy", "-q")
    assert from_file.code == 2
    assert from_file.stderr.startswith(f"embaudit: error: {configuration}: {where}")
    assert flag not in from_file.stderr and from_file.stderr.count("\n") == 1
    from_flag = cli("check", fixtures / "unnormalized.npy", "-q", flag, str(value))
    assert from_flag.code == 2
    assert from_flag.stderr.startswith(f"embaudit: error: {flag} ")
    assert str(configuration) not in from_flag.stderr
    with pytest.raises(ConfigError, match=re.escape(where)):
        audit(fixtures / "unnormalized.npy", config=True)
    with pytest.raises(ParameterError, match=f"^{flag.lstrip('-')} "):
        audit(fixtures / "unnormalized.npy", config=True, **{flag.lstrip("-"): value})
    # compare-knn reads the same file.
    if flag != "--truncate":
        compared = cli("compare-knn", fixtures / "unnormalized.npy", "-q")
        assert compared.code == 2 and compared.stderr.startswith(
            f"embaudit: error: {configuration}"
        )

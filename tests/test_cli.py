"""`embaudit check` end to end: the output contract, exit codes and options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embaudit.checks import REGISTRY


def test_normalized_fixture_reports_ea101_normalized(cli, fixtures):
    result = cli("check", fixtures / "sphere.npy", "--format", "json")
    assert result.code == 0, result.stderr
    ea101 = next(c for c in result.json()["checks"] if c["code"] == "EA101")
    assert ea101["metrics"]["normalized"] is True
    assert ea101["status"] == "pass"


def test_json_follows_the_output_contract(cli, fixtures):
    report = cli("check", fixtures / "nan_rows.npy", "-f", "json", "-k", "7", "--seed", "3").json()
    assert report["schema_version"] == 1
    assert {"tool", "input", "params", "verdict", "checks", "summary"} <= set(report)
    assert report["tool"]["name"] == "embaudit"
    assert report["input"]["path"].endswith("nan_rows.npy")
    assert report["input"]["format"] == "npy"
    assert (report["input"]["n"], report["input"]["d"]) == (2000, 64)
    assert report["input"]["dtype"] == "float32"
    # EA302 sits at its threshold here: measured again, the report says how (params.adaptive).
    adaptive = report["params"].pop("adaptive")
    assert adaptive["grew"] == ["EA302"] and adaptive["rounds"] > 1
    ea302 = next(check for check in report["checks"] if check["code"] == "EA302")
    assert ea302["metrics"]["sampling"]["gauge_queries"] == 10 * 2 ** (adaptive["rounds"] - 1)
    assert report["params"] == {
        "k": 7,
        "seed": 3,
        "trained_with": "unknown",
        "fail_on": "fail",
        "queries": 500,
        "gauge_queries": 10,
        "gauge_draws": 6,
        "gauge_rows": None,
        "gauge_levels": [0.1, 0.25, 0.5, 1.0],
        "sample": 5000,
        "pairs": 20000,
        "graphs": 1,
        "engine": "local",
    }
    assert report["verdict"]["level"] in {"trustworthy", "caution", "untrustworthy"}
    assert report["verdict"]["reasons"]
    codes = [check["code"] for check in report["checks"]]
    default_codes = (
        c for c, check in REGISTRY.items() if not check.needs_baseline and not check.option
    )
    assert codes == sorted(default_codes)
    for check in report["checks"]:
        assert set(check) == {
            "code",
            "name",
            "status",
            "value",
            "threshold",
            "message",
            "metrics",
        }
        assert check["status"] in {"pass", "warn", "fail", "skip"}
    statuses = [check["status"] for check in report["checks"]]
    assert report["summary"] == {s: statuses.count(s) for s in ("pass", "warn", "fail", "skip")}


def test_defect_rows_are_listed_and_excluded(cli, fixtures):
    result = cli("check", fixtures / "nan_rows.npy", "-f", "json")
    report = result.json()
    assert result.code == 1
    ea001 = next(c for c in report["checks"] if c["code"] == "EA001")
    assert ea001["status"] == "fail"
    assert ea001["metrics"]["rows"] == [17, 404, 808, 1999]
    assert ea001["metrics"]["count"] == 4
    assert (ea001["metrics"]["nan_rows"], ea001["metrics"]["inf_rows"]) == (3, 1)
    assert report["input"]["excluded_rows"] == {"non-finite": 4, "zero-vectors": 0}
    assert report["input"]["n_used"] == 1996
    assert report["verdict"]["level"] == "untrustworthy"
    assert any("EA001" in reason for reason in report["verdict"]["reasons"])


def test_zero_rows_fixture(cli, fixtures):
    report = cli("check", fixtures / "zero_rows.npy", "-f", "json").json()
    ea002 = next(c for c in report["checks"] if c["code"] == "EA002")
    assert ea002["metrics"]["rows"] == [5, 1234]
    assert report["input"]["n_used"] == 1998


def test_parquet_findings_carry_the_id_column(cli, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    vectors[[3, 30]] = 0.0
    table = pa.table(
        {
            "doc": [f"d{i}" for i in range(50)],
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 8),
        }
    )
    pq.write_table(table, tmp_path / "e.parquet")
    report = cli("check", tmp_path / "e.parquet", "--id-column", "doc", "-f", "json").json()
    ea002 = next(c for c in report["checks"] if c["code"] == "EA002")
    assert ea002["metrics"]["rows"] == [3, 30]
    assert ea002["metrics"]["ids"] == ["d3", "d30"]
    assert "d3, d30" in ea002["message"]


@pytest.mark.parametrize(
    ("name", "code"),
    [("sphere.npy", 0), ("nan_rows.npy", 1), ("zero_rows.npy", 1), ("unnormalized.npy", 0)],
)
def test_exit_code_follows_failing_checks_and_verdict(cli, fixtures, name, code):
    assert cli("check", fixtures / name, "-q").code == code


def test_output_writes_the_report_to_a_file_and_nothing_to_stdout(cli, fixtures, tmp_path):
    target = tmp_path / "report.json"
    result = cli("check", fixtures / "nan_rows.npy", "-f", "json", "--output", target)
    assert result.code == 1  # the report is written even when the gate fails
    assert result.stdout == ""
    assert json.loads(target.read_text())["schema_version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary left behind


def test_output_to_a_missing_directory_is_a_usage_error(cli, fixtures, tmp_path):
    result = cli("check", fixtures / "sphere.npy", "-o", tmp_path / "no" / "such" / "r.json")
    assert result.code == 2
    assert result.stderr.count("\n") == 1
    assert "--output" in result.stderr


def test_table_format_shows_checks_histogram_and_verdict(cli, fixtures):
    result = cli("check", fixtures / "unnormalized.npy")
    assert result.code == 0
    for code, check in REGISTRY.items():
        assert (code in result.stdout) == (not check.needs_baseline and not check.option)
    assert "Norms" in result.stdout
    assert any(bar in result.stdout for bar in "▁▂▃▄▅▆▇█")
    assert "Verdict: caution" in result.stdout
    assert "Normalize the vectors before indexing" in result.stdout


def test_quiet_prints_only_the_verdict_line(cli, fixtures):
    result = cli("check", fixtures / "nan_rows.npy", "--quiet")
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{fixtures / 'nan_rows.npy'}: untrustworthy (1 fail")
    assert result.stderr == ""  # not even the note on an undeclared objective


def test_an_undeclared_objective_is_noted_on_stderr_until_declared(cli, fixtures):
    undeclared = cli("check", fixtures / "unnormalized.npy")
    assert "note: the training objective is not declared" in undeclared.stderr
    assert "not declared" not in undeclared.stdout
    declared = cli("check", fixtures / "unnormalized.npy", "--trained-with", "cosine")
    assert declared.stderr == ""


def test_trained_with_changes_statuses_not_values(cli, fixtures):
    unknown = cli("check", fixtures / "unnormalized.npy", "-f", "json").json()
    dot = cli("check", fixtures / "unnormalized.npy", "-f", "json", "--trained-with", "dot").json()
    by_code = {c["code"]: c for c in unknown["checks"]}
    for check in dot["checks"]:
        assert check["value"] == by_code[check["code"]]["value"]
        assert check["metrics"] == by_code[check["code"]]["metrics"]
    assert by_code["EA101"]["status"] == "warn"
    assert next(c for c in dot["checks"] if c["code"] == "EA101")["status"] == "pass"
    assert unknown["verdict"]["level"] == "caution"
    assert dot["verdict"]["level"] == "untrustworthy"
    assert next(c for c in dot["checks"] if c["code"] == "EA402")["status"] == "fail"


def test_help_teaches_with_examples(cli):
    result = cli("check", "--help")
    assert result.code == 0
    assert "Examples" in result.stdout
    for option in ("--format", "--output", "--trained-with", "--seed", "--column", "--quiet"):
        assert option in result.stdout
    root = cli("--help")
    assert "check" in root.stdout and "Exit codes" in root.stdout


def test_version(cli):
    result = cli("--version")
    assert result.code == 0
    assert result.stdout.startswith("embaudit ")


def test_no_arguments_prints_help_and_exits_2(cli):
    result = cli()
    assert result.code == 2
    assert "Usage" in result.stdout


def test_internal_errors_exit_3_without_traceback(cli, fixtures, monkeypatch):
    import embaudit.cli

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(embaudit.cli, "audit", broken)
    monkeypatch.delenv("EMBAUDIT_DEBUG", raising=False)
    result = cli("check", fixtures / "sphere.npy")
    assert result.code == 3
    assert result.stderr.count("\n") == 1
    assert "internal error" in result.stderr and "Traceback" not in result.stderr


def test_module_entry_point_runs(cli_process, fixtures):
    done = cli_process("check", fixtures / "sphere.npy", "--trained-with", "cosine", "-q")
    assert done.code == 0, done.stderr
    assert "trustworthy" in done.stdout
    assert done.stderr == ""


def test_paths_are_reported_as_given(cli, fixtures):
    relative = Path("fixtures") / "sphere.npy"
    report = cli("check", fixtures / "sphere.npy", "-f", "json").json()
    assert report["input"]["path"].endswith(str(relative))


def test_output_through_a_symlink_writes_the_linked_file(cli, fixtures, tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o644)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert cli("check", fixtures / "sphere.npy", "-f", "json", "-o", link).code == 0
    assert link.is_symlink()
    assert json.loads(real.read_text())["schema_version"] == 1
    assert real.stat().st_mode & 0o777 == 0o644


def test_output_to_a_directory_is_a_usage_error_and_leaves_nothing(cli, fixtures, tmp_path):
    result = cli("check", fixtures / "sphere.npy", "-o", tmp_path)
    assert result.code == 2
    assert "is a directory" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_explain_every_code(cli):
    listing = cli("explain")
    assert listing.code == 0
    for code in REGISTRY:
        assert code in listing.stdout
        result = cli("explain", code.lower())
        assert result.code == 0
        for section in ("What it measures", "Why it matters", "How to fix it"):
            assert section in result.stdout


def test_explain_an_unknown_code_exits_2(cli):
    result = cli("explain", "EA999")
    assert result.code == 2
    assert "unknown check code or name 'EA999'" in result.stderr


def test_progress_is_hidden_when_stderr_is_not_a_terminal():
    from embaudit.progress import pass_progress

    with pass_progress(True) as reporter:
        assert reporter is None  # pytest captures stderr: not a terminal


def test_progress_bar_shows_rows_per_second_on_a_terminal(monkeypatch):
    import io

    import embaudit.progress as progress_module

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(progress_module.sys, "stderr", terminal)
    monkeypatch.setattr(progress_module, "SHOW_AFTER", 0.0)
    with progress_module.pass_progress(True) as reporter:
        assert reporter is not None
        advance = reporter("audit x.npy", 1000)
        advance(400)
        advance(600)
    assert "audit x.npy" in terminal.getvalue()
    assert "rows/s" in terminal.getvalue()
    with progress_module.pass_progress(False) as reporter:
        assert reporter is None  # --quiet

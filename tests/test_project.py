"""Project mode: ``embaudit check`` with no path audits every export the configuration lists
(``[[tool.embaudit.files]]``), each with the settings of its glob, and exits with the worst."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embaudit import ConfigError, audit, audit_project

D = 16
#: Small samples: the project's exports are small and the tests look at the gate, not values.
SAMPLES = "queries = 60\ngauge-queries = 20\nsample = 200\npairs = 2000\nseed = 1\n"


def _sphere(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with an npy, an npz (two arrays: the key comes from its glob's settings) and
    a parquet export, the parquet one with a NaN row; the configuration in pyproject.toml."""
    exports = tmp_path / "exports"
    exports.mkdir()
    np.save(exports / "sentences.npy", _sphere(300, 0))
    np.savez(exports / "items.npz", item_factors=_sphere(300, 1), user_factors=_sphere(50, 2))
    docs = _sphere(300, 3)
    docs[7] = np.nan
    table = pa.table(
        {
            "doc_id": [f"d{i}" for i in range(len(docs))],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(docs.ravel()), D),
        }
    )
    pq.write_table(table, exports / "docs.parquet")
    (tmp_path / "pyproject.toml").write_text(
        "[project]\nname = 'demo'\n\n[tool.embaudit]\n" + SAMPLES + 'trained-with = "cosine"\n\n'
        "[[tool.embaudit.files]]\npath = 'exports/*.npy'\n\n"
        "[[tool.embaudit.files]]\npath = 'exports/items*.npz'\nkey = 'item_factors'\n"
        "trained-with = 'l2'\n\n"
        "[[tool.embaudit.files]]\npath = 'exports/*.parquet'\nid-column = 'doc_id'\n"
        "fail-on = 'warn'\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


EXPORTS = ["exports/sentences.npy", "exports/items.npz[item_factors]", "exports/docs.parquet"]


def test_check_without_a_path_audits_every_export_with_its_globs_settings(cli, project):
    result = cli("check", "-f", "json")
    document = json.loads(result.stdout)
    reports = document["reports"]
    assert [r["input"]["path"] for r in reports] == EXPORTS
    # Each glob's settings reached the files it matched: the key, the objective, the ids.
    assert [r["params"]["trained_with"] for r in reports] == ["cosine", "l2", "cosine"]
    non_finite = next(c for c in reports[2]["checks"] if c["code"] == "EA001")
    assert non_finite["metrics"]["ids"] == ["d7"]
    # The worst decides the exit code: the parquet export has a NaN row.
    assert result.code == 1
    assert document["summary"]["failed"] == ["exports/docs.parquet"]
    assert document["summary"]["exports"] == 3
    # Every report is the one a single check of that file with the same settings gives.
    alone = cli("check", "exports/sentences.npy", "-f", "json")
    expected = json.loads(alone.stdout)
    assert [(c["code"], c["value"]) for c in reports[0]["checks"]] == [
        (c["code"], c["value"]) for c in expected["checks"]
    ]


def test_table_prints_one_line_per_export_and_a_summary(cli, project):
    result = cli("check")
    lines = result.stdout.strip().splitlines()
    for path in EXPORTS:
        assert sum(path in line for line in lines[:-1]) == 1, result.stdout
    docs_line = next(line for line in lines if "docs.parquet" in line)
    assert "untrustworthy" in docs_line and "failed (--fail-on warn)" in docs_line
    assert "3 exports" in lines[-1] and "gate failed on exports/docs.parquet" in lines[-1]
    assert result.code == 1


def _repair_docs(project: Path) -> None:
    """Write the parquet export again without its NaN row."""
    path = project / "exports" / "docs.parquet"
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(_sphere(300, 3).ravel()), D)
    pq.write_table(pq.read_table(path).set_column(1, "embedding", vectors), path)


def test_fail_on_per_file_and_global(cli, project):
    per_file = json.loads(cli("check", "-f", "json").stdout)
    assert [r["params"]["fail_on"] for r in per_file["reports"]] == ["fail", "fail", "warn"]
    everywhere = json.loads(cli("check", "-f", "json", "--fail-on", "warn").stdout)
    assert [r["params"]["fail_on"] for r in everywhere["reports"]] == ["warn"] * 3
    # A warning fails only the exports whose gate is warn.
    _repair_docs(project)
    warned = cli("check", "-f", "json", "--fail-on", "warn")
    levels = [r["verdict"]["level"] for r in json.loads(warned.stdout)["reports"]]
    summaries = [r["summary"]["warn"] for r in json.loads(warned.stdout)["reports"]]
    assert warned.code == (1 if any(summaries) or "caution" in levels else 0)
    assert json.loads(warned.stdout)["summary"]["failed"] == [
        path
        for path, warns, level in zip(EXPORTS, summaries, levels, strict=True)
        if warns or level == "caution"
    ]


def test_the_exit_code_is_the_worst_gate(cli, project):
    assert cli("check").code == 1  # the parquet export has a NaN row
    assert cli("check", "--exit-zero").code == 0
    _repair_docs(project)
    repaired = cli("check", "--fail-on", "fail")
    assert repaired.code == 0, repaired.stdout


def test_a_glob_that_matches_nothing_is_an_error_naming_it(cli, project):
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n[[tool.embaudit.files]]\npath = 'old/*.npy'\n")
    result = cli("check")
    assert result.code == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "'old/*.npy' matches no file" in line and "files[3]" in line
    with pytest.raises(ConfigError, match=r"'old/\*\.npy' matches no file"):
        audit_project()


def test_no_configuration_or_no_exports_is_a_usage_error(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("check")
    assert result.code == 2
    assert "no FILE given and no configuration file found" in result.stderr
    (tmp_path / "embaudit.toml").write_text("k = 5\n")
    result = cli("check")
    assert (result.code, len(result.stderr.splitlines())) == (2, 1)
    assert "embaudit.toml: lists no exports" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline", "exports/sentences.npy"], "--baseline applies to one FILE"),
        (["-f", "html"], "--format html renders one export"),
    ],
)
def test_what_project_mode_refuses_is_named(cli, project, args, message):
    result = cli("check", *args)
    assert result.code == 2
    assert message in result.stderr and len(result.stderr.splitlines()) == 1


def test_junit_holds_one_testsuite_per_export(cli, project):
    result = cli("check", "-f", "junit")
    root = ET.fromstring(result.stdout)
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [f"embaudit check {p}" for p in EXPORTS]
    assert int(root.get("failures")) == sum(int(s.get("failures")) for s in suites) > 0
    assert int(suites[2].get("failures")) > 0


def test_markdown_and_github_hold_every_export(cli, project, tmp_path, monkeypatch):
    markdown = cli("check", "-f", "markdown").stdout
    assert markdown.startswith("## embaudit check: **failed** — 3 exports")
    assert all(f"`{path}`" in markdown for path in EXPORTS)
    assert markdown.count("### embaudit check:") == 3
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    github = cli("check", "-f", "github").stdout
    assert "::error title=embaudit EA001 non-finite::exports/docs.parquet:" in github
    assert github.splitlines()[-1].startswith("embaudit check: 3 exports; gate failed on")
    assert summary.read_text().count("### embaudit check:") == 3


def test_quiet_and_output(cli, project):
    quiet = cli("check", "-q")
    assert len(quiet.stdout.splitlines()) == 3
    written = cli("check", "-f", "json", "-o", project / "report.json")
    assert written.stdout == ""
    assert len(json.loads((project / "report.json").read_text())["reports"]) == 3


def test_audit_project_is_the_python_api_of_project_mode(project):
    result = audit_project(select="EA0")
    assert [report.subject for report in result.reports] == EXPORTS
    assert result.failed()
    npz = result.reports[1]
    alone = audit(
        "exports/items.npz", key="item_factors", trained_with="l2", select="EA0", config=True
    )
    assert [c.value for c in npz.checks] == [c.value for c in alone.checks]


def test_globs_are_relative_to_the_configuration_not_the_working_directory(
    cli, project, tmp_path_factory, monkeypatch
):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    result = cli("check", "--config", project / "pyproject.toml", "-f", "json")
    paths = [r["input"]["path"] for r in json.loads(result.stdout)["reports"]]
    assert paths == [str(project / path) for path in EXPORTS]
    assert result.code == 1


def test_help_names_the_table_that_lists_the_exports(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    shown = cli("check", "--help").stdout
    assert shown.count("[[tool.embaudit.files]]") == 2  # the argument and the description


def test_a_bad_setting_under_a_glob_is_blamed_on_that_entry(cli, project):
    pyproject = project / "pyproject.toml"
    # column applies to parquet, not to the .npy files the first glob matches
    text = pyproject.read_text().replace(
        "path = 'exports/*.npy'\n", "path = 'exports/*.npy'\ncolumn = 'embedding'\n"
    )
    pyproject.write_text(text)
    result = cli("check")
    assert result.code == 2
    [line] = result.stderr.splitlines()
    assert "'column' in [tool.embaudit] files[0]: applies to parquet" in line

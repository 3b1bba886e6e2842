"""The GitHub Action (action.yml): its gate step, run as the runner runs it.

Each test takes a workflow's ``with:`` inputs, fills the step's ``env`` from them (the inputs'
defaults for the rest) as GitHub does, and runs the step's ``run`` command in bash with
``GITHUB_OUTPUT`` and ``GITHUB_STEP_SUMMARY`` pointing at temporary files, from the repository's
root (the workspace, where the fixtures are).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())


@dataclass
class StepRun:
    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str


def _gate_step() -> dict[str, Any]:
    steps = ACTION["runs"]["steps"]
    return next(step for step in steps if step.get("id") == "gate")


def _fill(text: str, inputs: dict[str, str]) -> str:
    """Replace ``${{ inputs.NAME }}`` as the runner does: the given value, else the default."""
    defaults = {name: str(spec.get("default", "")) for name, spec in ACTION["inputs"].items()}

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in defaults, f"action.yml uses an undeclared input {name}"
        return inputs.get(name, defaults[name])

    return re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", value, text)


def run_gate(tmp_path: Path, **inputs: str) -> StepRun:
    step = _gate_step()
    output, summary = tmp_path / "github_output", tmp_path / "step_summary.md"
    env = {
        **os.environ,
        # The Python that setup-python and the install step leave on PATH: this one.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_ACTION_PATH": str(ROOT),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "PYTHONWARNINGS": "error",
        **{name: _fill(str(value), inputs) for name, value in step["env"].items()},
    }
    done = subprocess.run(
        [step["shell"], "-c", step["run"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    outputs = {}
    if output.exists():
        for line in output.read_text().splitlines():
            name, _, value = line.partition("=")
            outputs[name] = value
    return StepRun(
        done.returncode,
        done.stdout,
        done.stderr,
        outputs,
        summary.read_text() if summary.exists() else "",
    )


def test_every_input_reaches_the_gate_step_and_every_output_comes_from_it():
    step = _gate_step()
    passed = " ".join(str(value) for value in step["env"].values())
    for name in set(ACTION["inputs"]) - {"python-version"}:
        assert f"inputs.{name} }}}}" in passed, name
    for name, spec in ACTION["outputs"].items():
        assert spec["value"] == f"${{{{ steps.gate.outputs.{name} }}}}"
    install = next(
        step for step in ACTION["runs"]["steps"] if step.get("name") == "Install embaudit"
    )
    assert '"$GITHUB_ACTION_PATH"' in install["run"]


def test_a_dot_trained_export_fails_the_gate_with_annotations_a_summary_and_a_json_report(
    tmp_path,
):
    report = tmp_path / "reports" / "embaudit.json"
    step = run_gate(
        tmp_path,
        paths="fixtures/unnormalized.npy",
        **{"trained-with": "dot", "report": str(report)},
    )
    assert step.code == 1, step.stderr
    assert step.outputs == {"verdict": "untrustworthy", "exit-code": "1", "report": str(report)}
    assert "::error title=embaudit verdict%3A untrustworthy::" in step.stdout
    assert "::error title=embaudit EA402 cosine-vs-dot::" in step.stdout
    assert "untrustworthy" in step.summary and "EA402" in step.summary
    document = json.loads(report.read_text())
    assert document["verdict"]["level"] == "untrustworthy"
    assert document["params"]["trained_with"] == "dot"


def test_a_sphere_trained_export_passes_with_a_junit_report(tmp_path):
    report = tmp_path / "embaudit.xml"
    step = run_gate(
        tmp_path,
        paths="fixtures/sphere.npy",
        **{"trained-with": "cosine", "report": str(report), "report-format": "junit"},
    )
    assert step.code == 0, step.stderr
    assert step.outputs == {"verdict": "trustworthy", "exit-code": "0", "report": str(report)}
    assert "::error" not in step.stdout
    suites = ET.parse(report).getroot()
    assert suites.iter("testcase")
    assert not list(suites.iter("failure"))


def test_extra_args_reach_the_command(tmp_path):
    step = run_gate(
        tmp_path,
        paths="fixtures/unnormalized.npy",
        **{"trained-with": "cosine", "args": "--fail-on warn --select EA1"},
    )
    assert step.code == 1, step.stderr
    assert step.outputs["exit-code"] == "1"
    assert "::error title=embaudit EA101 norm-spread::" in step.stdout
    assert "EA201" not in step.stdout + step.summary


def test_compare_knn_of_two_exports_gates_on_min_overlap(tmp_path):
    step = run_gate(
        tmp_path,
        paths="fixtures/sphere.npy fixtures/unnormalized.npy",
        command="compare-knn",
        args="--min-overlap 0.9 --queries 100",
    )
    assert step.code == 0, step.stderr
    assert step.outputs == {"verdict": "passed", "exit-code": "0", "report": ""}


def test_a_missing_file_is_an_input_error_with_outputs(tmp_path):
    step = run_gate(tmp_path, paths="fixtures/missing.npy")
    assert step.code == 2
    assert step.outputs == {"verdict": "error", "exit-code": "2", "report": ""}
    assert "fixtures/missing.npy" in step.stderr
    assert "Traceback" not in step.stderr


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"paths": ""}, "paths is required"),
        ({"paths": "fixtures/sphere.npy", "command": "gauge"}, "command must be one of"),
        (
            {"paths": "fixtures/sphere.npy", "report": "r.html", "report-format": "html"},
            "report-format must be one of json, junit",
        ),
        (
            {"paths": "fixtures/sphere.npy", "command": "compare-knn", "trained-with": "dot"},
            "trained-with applies to check, not compare-knn",
        ),
    ],
)
def test_bad_inputs_exit_2_naming_the_input(tmp_path, inputs, message):
    step = run_gate(tmp_path, **inputs)
    assert step.code == 2
    assert message in step.stderr
    assert step.outputs == {"verdict": "error", "exit-code": "2"}


def test_the_script_runs_outside_github(tmp_path):
    """Without GITHUB_OUTPUT or GITHUB_STEP_SUMMARY: annotations on stdout, nothing else."""
    done = subprocess.run(
        [sys.executable, "-m", "embaudit._action"],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")},
            "INPUT_PATHS": "fixtures/sphere.npy",
            "INPUT_TRAINED_WITH": "cosine",
            "INPUT_ARGS": "--select EA0",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "embaudit check fixtures/sphere.npy" in done.stdout

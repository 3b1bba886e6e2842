"""The golden reports: every command under several option sets, on the fixtures and on generated
exports. ``tests/test_golden.py`` compares each run with its stored report, figure for figure;
``python -m tests.golden_cases`` rewrites them after a change that is meant to move a figure.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from embaudit.cli import main
from tests.exports import encoder_like, lognormal_norms

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
#: Where the generated exports are written, relative to the repository (ignored by git): a
#: fixed path, so that the reports (and the table's line breaks) do not depend on it.
TMP = "test-artifacts/golden"

#: name -> command line, run from the repository's root.
CASES: dict[str, list[str]] = {
    "check-sphere": ["check", "fixtures/sphere.npy"],
    "check-unnormalized-dot": ["check", "fixtures/unnormalized.npy", "--trained-with", "dot"],
    "check-unnormalized-cosine-k5-seed3": [
        "check",
        "fixtures/unnormalized.npy",
        "--trained-with",
        "cosine",
        "-k",
        "5",
        "--seed",
        "3",
    ],
    "check-nan-l2": ["check", "fixtures/nan_rows.npy", "--trained-with", "l2"],
    "check-zero-select": ["check", "fixtures/zero_rows.npy", "--select", "EA0,EA1"],
    "check-list-parquet-queries": ["check", "fixtures/list.parquet", "--queries", "100"],
    "check-wide-parquet": ["check", "fixtures/wide.parquet", "--trained-with", "cosine"],
    "check-baseline": [
        "check",
        "fixtures/fixed_size_list.parquet",
        "--baseline",
        "fixtures/list.parquet",
    ],
    "check-encoder64-dot": ["check", f"{TMP}/encoder64.npy", "--trained-with", "dot"],
    "check-lognormal-warn-ignore": [
        "check",
        f"{TMP}/lognormal.npy",
        "--fail-on",
        "warn",
        "--ignore",
        "EA5",
        "--seed",
        "7",
    ],
    "check-config": ["check", f"{TMP}/lognormal.npy", "--config", f"{TMP}/embaudit.toml"],
    "compare-metrics": ["compare-knn", "fixtures/unnormalized.npy"],
    "compare-files-ids": [
        "compare-knn",
        "fixtures/list.parquet",
        "fixtures/fixed_size_list.parquet",
        "--min-overlap",
        "0.9",
    ],
    "compare-files-dot-k5": [
        "compare-knn",
        "fixtures/sphere.npy",
        "fixtures/unnormalized.npy",
        "--metric",
        "dot",
        "-k",
        "5",
        "--queries",
        "200",
    ],
    "gauge-free": [
        "gauge",
        f"{TMP}/free-items.npy",
        f"{TMP}/free-users.npy",
        "--sample",
        "400",
    ],
    "gauge-balanced-both": [
        "gauge",
        f"{TMP}/balanced-items.npy",
        f"{TMP}/balanced-users.npy",
        "--side",
        "both",
        "--sample",
        "300",
        "--max-condition",
        "4",
        "--seed",
        "2",
    ],
}
#: Cases also kept in the text formats, whose layout the restructure must not move either.
TEXT_FORMATS = {
    "check-unnormalized-dot": ("markdown", "junit", "github", "table"),
    "check-baseline": ("table",),
    "compare-files-ids": ("markdown", "junit", "github", "table"),
    "compare-metrics": ("markdown", "table"),
    "gauge-free": ("markdown", "github", "table"),
    "gauge-balanced-both": ("table",),
}

CONFIG = """\
trained-with = "dot"
k = 8
queries = 300
gauge-draws = 2
ignore = ["EA6"]

[checks.EA205]
threshold = 0.3

[checks.EA402]
severity = "warn"
"""


def generate(directory: Path) -> None:
    """The generated exports: float64 encoder-like rows with dead dimensions, and unnormalized
    rows with log-normal norms; and a configuration file."""
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "encoder64.npy", encoder_like(3000, 96, dead=(4, 50, 90), seed=21))
    raw = lognormal_norms(encoder_like(2500, 48, seed=22, normalize=False), seed=22)
    np.save(directory / "lognormal.npy", raw.astype(np.float32))
    (directory / "embaudit.toml").write_text(CONFIG, encoding="utf-8")
    # Two towers of a dot-product model: a balanced split (every column as long in both
    # towers) and the same model in another gauge, items·D and users·D⁻¹.
    rng = np.random.default_rng(23)
    items, users = rng.standard_normal((700, 12)), rng.standard_normal((2100, 12))
    columns = np.exp(rng.normal(0.0, 0.5, size=12))
    items *= columns
    users *= columns * np.sqrt(len(items) / len(users))
    balance = np.linalg.norm(users, axis=0) / np.linalg.norm(items, axis=0)
    items, users = items * np.sqrt(balance), users / np.sqrt(balance)
    np.save(directory / "balanced-items.npy", items)
    np.save(directory / "balanced-users.npy", users.astype(np.float32))
    gauge = np.exp(rng.normal(0.0, 0.8, size=12))
    np.save(directory / "free-items.npy", (items * gauge).astype(np.float32))
    np.save(directory / "free-users.npy", (users / gauge).astype(np.float32))


def run(name: str, output_format: str = "json") -> str:
    """The report of one case (the generated exports written first), timings taken out."""
    argv = CASES[name]
    stdout = io.StringIO()
    cwd, columns = Path.cwd(), os.environ.get("COLUMNS")
    os.chdir(ROOT)
    os.environ["COLUMNS"] = "100"  # the table's width follows the terminal's
    try:
        with contextlib.redirect_stdout(stdout):
            code = main([*argv, "-f", output_format, "--exit-zero"])
    finally:
        os.chdir(cwd)
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    if code != 0:
        raise RuntimeError(f"{name}: exit code {code}")
    text = stdout.getvalue()
    if output_format != "json":
        return re.sub(r'time="[0-9.]+"', 'time="0"', text)  # JUnit carries the timings
    report: dict[str, Any] = json.loads(text)
    report.pop("timings", None)
    return json.dumps(report, indent=1) + "\n"


def path_of(name: str, output_format: str = "json") -> Path:
    suffix = {"json": "json", "markdown": "md", "junit": "xml", "github": "txt", "table": "table"}[
        output_format
    ]
    return GOLDEN / f"{name}.{suffix}"


def write_all() -> None:
    generate(ROOT / TMP)
    for name in CASES:
        for output_format in ("json", *TEXT_FORMATS.get(name, ())):
            path_of(name, output_format).write_text(run(name, output_format), encoding="utf-8")


if __name__ == "__main__":
    write_all()

"""The ways to start embaudit: the console script's module form and the version flag."""

from __future__ import annotations

import subprocess
import sys

from embaudit import __version__


def _module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embaudit", *args], capture_output=True, text=True, check=False
    )


def test_python_m_embaudit_prints_the_version():
    done = _module("--version")
    assert done.returncode == 0
    assert done.stdout == f"embaudit {__version__}\n"


def test_python_m_embaudit_lists_every_command():
    done = _module("--help")
    assert done.returncode == 0
    for command in ("check", "compare-knn", "gauge", "explain", "mcp"):
        assert command in done.stdout

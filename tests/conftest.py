from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from embaudit.cli import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run the embaudit CLI in-process and capture what it prints."""

    def run(*args: str | Path) -> CliResult:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_cli_process(*args: str | Path, env: dict[str, str] | None = None) -> CliResult:
    """Run ``python -m embaudit`` in a child process with every warning turned into an error,
    so that a warning from numpy or an engine underneath fails the run (exit 3) instead of
    reaching the user as a stray line."""
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "embaudit", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error", **(env or {})},
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli_process() -> Callable[..., CliResult]:
    """The CLI in a child process, warnings as errors (see :func:`run_cli_process`)."""
    return run_cli_process


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES

"""stdout carries the report and nothing else, whatever a library prints while a command computes.

The child processes below wrap the library call of each command so that it prints the ways a
library underneath can: ``print``, ``sys.stdout``, ``sys.__stdout__``, file descriptor 1, and C
stdio (buffered when stdout is a pipe, so it would reach stdout at exit). All of it belongs on
stderr; the report alone on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from embaudit._streams import stdout_to_stderr

NOISY_CLI = """
import ctypes, os, sys
import embaudit.cli as cli

def noise(when):
    print(f"print {when}")
    sys.stdout.write(f"sys.stdout {when}\\n")
    sys.__stdout__.write(f"sys.__stdout__ {when}\\n")
    os.write(1, f"fd 1 {when}\\n".encode())
    ctypes.CDLL(None).printf(f"C printf {when}\\n".encode())

def noisy(compute):
    def run(*args, **kwargs):
        noise("before")
        try:
            return compute(*args, **kwargs)
        finally:
            noise("after")
    return run

cli.audit, cli.compare_knn, cli.audit_gauge = map(
    noisy, (cli.audit, cli.compare_knn, cli.audit_gauge)
)
sys.exit(cli.main(sys.argv[1:]))
"""

NOISE = [
    f"{kind} {when}"
    for kind in ("print", "sys.stdout", "sys.__stdout__", "fd 1", "C printf")
    for when in ("before", "after")
]


def _noisy_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NOISY_CLI, *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )


def _assert_noise_on_stderr_only(done: subprocess.CompletedProcess[str]) -> None:
    for line in NOISE:
        assert line not in done.stdout
        assert line in done.stderr.splitlines()


@pytest.mark.parametrize(
    "command",
    [
        ("check", "sphere.npy"),
        ("compare-knn", "sphere.npy"),
        ("gauge", "sphere.npy", "unnormalized.npy", "--sample", "200"),
    ],
)
def test_json_on_stdout_is_the_report_alone_whatever_the_library_prints(
    fixtures: Path, command: tuple[str, ...]
) -> None:
    name, *rest = command
    args = [fixtures / arg if arg.endswith(".npy") else arg for arg in rest]
    done = _noisy_cli(name, *args, "-f", "json")
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)  # fails on anything but one JSON document
    assert report["schema_version"] == 1
    assert done.stdout.startswith("{") and done.stdout.endswith("}\n")
    _assert_noise_on_stderr_only(done)


def test_the_table_on_stdout_is_the_report_alone(fixtures: Path) -> None:
    done = _noisy_cli("check", fixtures / "sphere.npy")
    assert done.returncode == 0, done.stderr
    assert "EA101 │ norm-spread" in done.stdout
    _assert_noise_on_stderr_only(done)


def test_with_output_stdout_stays_empty_and_the_file_holds_the_report(
    fixtures: Path, tmp_path: Path
) -> None:
    target = tmp_path / "report.json"
    done = _noisy_cli("check", fixtures / "sphere.npy", "-f", "json", "-o", target)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert json.loads(target.read_text())["schema_version"] == 1
    _assert_noise_on_stderr_only(done)


def test_stdout_is_restored_after_the_block_and_after_an_error(
    capfd: pytest.CaptureFixture[str],
) -> None:
    before = sys.stdout
    with stdout_to_stderr():
        print("inside")
        os.write(1, b"inside fd 1\n")
    print("outside")
    with pytest.raises(RuntimeError), stdout_to_stderr():
        raise RuntimeError("boom")
    assert sys.stdout is before
    os.write(1, b"outside fd 1\n")
    captured = capfd.readouterr()
    assert captured.out == "outside\noutside fd 1\n"
    assert captured.err == "inside\ninside fd 1\n"

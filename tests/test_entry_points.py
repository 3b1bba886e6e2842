"""The ways to start embaudit: the console script's module form and the version flag."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer.main

from embaudit import __version__
from embaudit.cli import app
from embaudit.measurement.sampling import Sampling
from embaudit.options import CheckOptions, CompareOptions, GaugeOptions
from embaudit.params import declared


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


# Every entry point takes every declared parameter of its options types ----------------------


COMMANDS = {
    "check": (CheckOptions, Sampling),
    "compare-knn": (CompareOptions,),
    "gauge": (GaugeOptions,),
}


def _flags_of(command: str) -> set[str]:
    click_group = typer.main.get_command(app)
    options = click_group.commands[command].params  # type: ignore[attr-defined]
    return {opt for option in options for opt in option.opts}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_takes_every_declared_flag_of_its_options(command):
    wanted = {
        param.flag
        for kind in COMMANDS[command]
        for param in declared(kind).values()
        if param.flag is not None
    }
    assert wanted and wanted <= _flags_of(command)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_takes_no_flag_twice(command):
    click_group = typer.main.get_command(app)
    options = click_group.commands[command].params  # type: ignore[attr-defined]
    flags = [opt for option in options for opt in option.opts]
    assert len(flags) == len(set(flags))


def test_the_mcp_tools_take_every_declared_parameter_but_those_left_out():
    """Read in a child process: importing the server here would leave it imported for the
    tests that hide its SDK."""
    pytest.importorskip("mcp")
    code = (
        "import inspect, json; from embaudit import mcp_server as m; print(json.dumps({"
        "'left_out': sorted(m.LEFT_OUT), 'tools': {n: list(inspect.signature(f).parameters) "
        "for n, f in (('check', m.check), ('compare_knn', m.compare_knn_tool), "
        "('gauge', m.gauge))}}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    found = json.loads(done.stdout)
    left_out = set(found["left_out"])
    assert {"write_items", "engine", "ray_address"} <= left_out
    kinds = {
        "check": (CheckOptions, Sampling),
        "compare_knn": (CompareOptions,),
        "gauge": (GaugeOptions,),
    }
    for name, taken in found["tools"].items():
        wanted = {
            parameter
            for kind in kinds[name]
            for parameter, param in declared(kind).items()
            if param.flag is not None and parameter not in left_out
        }
        assert wanted and wanted <= set(taken), name
        assert not left_out & set(taken), name

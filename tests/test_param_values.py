"""Bad values of every declared parameter, generated from the declarations.

For each options type, each parameter and each value its rule must refuse
(:meth:`embaudit.params.Rule.invalid_values`): building the options type raises a
:class:`ParameterError` naming the parameter; the command that takes its flag exits 2 with one
line naming the flag; the same value in a configuration file exits 2 with one line naming the
file and the key. Each rule accepts its default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
import typing
from typing import Any, NamedTuple

import pytest
import typer

from embaudit.cli import app
from embaudit.options import CheckOptions, CompareOptions, GaugeOptions
from embaudit.params import Param, ParameterError, declared
from tests.conftest import FIXTURES

Sampling = CheckOptions.__dataclass_fields__["sampling"].default_factory

#: Each options type, by the label of its cases, with the command that takes its flags and
#: reads its configuration keys (the sample sizes are options of check), and that command's
#: input files.
TYPES: dict[str, tuple[type, str]] = {
    "check": (CheckOptions, "check"),
    "compare-knn": (CompareOptions, "compare-knn"),
    "gauge": (GaugeOptions, "gauge"),
    "sampling": (Sampling, "check"),
}
INPUTS = {
    "check": [FIXTURES / "sphere.npy"],
    "compare-knn": [FIXTURES / "sphere.npy"],
    "gauge": [FIXTURES / "sphere.npy", FIXTURES / "unnormalized.npy"],
}

#: Cases left out of the generated ones (none: every declared bad value is refused).
LEFT_OUT: set[str] = set()


class Bad(NamedTuple):
    label: str
    kind: type
    command: str
    name: str
    param: Param
    value: Any

    @property
    def id(self) -> str:
        shown = repr(self.value) if isinstance(self.value, str) else str(self.value)
        return f"{self.label}-{self.name}-{shown}"


def _bad_values() -> list[Bad]:
    cases = []
    for label, (kind, command) in TYPES.items():
        for name, param in declared(kind).items():
            for value in param.rule.invalid_values() if param.rule is not None else []:
                cases.append(Bad(label, kind, command, name, param, value))
    return [case for case in cases if case.id not in LEFT_OUT]


BAD = _bad_values()


def _flags(command: str) -> set[str]:
    click_command = typer.main.get_command(app).commands[command]
    return {flag for option in click_command.params for flag in option.opts}


FLAGS = {command: _flags(command) for command in INPUTS}


def _word_types(hint: Any) -> set[Any]:
    """The types a field's annotation is made of, None and ``...`` aside."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union, tuple):
        return set().union(*(_word_types(arg) for arg in typing.get_args(hint)))
    return set() if hint in (types.NoneType, Ellipsis) else {hint}


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def words(bad: Bad) -> list[str] | None:
    """``bad.value`` as the word after its flag, or None when a command line cannot say it."""
    read_as = _word_types(typing.get_type_hints(bad.kind)[bad.name])
    if read_as == {bool}:
        return None  # a switch (--require-objective) takes no value
    if isinstance(bad.value, bool) or not isinstance(bad.value, str | int | float):
        return None  # a flag takes one word: no bool, list (a repeated flag) or table
    if read_as <= {int, float}:
        if isinstance(bad.value, str) and _is_number(bad.value):
            return None  # typer reads the word "1" as the number 1, a valid value
        return [str(bad.value)]
    if not isinstance(bad.value, str):
        return None  # the word "0" is a valid text, not the number 0
    return [bad.value]


CLI_BAD = [bad for bad in BAD if bad.param.flag in FLAGS[bad.command] and words(bad) is not None]
CONFIG_BAD = [bad for bad in BAD if bad.param.in_config]


def _ids(cases: list[Bad]) -> list[str]:
    return [case.id for case in cases]


def _one_error_line(result: Any) -> str:
    assert result.code == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    line: str = result.stderr.removesuffix("\n")
    assert line.startswith("embaudit: error: "), line
    return line


@pytest.mark.parametrize("bad", BAD, ids=_ids(BAD))
def test_the_options_type_refuses_it_naming_the_parameter(bad):
    with pytest.raises(ParameterError) as refused:
        bad.kind(**{bad.name: bad.value})
    assert refused.value.parameter == bad.name


@pytest.mark.parametrize("bad", CLI_BAD, ids=_ids(CLI_BAD))
def test_the_command_line_refuses_it_naming_the_flag(cli, tmp_path, monkeypatch, bad):
    monkeypatch.chdir(tmp_path)  # no configuration file on the way up
    result = cli(bad.command, *INPUTS[bad.command], bad.param.flag, *words(bad))
    line = _one_error_line(result)
    flag = re.escape(bad.param.flag)
    # Ours: "-k must be ..."; typer's, for a word it cannot convert: "Invalid value for '-k'".
    assert re.match(rf"embaudit: error: ({flag} |Invalid value for '{flag}')", line), line


def toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf, -inf
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml(item) for item in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + "}"


@pytest.mark.parametrize("bad", CONFIG_BAD, ids=_ids(CONFIG_BAD))
def test_the_configuration_refuses_it_naming_the_file_and_key(cli, tmp_path, monkeypatch, bad):
    monkeypatch.chdir(tmp_path)
    key = bad.name.replace("_", "-")
    config = tmp_path / "embaudit.toml"
    config.write_text(f"{key} = {toml(bad.value)}\n")
    assert repr(tomllib.loads(config.read_text())[key]) == repr(bad.value)
    result = cli(bad.command, *INPUTS[bad.command], "--config", config)
    line = _one_error_line(result)
    assert line.startswith(f"embaudit: error: {config}: {key!r} in embaudit.toml: "), line


DECLARED = [
    pytest.param(kind, name, id=f"{label}-{name}")
    for label, (kind, _) in TYPES.items()
    for name in declared(kind)
]


@pytest.mark.parametrize(("kind", "name"), DECLARED)
def test_the_rule_accepts_the_default(kind, name):
    field = kind.__dataclass_fields__[name]
    default = field.default_factory() if field.default is dataclasses.MISSING else field.default
    declared(kind)[name].convert(name, default)
    kind(**{name: default})


def test_every_rule_knows_values_it_refuses():
    without = [
        f"{label}-{name}"
        for label, (kind, _) in TYPES.items()
        for name, param in declared(kind).items()
        if param.rule is not None and not param.rule.invalid_values()
    ]
    assert without == []


def test_no_command_lacks_a_flag_of_its_options():
    """Every declared flag is on the command of its options type (the commands' options are
    generated from the declarations)."""
    lacking = {
        (command, param.flag)
        for kind, command in TYPES.values()
        for param in declared(kind).values()
        if param.flag is not None and param.flag not in FLAGS[command]
    }
    assert lacking == set()


def test_the_case_ids_are_distinct():
    assert len(set(_ids(BAD))) == len(BAD)

"""`embaudit.audit`: the Python entry point returns the report the CLI renders."""

from __future__ import annotations

import numpy as np
import pytest

import embaudit
from embaudit import InputError, Report, UsageError, audit
from embaudit.formats import FORMATS


def test_audit_returns_the_report_the_cli_prints(cli, fixtures):
    report = audit(fixtures / "nan_rows.npy", k=5, seed=2)
    assert isinstance(report, Report)
    printed = cli("check", fixtures / "nan_rows.npy", "-k", "5", "--seed", "2", "-f", "json")
    expected = printed.json()
    rendered = FORMATS["json"].render(report)
    import json

    produced = json.loads(rendered)
    for document in (produced, expected):
        document.pop("timings")
    assert produced == expected


def test_audit_accepts_paths_as_strings(fixtures):
    assert audit(str(fixtures / "sphere.npy")).input["format"] == "npy"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"k": 0}, "-k"),
        ({"k": 2.5}, "-k"),
        ({"seed": -1}, "--seed"),
        ({"trained_with": "softmax"}, "--trained-with"),
        ({"key": "x"}, "--key"),
    ],
)
def test_invalid_options_raise_usage_errors_naming_the_option(options, fragment):
    with pytest.raises(UsageError, match=fragment):
        audit(np.ones((3, 2)), **options)


def test_unreadable_arrays_raise_input_errors():
    with pytest.raises(InputError, match="2-D"):
        audit(np.ones(4))
    with pytest.raises(InputError, match="strings"):
        audit(np.array([["a", "b"]]))


def test_public_names():
    assert embaudit.__version__
    assert callable(embaudit.audit)

"""Every figure of every command stays where it was: each case's report equals its stored copy.

The stored reports (tests/golden/) are rewritten by ``python -m tests.golden_cases`` only for a
change that is meant to move a figure; a restructure must leave them as they are. JSON reports
compare number for number to 1e-6 of their value, or 1e-12 for figures near 0: OpenBLAS picks
its kernels by the processor it runs on, so a float32 product (the kNN scores) or a float64 sum
may differ in its last bits from one machine to another, and so does the rounding noise of a
constant column (a std near 1e-20). Every other field, and every text format (whose figures
carry four digits or so), compares exactly.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.golden_cases import CASES, ROOT, TEXT_FORMATS, TMP, generate, path_of, run

#: Differences of two floats of a JSON report that count as the same figure.
RELATIVE, ABSOLUTE = 1e-6, 1e-12


@pytest.fixture(scope="module", autouse=True)
def generated() -> None:
    generate(ROOT / TMP)


def differences(actual: Any, expected: Any, where: str = "") -> list[str]:
    """Where two parsed JSON documents differ: any field but a float must be equal, a float
    within RELATIVE of the stored one (NaN and infinities equal only themselves)."""
    if isinstance(expected, float) and isinstance(actual, (float, int)):
        close = math.isclose(actual, expected, rel_tol=RELATIVE, abs_tol=ABSOLUTE)
        return [] if close or (math.isnan(actual) and math.isnan(expected)) else [where]
    if isinstance(expected, dict) and isinstance(actual, dict):
        if actual.keys() != expected.keys():
            return [f"{where} keys"]
        return [
            d for key in expected for d in differences(actual[key], expected[key], f"{where}.{key}")
        ]
    if isinstance(expected, list) and isinstance(actual, list) and len(actual) == len(expected):
        return [
            d
            for i, pair in enumerate(zip(actual, expected, strict=True))
            for d in differences(*pair, f"{where}[{i}]")
        ]
    return [] if type(actual) is type(expected) and actual == expected else [where]


@pytest.mark.parametrize(
    ("name", "output_format"),
    [(name, fmt) for name in CASES for fmt in ("json", *TEXT_FORMATS.get(name, ()))],
)
def test_the_report_equals_its_golden_copy(name: str, output_format: str) -> None:
    expected = path_of(name, output_format).read_text(encoding="utf-8")
    actual = run(name, output_format)
    if output_format == "json":
        assert differences(json.loads(actual), json.loads(expected)) == []
    else:
        assert actual == expected


def test_the_comparison_tells_a_moved_figure_from_its_last_bits() -> None:
    stored = {"value": 0.2045098019864108, "rows": [3, 5], "status": "pass", "nan": math.nan}
    assert differences(dict(stored, value=0.20450980198641078), stored) == []
    assert differences(dict(stored, value=0.204509), stored) == [".value"]
    assert differences(dict(stored, nan=2e-20), stored) == [".nan"]
    assert differences({"std": 2.07e-20}, {"std": 1.76e-20}) == []
    assert differences(dict(stored, rows=[3, 6]), stored) == [".rows[1]"]
    assert differences(dict(stored, status="warn"), stored) == [".status"]
    assert differences(dict(stored, value=None), stored) == [".value"]
    assert differences({"value": 1.0}, stored) == [" keys"]

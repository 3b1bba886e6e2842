"""Every figure of every command stays where it was: each case's report equals its stored copy.

The stored reports (tests/golden/) are rewritten by ``python -m tests.golden_cases`` only for a
change that is meant to move a figure; a restructure must leave them bit for bit.
"""

from __future__ import annotations

import pytest

from tests.golden_cases import CASES, ROOT, TEXT_FORMATS, TMP, generate, path_of, run


@pytest.fixture(scope="module", autouse=True)
def generated() -> None:
    generate(ROOT / TMP)


@pytest.mark.parametrize(
    ("name", "output_format"),
    [(name, fmt) for name in CASES for fmt in ("json", *TEXT_FORMATS.get(name, ()))],
)
def test_the_report_equals_its_golden_copy(name: str, output_format: str) -> None:
    expected = path_of(name, output_format).read_text(encoding="utf-8")
    assert run(name, output_format) == expected

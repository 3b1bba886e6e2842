"""Write the check documentation from the registry, as ruff writes its rule pages from the rules.

    python scripts/generate_docs.py

rewrites the checks table of README.md and docs/checks.md (between their ``checks-table``
markers), the default rules table of docs/checks.md (``rules-table``) and the whole of
docs/reference.md (every check's ``embaudit explain`` text). tests/test_docs.py fails when a
committed page differs from what this writes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from embaudit.checks import REGISTRY
from embaudit.checks.base import Check
from embaudit.codes import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
MARKERS = {
    "checks-table": ("<!-- checks-table:begin -->", "<!-- checks-table:end -->"),
    "rules-table": ("<!-- rules-table:begin -->", "<!-- rules-table:end -->"),
}


def _checks() -> list[Check]:
    return [REGISTRY[code] for code in sorted(REGISTRY)]


def anchor(check: Check) -> str:
    """The anchor MkDocs gives the check's heading on docs/reference.md."""
    return re.sub(r"[^a-z0-9]+", "-", f"{check.code} {check.name}".lower()).strip("-")


def checks_table(reference: str) -> str:
    """Code (linking to its reference section at ``reference``), name, what it measures."""
    rows = ["| code | name | what it measures |", "|---|---|---|"]
    rows += [
        f"| [{c.code}]({reference}#{anchor(c)}) | {c.name} | {c.measures} |" for c in _checks()
    ]
    return "\n".join(rows)


def rules_table() -> str:
    rows = ["| code | default rule |", "|---|---|"]
    rows += [f"| {c.code} | {c.rule} |" for c in _checks()]
    return "\n".join(rows)


def reference_page() -> str:
    """Every check's documentation, by family, as ``embaudit explain CODE`` prints it."""
    parts = [
        "# Check reference\n\n"
        "What each check measures, why it matters, how to fix it, its default threshold and "
        "why, as `embaudit explain CODE` prints it. Generated from the checks themselves "
        "(`python scripts/generate_docs.py`): edit the check, not this page.\n"
    ]
    family = None
    for check in _checks():
        if check.code[:3] != family:
            family = check.code[:3]
            parts.append(f"## {family}xx: {FAMILIES[family]}\n")
        # One level down: the page's title is the only first-level heading.
        parts.append(re.sub(r"^(#+) ", r"#\1# ", check.explain(), flags=re.MULTILINE))
    return "\n".join(parts)


def replaced(text: str, name: str, content: str) -> str:
    """``text`` with what lies between the markers ``name`` replaced by ``content``."""
    begin, end = MARKERS[name]
    if text.count(begin) != 1 or text.count(end) != 1:
        raise ValueError(f"the markers {begin} / {end} must appear once each")
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{content}\n{end}{rest.split(end, 1)[1]}"


def pages() -> dict[Path, str]:
    """Every generated file and its content."""
    readme = (ROOT / "README.md").read_text()
    checks = (ROOT / "docs" / "checks.md").read_text()
    checks = replaced(checks, "checks-table", checks_table("reference.md"))
    return {
        ROOT / "README.md": replaced(readme, "checks-table", checks_table("docs/reference.md")),
        ROOT / "docs" / "checks.md": replaced(checks, "rules-table", rules_table()),
        ROOT / "docs" / "reference.md": reference_page(),
    }


def main() -> int:
    for path, content in pages().items():
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
            print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

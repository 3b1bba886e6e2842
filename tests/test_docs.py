"""The documentation holds together: every page of docs/ is in mkdocs.yml's nav, every relative
link of the README reaches a file, and the check documentation is what the registry
generates. (The test command builds the site with ``mkdocs build --strict``, which checks
the links and anchors between the pages.)"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BEGIN, END = "<!-- checks-table:begin -->", "<!-- checks-table:end -->"


def _nav_pages(nav: list) -> list[str]:
    """The page files a nav names, at any depth."""
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            pages += _nav_pages(value)
        elif not re.match(r"[a-z]+://", value):
            pages.append(value)
    return pages


def _relative_links(markdown: str) -> list[str]:
    """The targets of the inline links and images that are not URLs or anchors on the page,
    outside code blocks and code spans."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose)
    return [t for t in targets if not re.match(r"([a-z]+:|#)", t)]


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs"
    nav = _nav_pages(config["nav"])
    pages = sorted(path.name for path in DOCS.glob("*.md"))
    assert sorted(nav) == pages
    assert len(nav) == len(set(nav))


def test_every_relative_link_of_the_readme_reaches_a_file():
    readme = (ROOT / "README.md").read_text()
    links = _relative_links(readme)
    assert "docs/checks.md" in links and "docs/report.png" in links
    for link in links:
        assert (ROOT / link.split("#", 1)[0]).is_file(), link


def _generator():
    spec = importlib.util.spec_from_file_location(
        "generate_docs", ROOT / "scripts/generate_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_check_docs_are_the_registrys():
    """README's and docs/checks.md's tables and docs/reference.md are written from the checks'
    own registration (scripts/generate_docs.py): a change to a check that the pages do not
    follow fails here."""
    for path, content in _generator().pages().items():
        assert path.read_text() == content, f"{path.name}: run python scripts/generate_docs.py"


def test_the_checks_table_lists_every_code_once_in_order_with_its_reference():
    from embaudit.codes import CODES

    reference = (DOCS / "reference.md").read_text()
    for page in (ROOT / "README.md", DOCS / "checks.md"):
        text = page.read_text()
        table = text.split(BEGIN, 1)[1].split(END, 1)[0]
        codes = re.findall(r"^\| \[(EA\d{3})\]", table, flags=re.MULTILINE)
        assert codes == list(CODES)
    for code, name in CODES.items():
        assert f"## {code} ({name})" in reference


def test_the_generator_refuses_a_page_without_its_markers():
    generator = _generator()
    with pytest.raises(ValueError, match="checks-table"):
        generator.replaced("no markers here", "checks-table", "table")


def test_the_mcp_page_lists_each_tools_arguments():
    """The table of docs/mcp.md names each tool's arguments in order (read in a child process:
    importing the server here would leave it imported for the tests that hide its SDK)."""
    pytest.importorskip("mcp")
    code = (
        "import inspect, json; from embaudit import mcp_server as m; print(json.dumps({n: "
        "list(inspect.signature(f).parameters) for n, f in (('check', m.check), "
        "('compare_knn', m.compare_knn_tool), ('gauge', m.gauge))}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    page = (DOCS / "mcp.md").read_text()
    for name, arguments in json.loads(done.stdout).items():
        row = re.search(rf"^\| `{name}` \| ([^|]*) \|", page, flags=re.MULTILINE)
        assert row is not None, name
        assert re.findall(r"`(\w+)`", row.group(1)) == arguments, name

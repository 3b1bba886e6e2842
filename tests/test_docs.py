"""The documentation holds together: every page of docs/ is in mkdocs.yml's nav, every relative
link of the README reaches a file, and the checks table is the same in the README and in
docs/checks.md. (The test command builds the site with ``mkdocs build --strict``, which checks
the links and anchors between the pages.)"""

from __future__ import annotations

import re
from pathlib import Path

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


def _checks_table(path: Path) -> str:
    text = path.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, path
    return text.split(BEGIN, 1)[1].split(END, 1)[0]


def test_the_checks_table_is_the_same_in_the_readme_and_the_docs():
    table = _checks_table(ROOT / "README.md")
    assert table == _checks_table(DOCS / "checks.md")
    codes = re.findall(r"^\| (EA\d{3}) \|", table, flags=re.MULTILINE)
    assert codes and codes == sorted(codes)

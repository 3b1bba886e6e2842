"""Every report shows itself in a notebook: ``_repr_html_`` is the body of the HTML page (plots
when matplotlib is installed, the tables alone otherwise) and ``repr`` one line that names the
verdict or the gate's outcome."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from embaudit import audit, audit_gauge, compare_knn
from embaudit.formats import FORMATS
from embaudit.formats.html import STYLE
from embaudit.reports import AnyReport

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def reports() -> dict[str, AnyReport]:
    rng = np.random.default_rng(0)
    items = (rng.standard_normal((300, 8)) * np.exp(rng.normal(size=8))).astype(np.float32)
    users = rng.standard_normal((300, 8)).astype(np.float32)
    with pytest.MonkeyPatch.context() as patch:  # paths as a user types them
        patch.chdir(FIXTURES.parent)
        check = audit("fixtures/unnormalized.npy", trained_with="dot")
    return {
        "check": check,
        "metrics": compare_knn(FIXTURES / "unnormalized.npy", queries=100),
        "files": compare_knn(
            FIXTURES / "sphere.npy", FIXTURES / "unnormalized.npy", queries=100, min_overlap=0.9
        ),
        "gauge": audit_gauge(items, users, sample=300),
    }


@pytest.fixture(scope="module")
def check_html(reports) -> str:
    """The check report's notebook display (its plots take seconds to draw: drawn once)."""
    return reports["check"]._repr_html_()


#: What each report's display must name: its verdict or the gate's outcome.
OUTCOMES = {
    "check": ("untrustworthy", "Verdict: untrustworthy"),
    "metrics": ("measured", "Measured (no gate)"),
    "files": ("gate passed", "Gate passed"),
    "gauge": ("gate failed", "Gate failed"),
}


def _without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import matplotlib`` fail, as where the report extra is not installed."""
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("kind", list(OUTCOMES))
def test_repr_is_one_line_naming_the_outcome_and_the_subject(reports, kind):
    report = reports[kind]
    shown = repr(report)
    assert "\n" not in shown
    assert len(shown) < 200
    assert shown.startswith(f"<{type(report).__name__} {report.subject}: {OUTCOMES[kind][0]}")


def test_repr_escapes_a_newline_in_the_file_name(tmp_path):
    np.save(tmp_path / "a\nb.npy", np.random.default_rng(0).standard_normal((50, 4)))
    shown = repr(audit(tmp_path / "a\nb.npy", select="EA0"))
    assert "\n" not in shown and "a\\nb.npy" in shown


@pytest.mark.parametrize("kind", list(OUTCOMES))
def test_repr_html_shows_the_outcome_the_checks_and_plots(reports, check_html, kind):
    report = reports[kind]
    shown = check_html if kind == "check" else report._repr_html_()
    assert OUTCOMES[kind][1] in shown
    for check in report.checks:
        assert f"<td>{check.name}</td>" in shown
    assert "<figure" in shown and "<svg" in shown
    assert "<!DOCTYPE" not in shown and "<body" not in shown and "<html" not in shown


@pytest.mark.parametrize("kind", list(OUTCOMES))
def test_repr_html_without_matplotlib_shows_the_tables_and_how_to_get_plots(
    reports, kind, monkeypatch
):
    _without_matplotlib(monkeypatch)
    report = reports[kind]
    shown = report._repr_html_()
    assert OUTCOMES[kind][1] in shown
    for check in report.checks:
        assert f"<td>{check.name}</td>" in shown
    assert "<svg" not in shown
    assert "pip install 'embaudit[report]'" in shown


def test_repr_html_is_the_body_of_the_html_page(reports, check_html):
    page = FORMATS["html"].render(reports["check"])
    fragment = page[page.index("<body>") + len("<body>") : page.index("</body>")]
    assert fragment.startswith('<div class="embaudit">')
    assert check_html == f"<style>{STYLE}</style>{fragment}"


def test_repr_html_styles_touch_only_the_report(check_html):
    """A notebook keeps its own look: every style rule is scoped to the report's div."""
    style = re.search(r"<style>(.*?)</style>", check_html, flags=re.DOTALL)
    assert style is not None
    selectors = re.findall(r"([^{}]+)\{", style.group(1))
    assert selectors
    for group in selectors:
        for selector in group.split(","):
            assert selector.strip().startswith(".embaudit"), selector


# A page shaped like a classic Jupyter notebook: a code cell, its prompt, and the output area
# the report's HTML goes into, with notebook styles of its own around it.
NOTEBOOK = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>embaudit in a notebook</title><style>
body {{ font: 13px/1.4 Helvetica, Arial, sans-serif; background: #fff; margin: 0; }}
#notebook {{ max-width: 1180px; margin: 0 auto; padding: 16px; }}
.cell {{ display: flex; margin: 8px 0; }}
.prompt {{ width: 90px; flex: none; color: #303f9f; font: 13px monospace; text-align: right;
          padding: 6px 8px 0 0; }}
.prompt.out {{ color: #d84315; }}
.input_area {{ flex: 1; background: #f7f7f7; border: 1px solid #cfcfcf; border-radius: 2px;
              padding: 6px 8px; font: 13px/1.4 monospace; white-space: pre; }}
.output_area {{ flex: 1; overflow-x: auto; padding: 4px 0; }}
table {{ border: 1px solid black; }}
p.note {{ color: rgb(0, 0, 128); font-family: Georgia, serif; }}
</style></head><body><div id="notebook">
<p class="note">A notebook cell that displays a report.</p>
<div class="cell"><div class="prompt">In&nbsp;[1]:</div><div class="input_area">{code}</div></div>
<div class="cell"><div class="prompt">Out[1]:</div><div class="input_area">{repr}</div></div>
<div class="cell"><div class="prompt">In&nbsp;[2]:</div><div class="input_area">report</div></div>
<div class="cell"><div class="prompt out">Out[2]:</div>
<div class="output_area">{html}</div></div>
</div></body></html>
"""


def test_a_check_report_in_a_notebook_renders_in_a_browser(reports, check_html, tmp_path):
    import html

    pytest.importorskip("selenium")
    from tests.browser import full_page_screenshot, open_browser

    report = reports["check"]
    code = (
        "import embaudit\n"
        'report = embaudit.audit("fixtures/unnormalized.npy", trained_with="dot")\n'
        "report"
    )
    page = tmp_path / "notebook.html"
    page.write_text(
        NOTEBOOK.format(code=html.escape(code), repr=html.escape(repr(report)), html=check_html),
        encoding="utf-8",
    )
    driver = open_browser()
    try:
        driver.get(page.as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        verdict = driver.find_element("css selector", ".embaudit .verdict h2")
        assert verdict.text.lower() == "verdict: untrustworthy"
        figures = driver.find_elements("css selector", ".embaudit figure svg")
        assert len(figures) >= 5
        assert all(figure.size["width"] > 200 for figure in figures)
        # The notebook's own paragraph keeps the notebook's style.
        note = driver.find_element("css selector", "p.note")
        assert note.value_of_css_property("color") == "rgba(0, 0, 128, 1)"
        ARTIFACTS.mkdir(exist_ok=True)
        full_page_screenshot(driver, ARTIFACTS / "notebook-check.png")
    finally:
        driver.quit()
    assert (ARTIFACTS / "notebook-check.png").stat().st_size > 10_000


def test_the_readme_shows_these_reprs(reports, monkeypatch):
    monkeypatch.chdir(FIXTURES.parent)
    readme = Path("README.md").read_text()
    assert f"# {reports['check']!r}" in readme
    files = compare_knn(
        "fixtures/sphere.npy", "fixtures/unnormalized.npy", queries=100, min_overlap=0.9
    )
    assert f"# repr: {files!r}" in readme

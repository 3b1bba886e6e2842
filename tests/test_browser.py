"""The HTML report in a real browser: headless Chromium from Debian's packages.

Asserts no console errors, no network requests, every plot rendered and not blank, and saves a
full-page screenshot per report under test-artifacts/.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from tests.browser import full_page_screenshot, open_browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    driver = open_browser()
    yield driver
    driver.quit()


def _reports(cli, fixtures, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "items.npy", rng.standard_normal((300, 8)) * np.exp(rng.normal(size=8)))
    np.save(tmp_path / "users.npy", rng.standard_normal((300, 8)))
    runs = {
        "check": ("check", fixtures / "unnormalized.npy", "--trained-with", "cosine"),
        "compare-metrics": ("compare-knn", fixtures / "unnormalized.npy"),
        "compare-files": ("compare-knn", fixtures / "sphere.npy", fixtures / "unnormalized.npy"),
        "gauge": ("gauge", tmp_path / "items.npy", tmp_path / "users.npy", "--sample", "300"),
    }
    pages = {}
    for name, args in runs.items():
        page = tmp_path / f"{name}.html"
        result = cli(*args, "--format", "html", "--output", page)
        assert result.code in (0, 1), result.stderr
        pages[name] = page
    return pages


def test_reports_render_offline_without_errors(browser, cli, fixtures, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    for name, page in _reports(cli, fixtures, tmp_path).items():
        browser.get_log("browser")  # drop what earlier pages logged
        browser.get_log("performance")
        browser.get(page.as_uri())
        assert browser.execute_script("return document.readyState") == "complete"

        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], f"{name}: console errors {errors}"

        requested = []
        for entry in browser.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                requested.append(message["params"]["request"]["url"])
        fetched = [url for url in requested if not url.startswith(("file:", "data:", "about:"))]
        assert fetched == [], f"{name}: network requests {fetched}"
        assert requested, "the performance log saw no request at all: the check would be vacuous"

        figures = browser.find_elements("css selector", "figure")
        assert figures, f"{name}: no plots"
        for figure in figures:
            assert figure.get_attribute("aria-label"), f"{name}: a plot without alt text"
            svg = figure.find_element("css selector", "svg")
            browser.execute_script("arguments[0].scrollIntoView()", svg)
            assert svg.size["width"] > 200 and svg.size["height"] > 100
            pixels = imread(io.BytesIO(svg.screenshot_as_png))
            assert pixels[..., :3].std() > 0.05, f"{name}: a blank plot"
            caption = figure.find_element("css selector", "figcaption").text
            assert len(caption) > 20

        full_page_screenshot(browser, ARTIFACTS / f"{name}.png")
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000


def test_html_report_holds_the_json_content(cli, fixtures, tmp_path):
    page = tmp_path / "r.html"
    cli("check", fixtures / "nan_rows.npy", "-f", "html", "-o", page)
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    for fragment in (
        "Verdict: untrustworthy",
        "EA001",
        "non-finite",
        "What it measures",
        "Threshold",
        "fixtures/nan_rows.npy",
        "gauge_draws",
    ):
        assert fragment in text
    assert "http://" not in text.replace("http://www.w3.org/", "")  # SVG namespaces only
    assert "https://" not in text
    assert "<script" not in text


def test_html_without_matplotlib_exits_2_with_the_install_command(cli, fixtures, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = cli("check", fixtures / "sphere.npy", "-f", "html")
    assert result.code == 2
    assert "pip install 'embaudit[report]'" in result.stderr

"""Render a real report and save its screenshot for the README.

    python -m docs.make_screenshot          # from the repository's root: writes docs/report.png

Audits fixtures/unnormalized.npy (--trained-with cosine) as HTML, opens it in headless Chromium
(Debian's chromium and chromium-driver) and saves a full-page PNG.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import embaudit
from embaudit.formats import FORMATS
from tests.browser import full_page_screenshot, open_browser

HERE = Path(__file__).resolve().parent


def main() -> None:
    os.chdir(HERE.parent)  # the report shows the path as a user would type it
    report = embaudit.audit("fixtures/unnormalized.npy", trained_with="cosine")
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "report.html"
        page.write_text(FORMATS["html"].render(report), encoding="utf-8")
        driver = open_browser()
        try:
            driver.get(page.as_uri())
            full_page_screenshot(driver, HERE / "report.png")
        finally:
            driver.quit()
    print(HERE / "report.png")


if __name__ == "__main__":
    main()

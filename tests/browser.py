"""Open a report in headless Chromium (Debian's chromium + chromium-driver), for the browser
test and the README screenshot (docs/make_screenshot.py). A test helper, not part of the package.
Nothing is downloaded: the binaries must be installed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHROMIUM = ("/usr/bin/chromium", "chromium")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")
#: Flags that keep Chromium from reaching the network on its own (updates, sync, metrics).
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
)


def _find(candidates: tuple[str, ...]) -> str:
    for candidate in candidates:
        found = shutil.which(candidate) or (candidate if Path(candidate).exists() else None)
        if found:
            return found
    raise RuntimeError(
        f"{candidates[-1]} not found: install Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver)"
    )


def open_browser(width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium WebDriver that logs console messages and network events."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _find(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=_find(CHROMEDRIVER)), options=options)


def full_page_screenshot(driver: Any, path: Path, width: int = 1280) -> None:
    """Resize the window to the page's height and save a PNG."""
    driver.set_window_size(width, 600)  # measure the content, not a taller earlier window
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(width, min(int(height) + 100, 12000))
    driver.save_screenshot(str(path))

"""What the browser tests share: Playwright driving Debian's headless Chromium (no browser download), the skip
marks when either is missing, the `browser` fixture, and a copy of each screenshot for people to look at in the
folder $HILSERL_CONSOLE_SCREENS names (when set)."""

import os
import shutil
from pathlib import Path

import pytest

try:
    from playwright import sync_api
except ImportError:  # not installed, or broken: the tests say so instead of failing
    sync_api = None
CHROMIUM = next((p for p in (os.environ.get("HILSERL_CHROMIUM"), "/usr/lib/chromium/chromium", "/usr/bin/chromium",
                             shutil.which("chromium") or "", shutil.which("chromium-browser") or "")
                 if p and Path(p).is_file()), None)
BROWSER_MARKS = [
    pytest.mark.skipif(sync_api is None, reason="the browser tests need the playwright package (pip install "
                       "playwright, in the test extra; no browser download: they use the system chromium)"),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium executable (Debian: apt-get install chromium; the "
                       "bootstrap installs it when run as root; or set HILSERL_CHROMIUM)"),
]
SCREENS = Path(os.environ["HILSERL_CONSOLE_SCREENS"]) if os.environ.get("HILSERL_CONSOLE_SCREENS") else None


def keep_screenshot(path: Path) -> None:
    """A copy for people in $HILSERL_CONSOLE_SCREENS (a courtesy: the test's own copy stays in its tmp_path)."""
    if SCREENS is None:
        return
    try:
        SCREENS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENS / Path(path).name)
    except OSError:
        pass


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield b
        finally:
            b.close()

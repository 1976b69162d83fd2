"""Headless Debian Chromium driven by Playwright; no browser is ever downloaded."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import ServiceUnavailable

CHROMIUM = Path("/usr/bin/chromium")

# Without the background-networking flags Chromium keeps dialling Google's hosts,
# which this machine's closed network refuses; as root it needs --no-sandbox.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@contextmanager
def chromium() -> Iterator[object]:
    """A running headless Chromium (a Playwright `Browser`), closed afterwards."""
    if not CHROMIUM.exists():
        raise ServiceUnavailable(
            f"{CHROMIUM} is missing: install Debian's chromium "
            "(sh scripts/install-system-deps.sh test, or apt-get install chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise ServiceUnavailable("playwright is not installed: pip install -e '.[dev]'") from exc
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            browser.close()

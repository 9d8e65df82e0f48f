"""A real browser for the e2e tests: Debian's Chromium (`make browser` installs it), driven by
Playwright through `executable_path`. Playwright's own browser downloads are never used.

Without the browser the tests fail, naming the fix; they skip only when ERP_SKIP_BROWSER_TESTS=1
says so (a machine that cannot install it). ERP_CHROMIUM names another binary.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = Path(os.environ.get("ERP_CHROMIUM", "/usr/bin/chromium"))


def installed() -> Path:
    """The Chromium binary; the test fails (or skips, when told to) without it."""
    if not CHROMIUM.exists():
        if os.environ.get("ERP_SKIP_BROWSER_TESTS") == "1":
            pytest.skip(f"ERP_SKIP_BROWSER_TESTS=1 and there is no {CHROMIUM}")
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: run `make browser` (apt-get install chromium), "
            "set ERP_CHROMIUM to another binary, or ERP_SKIP_BROWSER_TESTS=1 to skip them",
            pytrace=False,
        )
    return CHROMIUM


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium, closed afterwards."""
    executable = installed()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            await browser.close()

"""Real headless Chromium for the customer-page tests: Debian's chromium driven by Playwright.

The browser comes from the distribution (scripts/install-browser runs apt-get when it is missing);
Playwright's own browser download is never used. If Chromium still cannot be had, the browser tests
FAIL: a skipped browser test would hide a broken customer flow.

Every context is a 320 px wide phone with a fresh profile, and a network guard that aborts (and
records) any request that is not to 127.0.0.1: the pages must not load anything from another host.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
INSTALL_SCRIPT = ROOT / "scripts" / "install-browser"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# Playwright refuses --user-data-dir in launch(): it always starts Chromium on a fresh temporary
# profile of its own (and each new_context is a clean incognito-like profile on top of it).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"viewport": {"width": 320, "height": 640}, "device_scale_factor": 1, "is_mobile": True, "has_touch": True}
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def ensure_chromium() -> Path:
    """Chromium, installed through scripts/install-browser if missing; fails the run otherwise."""
    if not os.access(CHROMIUM, os.X_OK):
        result = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
        if not os.access(CHROMIUM, os.X_OK):
            pytest.fail(
                f"{CHROMIUM} is missing and scripts/install-browser could not install it "
                f"(exit {result.returncode}): {result.stderr[-2000:]}",
                pytrace=False,
            )
    return CHROMIUM


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    executable = ensure_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: scripts/bootstrap installs requirements-dev.txt", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Phone:
    """One customer's phone: a browser context, its page, the requests it tried to send elsewhere."""

    def __init__(
        self, browser: Any, name: str, *, javascript: bool, lang: str = "en-KE", size: tuple[int, int] | None = None
    ) -> None:
        device = dict(PHONE, viewport={"width": size[0], "height": size[1]}) if size else PHONE
        self.context = browser.new_context(java_script_enabled=javascript, locale=lang, **device)
        self.context.set_default_timeout(15_000)
        self.offsite: list[str] = []
        self.context.route("**/*", self._guard)
        self.page = self.context.new_page()
        self.name = re.sub(r"[^\w.-]+", "_", name)
        self.shots: list[Path] = []

    def _guard(self, route: Any) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.offsite.append(route.request.url)
            route.abort()

    def shot(self, step: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}-{len(self.shots) + 1:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def phone(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Phone]]:
    """``phone(javascript=True)`` → a fresh 320 px phone; checks at the end that nothing left 127.0.0.1."""
    made: list[Phone] = []

    def make(*, javascript: bool = True, lang: str = "en-KE", size: tuple[int, int] | None = None) -> Phone:
        name = f"{request.node.name}-{'js' if javascript else 'nojs'}"
        made.append(Phone(chromium, name, javascript=javascript, lang=lang, size=size))
        return made[-1]

    yield make
    for p in made:
        p.close()
    for p in made:
        assert p.offsite == [], f"the pages asked for other hosts: {p.offsite}"

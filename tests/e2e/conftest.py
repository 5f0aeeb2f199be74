"""Fixtures of the browser tests: headless Debian Chromium driven by Playwright's sync API.

No browser is ever downloaded (never run ``playwright install``): the tests drive the system
Chromium at ``/usr/bin/chromium``. Without it they skip locally and fail under ``CI=true``.
"""
from pathlib import Path

import pytest

from tests.conftest import require_service

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # No network traffic besides the live server.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
]
TIMEOUT_MS = 5_000


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module.

    While Playwright's sync API is started, an asyncio event loop counts as running in the
    test thread, so Django's ORM calls made by the test (factories, assertions) would raise
    SynchronousOnlyOperation; the test thread never runs async code of its own, so the check
    is switched off, but only while the browser lives. Module scope stops Playwright before
    tests of other folders run, which therefore keep Django's async-safety check.
    """
    if not CHROMIUM.exists():
        require_service("chromium", f"the e2e tests drive the system browser at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield browser
            finally:
                browser.close()


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Forget cached sample totals: test databases reuse project ids."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def _is_csp_violation(message) -> bool:
    return message.type == "error" and "Content Security Policy" in message.text


@pytest.fixture
def page(browser, live_server):
    """A page in a fresh context (no cookies shared between tests) based at the live server.

    Chromium reports what the Content-Security-Policy blocked on the console: any such
    report fails the test, so a page that only works with inline code cannot pass.
    """
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if _is_csp_violation(message) else None)
    try:
        yield page
    finally:
        context.close()
    if violations:
        pytest.fail("Content-Security-Policy violations:\n" + "\n".join(violations))


@pytest.fixture
def login(page):
    """Log ``user`` in through the login form (password "pw", see UserFactory)."""

    def do_login(user, password: str = "pw") -> None:
        page.goto("/login/")
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", password)
        with page.expect_navigation():
            page.click("form button[type=submit].primary")
        assert "/login/" not in page.url, "login failed"

    return do_login

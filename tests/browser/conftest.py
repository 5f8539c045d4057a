"""A real server and a real browser for the browser tests.

The server is `manage.py runserver` in a subprocess, pointed at the session's test database, so
it sees the tenants and personas that tests/conftest.py committed there. Mark browser tests with
plain `@pytest.mark.django_db` (so pytest-django creates the test database even when they run
alone), never `transaction=True` or `transactional_db`: a flush would wipe the session's tenants.
Whatever the server writes is committed by the server; the test's own transaction stays empty.
"""

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"


@pytest.fixture
def page(server_port):
    """A fresh Chromium page, 1280 wide.

    Per test on purpose: Playwright's sync API keeps an event loop running while it is open, and
    Django refuses database calls under a running loop, so the browser must be closed before the
    test's database transaction is rolled back (and start after the server, which needs the
    database set up).
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(10_000)
        yield page
        browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS

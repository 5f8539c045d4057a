"""A real server and a real browser for the browser tests.

The server is `manage.py runserver` in a subprocess, pointed at the session's test database, so
it sees the tenants and personas that tests/conftest.py committed there. Mark browser tests with
plain `@pytest.mark.django_db` (so pytest-django creates the test database even when they run
alone), never `transaction=True` or `transactional_db`: a flush would wipe the session's tenants.
Whatever the server writes is committed by the server; the test's own transaction stays empty.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import database_url_for_tests

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
START_TIMEOUT = 30  # seconds for the server to answer /health/

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(port: int, process: subprocess.Popen) -> None:
    """Poll /health/ on the public host (localhost) until it answers 200."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health/", headers={"Host": f"localhost:{port}"})
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the test server exited with {process.returncode}; see its output above")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the test server did not answer /health/ within {START_TIMEOUT}s")


@pytest.fixture(scope="session")
def server_port(django_db_setup):
    """Start the site on a free port against the test database; yield the port; stop it.

    Steps: build DATABASE_URL from the test database's settings, start runserver (test settings,
    DEBUG=1), wait for /health/ on the public host, and terminate the process at the end of the
    session (before pytest-django drops the test database).
    """
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": database_url_for_tests(),
        "FIELDWATCH_TESTING": "1",  # test settings, as in this process: the personas' password hasher
        "DATABASE_CONN_MAX_AGE": "0",  # no idle connection keeps the test database from being dropped
        "DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        wait_until_healthy(port, process)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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

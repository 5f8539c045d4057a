"""In a real browser: sign in on one tenant, switch to another through the navbar."""

import re
from pathlib import Path

import pytest
from helpers import PASSWORD
from playwright.sync_api import expect

pytestmark = [
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is missing (apt-get install chromium)"
    ),
    pytest.mark.django_db,  # the test database must exist for the server, even when this runs alone
]


def test_an_owner_signs_in_and_switches_to_another_tenant(page, server_port, artifacts):
    page.goto(f"http://acme.localhost:{server_port}/accounts/login/")
    page.get_by_label("Email").fill("acme_owner@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(f"http://acme.localhost:{server_port}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme")

    page.get_by_test_id("tenant-switcher").click()
    page.get_by_role("link", name="Globex").click()

    # the hand-off link signs the user in on globex's host and lands on its dashboard
    expect(page).to_have_url(f"http://globex.localhost:{server_port}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Globex")
    expect(page.get_by_test_id("tenant-switcher")).to_contain_text("Globex")
    expect(page).to_have_title(re.compile("Globex"))
    page.screenshot(path=artifacts / "switch-tenant.png", full_page=True)

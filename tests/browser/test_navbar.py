"""In Chromium: an owner's navigation (eleven entries, the most of any role) never makes the page
wider than the window, from a phone to a wide desktop; below 1200 px it folds behind the menu
button, and every entry stays reachable."""

from pathlib import Path

import pytest
from helpers import PASSWORD
from playwright.sync_api import expect

pytestmark = [
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is missing (apt-get install chromium)"
    ),
    pytest.mark.django_db,
]
ENTRIES = ["Dashboard", "Sites", "Assets", "Devices", "Outlets", "Explorer", "Locks", "Alerts", "Admin"]


def test_an_owners_navigation_fits_every_width(page, server_port, artifacts):
    base = f"http://acme.localhost:{server_port}"
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill("acme_owner@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("user-menu")).to_be_visible()
    for width in (1920, 1400, 1280, 1200, 1024, 390):
        page.set_viewport_size({"width": width, "height": 800})
        page.wait_for_timeout(100)
        page.screenshot(path=artifacts / f"navbar-owner-{width}.png")
        assert page.evaluate("document.documentElement.scrollWidth") <= width, f"wider than {width} px"
        nav = page.locator("#nav")
        if width < 1200:
            expect(nav).to_be_hidden()
            page.get_by_role("button", name="Menu").click()
            expect(nav).to_be_visible()
        for entry in ENTRIES:
            expect(nav.locator(".nav-link", has_text=entry)).to_be_visible()
        page.reload()  # the menu closed again for the next width
    page.set_viewport_size({"width": 1280, "height": 800})
    nav.locator(".nav-link", has_text="Admin").click()
    expect(nav.get_by_role("link", name="Members")).to_be_visible()

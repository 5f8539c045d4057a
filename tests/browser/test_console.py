"""In a real browser: an operator signs in, enrols a second factor, and works in the console."""

from pathlib import Path

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from helpers import PASSWORD
from playwright.sync_api import expect

pytestmark = [
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is missing (apt-get install chromium)"
    ),
    pytest.mark.django_db,
]


def totp(secret: str, time_step: int) -> str:
    return format_hotp_value(hotp_value(secret, time_step))


def test_an_operator_enrols_and_sees_tenants_on_desktop_and_phone(page, server_port, artifacts):
    base = f"http://localhost:{server_port}"
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill("operator@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # the console sends a staff member without a second factor to enrol (allauth may ask the
    # password once more first: enrolling is a sensitive change)
    if page.get_by_label("Password").count():
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Confirm").click()
    secret = page.locator("#authenticator_secret").input_value()
    page.screenshot(path=artifacts / "console-enrol.png", full_page=True)
    step = int(page.evaluate("Date.now()") / 1000) // 30
    page.get_by_label("Authenticator code").fill(totp(secret, step))
    page.get_by_role("button", name="Activate").click()

    expect(page).to_have_url(f"{base}/ops/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Tenants")
    expect(page.get_by_test_id("tenant-row")).to_have_count(2)
    page.screenshot(path=artifacts / "console-tenants.png", full_page=True)

    page.get_by_role("link", name="Acme").click()
    expect(page.get_by_test_id("domains")).to_contain_text("acme.localhost")
    page.screenshot(path=artifacts / "console-tenant.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=artifacts / "console-tenant-390.png", full_page=True)
    page.goto(f"{base}/ops/")
    page.screenshot(path=artifacts / "console-tenants-390.png", full_page=True)
    page.goto(f"{base}/ops/audit/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Console audit log")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{base}/ops/telemetry?bucket=5m")
    expect(page.get_by_test_id("query-form")).to_be_visible()
    page.screenshot(path=artifacts / "console-telemetry.png", full_page=True)
    page.goto(f"{base}/ops/ingest/")
    expect(page.get_by_test_id("ingest-live")).to_contain_text("readings last minute")
    page.screenshot(path=artifacts / "console-ingest.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=artifacts / "console-ingest-390.png", full_page=True)
    page.goto(f"{base}/ops/telemetry?bucket=5m")
    page.screenshot(path=artifacts / "console-telemetry-390.png", full_page=True)

"""The lock pages as people see them, on a desktop and a 390 px phone: the list, a lock with codes,
the PIN form with a weak PIN refused, the access log filtered, and security. Screenshots kept."""

import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from helpers import PASSWORD, committed
from lock_builders import make_lock, make_pin, remove_lock_and_traces
from playwright.sync_api import expect

from portal.locks.models import AccessLog, QrCode

pytestmark = [
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is missing"),
    pytest.mark.django_db,
]


def in_acme(work):
    def run():
        with schema_context("acme"):
            return work()

    return committed(run)


@pytest.fixture
def furnished(django_db_setup):
    suffix = uuid.uuid4().hex[:6]

    def make():
        lock = make_lock(f"pages-door-{suffix}", "Loading bay", status="locked", battery=14, location="North side")
        make_pin(lock, kind="scheduled", schedule=[{"day": 0, "start": "10:00", "end": "14:00"}])
        make_pin(lock, "730519", label="Night shift", kind="limited", max_uses=20, uses=3)
        QrCode.objects.create(lock=lock, label="Courier", max_uses=1, valid_until=timezone.now() + timedelta(days=1))
        for n in range(6):
            AccessLog.objects.create(
                lock=lock,
                method="pin",
                success=n % 3 != 0,
                reason="granted" if n % 3 else "unknown_code",
                holder="Cleaning service",
                ip="203.0.113.7",
            )
        return lock

    lock = in_acme(make)
    yield lock
    in_acme(lambda: remove_lock_and_traces(lock.lock_id))


def test_the_lock_pages_read_well_on_desktop_and_phone(page, server_port, artifacts, furnished):
    base = f"http://acme.localhost:{server_port}"
    page.goto(f"{base}/accounts/login/?{urlencode({'next': '/locks/'})}")
    page.get_by_label("Email").fill("acme_admin@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("lock-row").filter(has_text="Loading bay")).to_have_count(1)
    for width, suffix in ((1280, "desktop"), (390, "390")):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{base}/locks/")
        page.screenshot(path=artifacts / f"locks-list-{suffix}.png", full_page=True)
        page.goto(f"{base}/locks/{furnished.pk}/")
        expect(page.get_by_test_id("pin")).to_have_count(2)
        page.screenshot(path=artifacts / f"lock-detail-{suffix}.png", full_page=True)
        page.goto(f"{base}/locks/access-log/?{urlencode({'lock': furnished.pk, 'success': 'no'})}")
        expect(page.get_by_test_id("access-row")).to_have_count(2)
        page.screenshot(path=artifacts / f"locks-access-log-{suffix}.png", full_page=True)
        page.goto(f"{base}/locks/security/")
        page.screenshot(path=artifacts / f"locks-security-{suffix}.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{base}/locks/{furnished.pk}/pins/new/")
    page.get_by_label("Label").fill("Temp")
    page.get_by_label("Pin", exact=True).fill("1111")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text("one repeated digit")).to_be_visible()
    page.screenshot(path=artifacts / "lock-pin-form-weak.png", full_page=True)


def test_a_new_access_attempt_appears_on_the_open_lock_page_without_a_reload(page, server_port, artifacts, furnished):
    """Issue 14: recent access is live. The lock submits a PIN over HTTP (its key, the lean device
    path) while a viewer has the lock page open; the attempt shows up in Recent access."""
    import json
    import urllib.request

    def issue_key():
        device = furnished.device
        key = device.issue_token()
        device.save()
        make_pin(furnished, "815263", label="Window cleaner")
        return key

    key = in_acme(issue_key)
    base = f"http://acme.localhost:{server_port}"
    page.goto(f"{base}/accounts/login/?{urlencode({'next': f'/locks/{furnished.pk}/'})}")
    page.get_by_label("Email").fill("acme_viewer@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    recent = page.get_by_test_id("recent-access")
    expect(recent.get_by_test_id("access")).to_have_count(6)
    page.evaluate("window.fieldwatchMarker = 'no reload'")
    request = urllib.request.Request(
        f"http://127.0.0.1:{server_port}/api/locks/{furnished.lock_id}/access/",
        data=json.dumps({"method": "pin", "code": "815263"}).encode(),
        headers={"Host": f"acme.localhost:{server_port}", "Authorization": f"Bearer {key}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert json.loads(answer.read())["allowed"] is True
    newest = recent.get_by_test_id("access").first
    expect(newest).to_contain_text("Window cleaner", timeout=10_000)
    expect(newest).to_contain_text("granted")
    expect(recent.get_by_test_id("access")).to_have_count(7)
    assert page.evaluate("window.fieldwatchMarker") == "no reload"
    page.screenshot(path=artifacts / "lock-recent-access-desktop.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=artifacts / "lock-recent-access-390.png", full_page=True)

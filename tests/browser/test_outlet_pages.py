"""In a real browser, desktop and phone: the outlet, machine, counting-device, events and flush
pages; the machine page and the device list update themselves when the device reports."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from helpers import PASSWORD
from playwright.sync_api import expect

pytestmark = [
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is missing (apt-get install chromium)"
    ),
    pytest.mark.django_db,
]

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def fleet(django_db_setup, django_db_blocker):
    """An outlet with two machines (one device each, counting for two weeks) and an unregistered
    device, committed for the server to see."""
    from outlets.usage_builders import bound, counter_device, event

    from portal.outlets.models import Machine, MachineDevice, Outlet, UsageDaily, UsageHourly, UsageMonthly
    from portal.outlets.usage import roll_up_usage
    from telemetry.models import Device, DeviceEvent

    with django_db_blocker.unblock(), schema_context("acme"):
        now = timezone.now()
        first, device = bound("Harbour outlet", "Washer 1", at=now - timedelta(days=20))
        second, other = bound("Harbour outlet", "Washer 2", at=now - timedelta(days=20))
        Outlet.objects.filter(pk=first.outlet_id).update(
            address="12 Quay Street", contact_person="Ana Reis", number_of_machines=3, total_sva=4
        )
        for n in range(120):
            target = device if n % 2 else other
            event(target, now - timedelta(hours=2.7 * n, minutes=2), ["BASIC", "STANDARD", "PREMIUM"][n % 3], counter=n)
        spare = counter_device("spare-browser")
        event(spare, now - timedelta(minutes=30))
        Device.objects.filter(pk__in=[device.pk, other.pk, spare.pk]).update(
            last_seen=now - timedelta(minutes=1),
            firmware="1.4.2",
            status={
                "wifi_connected": True,
                "rtc_available": True,
                "sd_card_available": False,
                "current_count_basic": 40,
                "current_count_standard": 12,
                "current_count_premium": 3,
            },
        )
        roll_up_usage()
    devices = [device, other, spare]
    yield {"outlet": first.outlet, "machine": first, "device": device, "spare": spare}
    with django_db_blocker.unblock(), schema_context("acme"):
        for model in (UsageHourly, UsageDaily, UsageMonthly, DeviceEvent):
            model.objects.filter(device__in=devices).delete()
        MachineDevice.objects.filter(device__in=devices).delete()
        Machine.objects.filter(outlet__name="Harbour outlet").delete()
        Outlet.objects.filter(name="Harbour outlet").delete()
        Device.objects.filter(pk__in=[d.pk for d in devices]).delete()


def sign_in(page, base, email, next_path):
    page.goto(f"{base}/accounts/login/?next={next_path}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def both_widths(page, artifacts, name):
    page.set_viewport_size({"width": 1280, "height": 800})
    page.screenshot(path=str(artifacts / f"outlets-{name}.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(artifacts / f"outlets-{name}-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})


def report(device, treatment="BASIC", counter=None):
    """The device posts: an event and its last_seen (what /api/device/events/ does), committed from
    a thread of its own (Django refuses database calls beside Playwright's running event loop)."""
    import threading

    from django.db import connection
    from outlets.usage_builders import event

    from telemetry.models import Device

    def post():
        try:
            with schema_context("acme"):
                event(device, timezone.now(), treatment, counter=counter)
                Device.objects.filter(pk=device.pk).update(last_seen=timezone.now(), firmware="1.5.0")
        finally:
            connection.close()

    thread = threading.Thread(target=post)
    thread.start()
    thread.join()


def test_the_outlet_and_machine_pages(page, server_port, artifacts, fleet, django_db_blocker):
    base = f"http://acme.localhost:{server_port}"
    sign_in(page, base, "acme_operator@example.com", f"/outlets/{fleet['outlet'].pk}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Harbour outlet")
    expect(page.get_by_test_id("machine-row")).to_have_count(2)
    expect(page.get_by_test_id("owner-machines")).to_contain_text("3")
    both_widths(page, artifacts, "outlet")

    page.get_by_role("link", name="Washer 1").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Washer 1")
    expect(page.locator(".fw-chart canvas")).to_have_count(1)
    before = int(page.get_by_test_id("usage-today").inner_text())
    rows = page.get_by_test_id("event-row").count()
    both_widths(page, artifacts, "machine")
    with django_db_blocker.unblock():
        report(fleet["device"], "PREMIUM", counter=500)
    expect(page.get_by_test_id("usage-today")).to_have_text(str(before + 1), timeout=20_000)
    expect(page.get_by_test_id("event-row").first).to_contain_text("PREMIUM")
    assert page.get_by_test_id("event-row").count() == min(rows + 1, 20)


def test_the_device_lists_events_and_flush(page, server_port, artifacts, fleet, django_db_blocker):
    base = f"http://acme.localhost:{server_port}"
    sign_in(page, base, "acme_owner@example.com", "/counters/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Counting devices")
    both_widths(page, artifacts, "devices")
    page.goto(f"{base}/counters/?status=unregistered")
    expect(page.get_by_test_id("register-form")).to_have_count(1)
    page.get_by_placeholder("New machine name").fill("Spare bay")  # typing survives live updates
    with django_db_blocker.unblock():
        report(fleet["spare"])
    expect(page.locator(f"#counter-{fleet['spare'].pk}-firmware")).to_have_text("1.5.0", timeout=20_000)
    expect(page.get_by_placeholder("New machine name")).to_have_value("Spare bay")
    both_widths(page, artifacts, "unregistered")
    page.goto(f"{base}/counters/?status=online")
    both_widths(page, artifacts, "online")
    page.goto(f"{base}/usage/events/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    both_widths(page, artifacts, "events")
    page.goto(f"{base}/usage/flush/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    both_widths(page, artifacts, "flush")

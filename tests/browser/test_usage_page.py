"""In a real browser: the usage statistics page switches granularity and the previous-period
comparison by htmx, and the chart redraws with other buckets and series."""

import re
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


@pytest.fixture(scope="module")
def counted(django_db_setup, django_db_blocker):
    """A machine whose device counted every 3 hours for 20 days, committed for the server to see."""
    from outlets.usage_builders import bound, event

    from portal.outlets.models import Machine, MachineDevice, Outlet, UsageDaily, UsageHourly, UsageMonthly
    from portal.outlets.usage import roll_up_usage
    from telemetry.models import Device, DeviceEvent

    with django_db_blocker.unblock(), schema_context("acme"):
        machine, device = bound("Browser outlet", "Browser machine", at=timezone.now() - timedelta(days=30))
        now = timezone.now()
        for n in range(160):
            event(device, now - timedelta(hours=3 * n, minutes=1), ["BASIC", "STANDARD", "PREMIUM"][n % 3], counter=n)
        roll_up_usage()
    yield machine
    with django_db_blocker.unblock(), schema_context("acme"):
        for model in (UsageHourly, UsageDaily, UsageMonthly):
            model.objects.filter(device=device).delete()
        DeviceEvent.objects.filter(device=device).delete()
        MachineDevice.objects.filter(device=device).delete()
        Machine.objects.filter(pk=machine.pk).delete()
        Outlet.objects.filter(name="Browser outlet").delete()
        Device.objects.filter(pk=device.pk).delete()


def chart(page) -> dict:
    return page.evaluate("JSON.parse(document.getElementById('usage-chart').textContent)")


def test_switching_granularity_and_comparison_redraws_the_chart(page, server_port, artifacts, counted):
    base = f"http://acme.localhost:{server_port}"
    page.goto(f"{base}/accounts/login/?next=/usage/?machine={counted.pk}%26days=10")
    page.get_by_label("Email").fill("acme_viewer@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("Usage statistics")
    expect(page.locator(".fw-chart canvas")).to_have_count(1)
    by_day = chart(page)
    assert len(by_day["x"]) == 10 and len(by_day["series"]) == 4  # three treatments and the total
    # a day chart ticks by days (dates), never at 12:00 between two buckets
    ticks = page.evaluate("document.querySelector('.fw-chart').fwChart.axes[0]._values")
    assert ticks and not [tick for tick in ticks if ":" in tick], ticks
    page.screenshot(path=str(artifacts / "usage-day.png"), full_page=True)

    page.get_by_test_id("granularity").select_option("hour")
    expect(page.get_by_test_id("stats-range")).to_contain_text("hours from")
    expect(page).to_have_url(re.compile("granularity=hour"))
    by_hour = chart(page)
    assert len(by_hour["x"]) > 200 and by_hour["x"] != by_day["x"]
    expect(page.locator(".fw-chart canvas")).to_have_count(1)

    page.get_by_test_id("compare").check()
    expect(page.get_by_test_id("deltas")).to_be_visible()
    compared = chart(page)
    assert len(compared["series"]) == 8 and compared["series"][4]["label"].endswith("(previous)")
    assert sum(v for v in compared["series"][3]["values"] if v) == sum(by_hour["series"][3]["values"])
    page.screenshot(path=str(artifacts / "usage-hour-compare.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.locator(".fw-chart canvas")).to_have_count(1)
    page.screenshot(path=str(artifacts / "usage-phone.png"))  # the first screen: controls and chart

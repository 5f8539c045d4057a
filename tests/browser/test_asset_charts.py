"""In a real browser: open an asset, switch its chart's range and bucket, see the chart redraw."""

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
def chiller(django_db_setup, django_db_blocker):
    """An asset with two devices and ten days of readings, committed for the server to see."""
    from portal.facilities.models import Asset, DeviceBinding, Site
    from telemetry.ingest import ReadingIn, ingest
    from telemetry.models import (
        DailyRollup,
        Device,
        DirtyHour,
        HourlyRollup,
        Reading,
        Sensor,
    )
    from telemetry.rollups import roll_up

    with django_db_blocker.unblock(), schema_context("acme"):
        site = Site.objects.create(name="Browser Plant")
        asset = Asset.objects.create(site=site, tag="CHILLER-77", name="Browser chiller", type=Asset.Type.CHILLER)
        now = timezone.now()
        ingest(
            [
                ReadingIn("browser-gw", "supply", now - timedelta(minutes=10 * i), 7 + (i % 36) / 6, unit="°C")
                for i in range(1, 1440)
            ]
            + [
                ReadingIn("browser-meter", "power", now - timedelta(minutes=10 * i), 80 + i % 20, unit="kW")
                for i in range(1, 1440)
            ],
            source="internal",
        )
        roll_up()
        for device in Device.objects.filter(device_id__startswith="browser-"):
            DeviceBinding.objects.create(asset=asset, device=device)
    yield asset
    with django_db_blocker.unblock(), schema_context("acme"):  # other fixtures moved the connection meanwhile
        DeviceBinding.objects.filter(asset=asset).delete()
        asset.delete()
        site.delete()
        sensors = Sensor.objects.filter(device__device_id__startswith="browser-")
        for model in (Reading, HourlyRollup, DailyRollup, DirtyHour):
            model.objects.filter(sensor_id__in=sensors.values("pk")).delete()
        Device.objects.filter(device_id__startswith="browser-").delete()


def chart_points(page) -> int:
    """How many points (not the nulls that mark gaps) the first chart's data holds."""
    return page.evaluate(
        "JSON.parse(document.getElementById(document.querySelector('.fw-chart').dataset.chartSource).textContent)"
        ".series[0].values.filter((v) => v !== null).length"
    )


def test_switching_range_and_bucket_redraws_the_charts(page, server_port, artifacts, chiller):
    base = f"http://acme.localhost:{server_port}"
    page.goto(f"{base}/accounts/login/?next=/assets/{chiller.pk}/")
    page.get_by_label("Email").fill("acme_viewer@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("CHILLER-77")
    expect(page.locator(".fw-chart canvas")).to_have_count(2)  # a chart per sensor, both devices
    day_points = chart_points(page)  # 24 h in 5-minute buckets
    assert 100 < day_points <= 289

    page.evaluate("window.fieldwatchMarker = 'no reload'")
    page.get_by_test_id("range-7d").click()
    expect(page).to_have_url(f"{base}/assets/{chiller.pk}/?range=7d")
    expect(page.get_by_test_id("range-7d")).to_have_class("btn btn-sm btn-primary")
    week_points = chart_points(page)  # 7 days in hours
    assert 150 < week_points <= 169
    expect(page.locator(".fw-chart canvas")).to_have_count(2)

    page.get_by_test_id("bucket").select_option("1d")
    expect(page).to_have_url(f"{base}/assets/{chiller.pk}/?range=7d&bucket=1d")
    expect(page.get_by_test_id("bucket")).to_have_value("1d")
    assert chart_points(page) in (7, 8)
    expect(page.locator(".fw-chart canvas")).to_have_count(2)
    assert page.evaluate("window.fieldwatchMarker") == "no reload"  # htmx swapped, the page stayed
    page.screenshot(path=artifacts / "asset-charts.png", full_page=True)

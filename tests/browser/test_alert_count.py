"""In a real browser: an alert that opens while a page is open shows in the navigation's count
without a reload (the count polls portal.alerts.live.nav_count)."""

import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.db import connection
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

DEVICE = "badge-gw"


def committed(work):
    """Run `work` in acme on a thread of its own: its own connection in autocommit, outside the
    test's transaction, so the server process sees what it writes (and on-commit work runs)."""
    outcome = {}

    def run():
        try:
            with schema_context("acme"):
                outcome["value"] = work()
        except Exception as error:  # re-raised in the test's thread
            outcome["error"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.fixture
def warm_sensor():
    from portal.alerts.models import AlertRule, RuleCondition
    from telemetry.models import Device, Sensor

    def create():
        device = Device.objects.create(device_id=DEVICE, name="Badge gateway", last_seen=timezone.now())
        sensor = Sensor.objects.create(device=device, key="supply", type="temperature", unit="°C")
        rule = AlertRule.objects.create(name="Badge test: supply too warm", target_kind="sensor", target_id=sensor.pk)
        RuleCondition.objects.create(rule=rule, position=0, kind="above", threshold=30)
        return sensor

    yield committed(create)

    def clean_up():
        from portal.alerts.models import Alert
        from telemetry.models import DailyRollup, DirtyHour, HourlyRollup, Reading

        sensors = Sensor.objects.filter(device__device_id=DEVICE)
        for model in (Reading, HourlyRollup, DailyRollup, DirtyHour):
            model.objects.filter(sensor_id__in=sensors.values("pk")).delete()
        Alert.objects.filter(rule__name__startswith="Badge test").delete()
        AlertRule.objects.filter(name__startswith="Badge test").delete()
        Device.objects.filter(device_id=DEVICE).delete()

    committed(clean_up)


def test_an_alert_that_opens_shows_in_the_navigation_count_without_a_reload(page, server_port, artifacts, warm_sensor):
    from portal.alerts.models import Alert
    from telemetry.ingest import ReadingIn, ingest

    base = f"http://acme.localhost:{server_port}"
    page.goto(f"{base}/accounts/login/?{urlencode({'next': '/'})}")
    page.get_by_label("Email").fill("acme_viewer@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    badge = page.get_by_test_id("open-alert-count")
    expect(badge).to_be_visible()
    before = committed(lambda: Alert.objects.active().count())
    expect(badge).to_have_text(str(before))
    page.evaluate("window.fieldwatchMarker = 'no reload'")

    committed(lambda: ingest([ReadingIn(DEVICE, "supply", timezone.now() - timedelta(seconds=1), 35.5)], source="mqtt"))
    assert committed(lambda: Alert.objects.active().count()) == before + 1  # the engine opened it

    expect(badge).to_have_text(str(before + 1), timeout=15_000)  # one poll every 10 s
    expect(badge).to_have_class("badge rounded-pill text-bg-danger")
    assert page.evaluate("window.fieldwatchMarker") == "no reload"
    page.screenshot(path=artifacts / "alert-count-desktop.png")

"""In a real browser, with a real Mosquitto and the bridge running: an asset page updates itself.

A reading published over MQTT reaches the open page without a reload: the latest value, the
"updated" time and the freshness badge, and the chart (with the zoom the person chose kept).
When data stops, "now" ages into minutes and the badge turns stale.
"""

import json
import re
import signal
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from brokers import BridgeProcess
from django.utils import timezone
from django_tenants.utils import schema_context
from helpers import PASSWORD, wait_for
from playwright.sync_api import expect

pytestmark = [
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is missing (apt-get install chromium)"
    ),
    pytest.mark.django_db,
]

SITE, TAG, DEVICE = "Live Plant", "LIVE-77", "live-gw"


@pytest.fixture(scope="module")
def live_asset(django_db_setup, django_db_blocker):
    """An asset whose gateway reported an hour of readings, up to two minutes ago (committed)."""
    from portal.facilities.models import Asset, DeviceBinding, Site
    from telemetry.ingest import ReadingIn, ingest
    from telemetry.models import DailyRollup, DeadLetter, Device, DirtyHour, HourlyRollup, Reading, Sensor

    with django_db_blocker.unblock(), schema_context("acme"):
        site = Site.objects.create(name=SITE)
        asset = Asset.objects.create(site=site, tag=TAG, name="Live chiller", type=Asset.Type.CHILLER)
        now = timezone.now()
        ingest(
            [ReadingIn(DEVICE, "supply", now - timedelta(minutes=2 + i), 7 + i % 3, unit="°C") for i in range(60)],
            source="internal",
        )
        DeviceBinding.objects.create(asset=asset, device=Device.objects.get(device_id=DEVICE))
    yield asset
    with django_db_blocker.unblock(), schema_context("acme"):
        sensors = Sensor.objects.filter(device__device_id=DEVICE)
        for model in (Reading, HourlyRollup, DailyRollup, DirtyHour):  # all the bridge wrote, committed
            model.objects.filter(sensor_id__in=sensors.values("pk")).delete()
        DeadLetter.objects.filter(topic__contains=TAG).delete()
        Device.objects.filter(device_id=DEVICE).delete()
        asset.delete()
        site.delete()


@pytest.fixture
def bridge(broker):
    process = BridgeProcess(broker, f"browser-live-{time.monotonic_ns()}").wait_ready()
    yield broker
    process.stop(signal.SIGTERM)


def publish(broker_url: str, value: float) -> None:
    from bridge.mqtt import broker_from_settings, connect, make_client

    settings = broker_from_settings(broker_url)
    client = make_client(settings, f"browser-publisher-{time.monotonic_ns()}", persistent=False)
    connect(client, settings, persistent=False)
    client.loop_start()
    wait_for(client.is_connected, 10, "the publisher to connect")
    payload = json.dumps([{"bn": DEVICE, "bt": time.time()}, {"n": "supply", "u": "°C", "v": value}])
    client.publish(f"tenants/acme/sites/{SITE}/assets/{TAG}/telemetry", payload, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def sign_in(page, base, next_url):
    page.goto(f"{base}/accounts/login/?{urlencode({'next': next_url})}")
    page.get_by_label("Email").fill("acme_viewer@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def chart_state(page):
    return page.evaluate(
        """() => { const el = document.querySelector('.fw-chart'); const u = el.fwChart;
                   return {points: el.fwPoints.length, last: el.fwPoints[el.fwPoints.length - 1][1],
                           min: u.scales.x.min, max: u.scales.x.max}; }"""
    )


def test_a_reading_published_over_mqtt_updates_the_open_asset_page(page, server_port, artifacts, live_asset, bridge):
    base = f"http://acme.localhost:{server_port}"
    page.clock.install()  # the real time flows; later the test jumps ahead to see data go stale
    sign_in(page, base, f"/assets/{live_asset.pk}/?range=24h&bucket=raw")
    row = page.get_by_test_id("sensor-row").first
    expect(row.get_by_test_id("latest")).to_contain_text("°C")
    expect(row.get_by_test_id("updated")).to_have_text("2 minutes ago")
    expect(row.get_by_test_id("freshness")).to_have_text("fresh")
    expect(page.locator(".fw-chart canvas")).to_have_count(1)
    before = chart_state(page)
    # the person zooms into the first half of the hour shown; updates must keep that view
    page.evaluate(
        "() => { const u = document.querySelector('.fw-chart').fwChart;"
        " u.setScale('x', {min: u.data[0][0], max: u.data[0][0] + 1800}); }"
    )
    zoomed = chart_state(page)
    page.evaluate("window.fieldwatchMarker = 'no reload'")

    publish(bridge, 42.42)

    expect(row.get_by_test_id("latest")).to_contain_text("42.42 °C", timeout=10_000)
    # the page polls every few seconds, so the reading is at most one poll interval old when it shows
    expect(row.get_by_test_id("updated")).to_have_text(re.compile(r"^(now|\d seconds ago)$"))
    expect(row.get_by_test_id("freshness")).to_have_text("fresh")
    wait_for(lambda: chart_state(page)["points"] == before["points"] + 1, 5, "the chart to take the new point")
    after = chart_state(page)
    assert after["last"] == 42.42
    assert (after["min"], after["max"]) == (zoomed["min"], zoomed["max"])  # the zoom is kept
    assert page.evaluate("window.fieldwatchMarker") == "no reload"
    page.screenshot(path=artifacts / "asset-live-desktop.png", full_page=True)

    # nothing more arrives: twenty minutes on, the page says so by itself
    page.clock.fast_forward("20:00")
    expect(row.get_by_test_id("updated")).to_have_text("20 minutes ago", timeout=5_000)
    expect(row.get_by_test_id("freshness")).to_have_text("stale")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=artifacts / "asset-live-390.png", full_page=True)


def test_polling_stops_while_the_tab_is_hidden_and_backs_off_on_errors(page, server_port, live_asset):
    """static/js/live.js on the asset page (a poll every 5 s), the page's clock paused and moved by
    hand: nothing asked while hidden, one poll at once when shown again, then after each failure
    twice as long a wait (5, 10, 20 s), and back to 5 s once answers come again."""
    from datetime import datetime

    base = f"http://acme.localhost:{server_port}"
    live_path = f"/assets/{live_asset.pk}/live/"
    answered = []
    page.on("response", lambda response: live_path in response.url and answered.append(response.status))
    page.clock.install()
    sign_in(page, base, f"/assets/{live_asset.pk}/?range=24h")
    expect(page.get_by_test_id("live")).to_have_count(1)
    page.clock.pause_at(datetime.now() + timedelta(seconds=1))

    def polls_after(milliseconds: int, expected: int) -> None:
        """Move the clock on, then nudge it (htmx sends and settles on timers too) until the
        answers are in, and a little more: a poll that should not have been made shows."""
        page.clock.run_for(milliseconds)
        deadline = time.monotonic() + 15
        while len(answered) < expected and time.monotonic() < deadline:
            page.clock.run_for(20)
            time.sleep(0.05)
        for _ in range(5):
            page.clock.run_for(20)
            time.sleep(0.05)
        assert len(answered) == expected, answered

    polls_after(5_500, 1)
    set_visibility = (
        "state => { Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => state});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    page.evaluate(set_visibility, "hidden")
    polls_after(60_000, 1)  # twelve intervals hidden: none asked
    page.evaluate(set_visibility, "visible")
    polls_after(0, 2)  # shown again: one at once

    page.route(f"**{live_path}**", lambda route: route.fulfill(status=500, body="down"))
    polls_after(5_500, 3)  # the usual 5 s, answered 500
    polls_after(9_000, 3)  # then 10 s
    polls_after(1_500, 4)
    polls_after(18_500, 4)  # then 20 s
    polls_after(2_000, 5)
    assert answered[2:] == [500, 500, 500]
    page.unroute(f"**{live_path}**")
    polls_after(41_000, 6)  # 40 s after the third failure, answered again
    polls_after(5_500, 7)  # and back to every 5 s
    assert answered[-2:] == [204, 204]

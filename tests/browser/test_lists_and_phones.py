"""In Chromium: list filters and paging keep working change after change (the #table swap), and a
phone reaches every column of a wide table. Screenshots of each page, desktop and 390 px wide,
are kept in test-artifacts/browser/."""

import re
import threading
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
PREFIX = "pw-list-"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def fleet(django_db_setup, django_db_blocker):
    """120 devices (controllers and gateways, some silent), one with 200 readings today on an
    asset: committed for the server to see, removed afterwards."""
    from portal.facilities.models import Asset, DeviceBinding, Site
    from telemetry.ingest import ReadingIn, ingest
    from telemetry.models import DailyRollup, Device, DirtyHour, HourlyRollup, Reading, Sensor

    with django_db_blocker.unblock(), schema_context("acme"):
        now = timezone.now()
        ingest(
            [ReadingIn(f"{PREFIX}{n:03}", "temp", now - timedelta(minutes=1 + 30 * (n % 3)), 5.0) for n in range(120)]
            + [ReadingIn(f"{PREFIX}hist", "temp", now - timedelta(minutes=5 * i), 4 + i % 7 / 3) for i in range(1, 200)]
            + [
                ReadingIn(f"{PREFIX}hist", "power", now - timedelta(minutes=5 * i), 80.0 + i % 9) for i in range(1, 200)
            ],
            source="internal",
        )
        Device.objects.filter(device_id__startswith=PREFIX, device_id__regex=r"[02468]$").update(kind="controller")
        site = Site.objects.create(name="Phone Plant")
        asset = Asset.objects.create(site=site, tag="PHONE-01", name="A chiller with a long name for phones")
        device = Device.objects.get(device_id=f"{PREFIX}hist")
        DeviceBinding.objects.create(asset=asset, device=device)
        sensor = device.sensors.get(key="temp")
    yield {"asset": asset, "device": device, "sensor": sensor}
    with django_db_blocker.unblock(), schema_context("acme"):
        DeviceBinding.objects.filter(asset=asset).delete()
        asset.delete()
        site.delete()
        sensors = Sensor.objects.filter(device__device_id__startswith=PREFIX)
        for model in (Reading, HourlyRollup, DailyRollup, DirtyHour):
            model.objects.filter(sensor_id__in=sensors.values("pk")).delete()
        Device.objects.filter(device_id__startswith=PREFIX).delete()


def sign_in(page, base: str, next_url: str) -> None:
    page.goto(f"{base}/accounts/login/?next={next_url}")
    page.get_by_label("Email").fill("acme_operator@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def htmx_errors(page) -> list[str]:
    """Console errors htmx logs (htmx:targetError and the like), collected from now on."""
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def both_widths(page, artifacts, name: str) -> None:
    page.screenshot(path=artifacts / f"{name}-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=artifacts / f"{name}-390.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})


def test_three_filter_changes_in_a_row_on_the_devices_list(page, server_port, artifacts, fleet):
    base = f"http://acme.localhost:{server_port}"
    sign_in(page, base, "/devices/")
    errors = htmx_errors(page)
    rows = page.get_by_test_id("device-row")
    page.evaluate("window.fieldwatchMarker = 'no reload'")

    page.get_by_placeholder("Search…").fill(f"{PREFIX}0")  # 1: search (000–099)
    page.get_by_placeholder("Search…").press("Enter")
    expect(page).to_have_url(re.compile(rf"/devices/\?q={PREFIX}0&"))
    expect(page.get_by_test_id("row-count")).to_contain_text("of 100")

    page.get_by_label("Kind").select_option("controller")  # 2: a filter
    expect(page.get_by_test_id("row-count")).to_contain_text("of 50")
    expect(rows.first).to_contain_text(f"{PREFIX}000")

    page.get_by_role("link", name="Device ID").click()  # 3: sort (descending on the second click)
    page.get_by_role("link", name="Device ID ▲").click()
    expect(rows.first).to_contain_text(f"{PREFIX}098")
    expect(page).to_have_url(re.compile(rf"q={PREFIX}0&kind=controller&.*sort=-device_id"))

    page.get_by_label("Status").select_option("online")  # 4: and once more, to be sure
    expect(page.get_by_test_id("row-count")).to_contain_text("of 17")
    assert page.evaluate("window.fieldwatchMarker") == "no reload"  # htmx swapped every time
    assert not [e for e in errors if "htmx" in e.lower() or "target" in e.lower()], errors
    page.go_back()
    expect(page.get_by_test_id("row-count")).to_contain_text("of 50")
    both_widths(page, artifacts, "devices-filtered")


def test_paging_through_the_explorer_to_page_three_and_jumping(page, server_port, artifacts, fleet):
    base = f"http://acme.localhost:{server_port}"
    sensor = fleet["sensor"]
    sign_in(page, base, f"/explorer/?device={fleet['device'].pk}%26sensor={sensor.pk}%26bucket=raw")
    errors = htmx_errors(page)
    expect(page.get_by_test_id("page-number")).to_have_text("Page 1 of 4")
    page.get_by_test_id("page-next").click()
    expect(page.get_by_test_id("page-number")).to_have_text("Page 2 of 4")
    page.get_by_test_id("page-next").click()
    expect(page.get_by_test_id("page-number")).to_have_text("Page 3 of 4")
    assert "page=3" in page.url
    first_on_three = page.get_by_test_id("reading-row").first.inner_text()
    page.get_by_label("Go to page").fill("1")
    page.get_by_label("Go to page").press("Enter")
    expect(page.get_by_test_id("page-number")).to_have_text("Page 1 of 4")
    page.go_back()
    expect(page.get_by_test_id("page-number")).to_have_text("Page 3 of 4")
    assert page.get_by_test_id("reading-row").first.inner_text() == first_on_three
    assert not [e for e in errors if "htmx" in e.lower() or "target" in e.lower()], errors
    both_widths(page, artifacts, "explorer-page-3")


def test_on_a_phone_the_asset_history_last_column_is_reachable(page, server_port, artifacts, fleet):
    base = f"http://acme.localhost:{server_port}"
    page.set_viewport_size(PHONE)
    sign_in(page, base, f"/assets/{fleet['asset'].pk}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("PHONE-01")
    page.screenshot(path=artifacts / "asset-390.png", full_page=True)
    history = page.get_by_test_id("history")
    last_header = history.locator("thead th").last
    expect(last_header).to_have_text("Count")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # the page itself does not scroll
    last_header.scroll_into_view_if_needed()
    box, first = last_header.bounding_box(), history.locator("tbody td").first.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box  # the table scrolled, in its card
    assert 0 <= first["x"] < 40, first  # the time column stays in view
    history.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "asset-history-scrolled-390.png")


def test_pages_at_both_widths_for_a_look(page, server_port, artifacts, fleet):
    """Not an assertion of looks: the screenshots a person opens to look at the pages."""
    base = f"http://acme.localhost:{server_port}"
    sign_in(page, base, "/")
    for name, path in {
        "dashboard": "/",
        "devices": "/devices/",
        "device": f"/devices/{fleet['device'].pk}/",
        "assets": "/assets/",
        "dead-letters": "/dead-letters/",
    }.items():
        assert page.goto(f"{base}{path}").status == 200
        both_widths(page, artifacts, name)


def test_the_dashboard_updates_by_itself_when_a_device_reports(page, server_port, artifacts, fleet, django_db_blocker):
    """An offline device reports: within a poll the dashboard counts it online and no longer
    lists it as offline, without a reload."""
    from telemetry.ingest import ReadingIn, ingest
    from telemetry.models import Sensor

    def in_thread(work):  # Django refuses the database under Playwright's running event loop
        def run():
            from django.db import connection

            with schema_context("acme"):
                work()
            connection.close()

        with django_db_blocker.unblock():
            thread = threading.Thread(target=run)
            thread.start()
            thread.join(30)

    # a key sensor, on the asset PHONE-01
    in_thread(lambda: Sensor.objects.filter(device__device_id=f"{PREFIX}hist", key="temp").update(on_dashboard=True))
    base = f"http://acme.localhost:{server_port}"
    sign_in(page, base, "/")
    key_sensor = page.get_by_test_id("key-sensors").get_by_test_id("key-sensor")
    expect(key_sensor).to_contain_text("PHONE-01")
    silent = page.get_by_test_id("offline-devices").get_by_role("link", name=f"{PREFIX}001")
    expect(silent).to_be_visible()
    online = page.get_by_test_id("devices-online-widget").get_by_test_id("widget-value")
    before = online.inner_text()
    page.evaluate("window.fieldwatchMarker = 'no reload'")

    in_thread(
        lambda: ingest(
            [
                ReadingIn(f"{PREFIX}001", "temp", timezone.now(), 5.5),
                ReadingIn(f"{PREFIX}hist", "temp", timezone.now(), 9.87),
            ],
            source="internal",
        )
    )
    expect(silent).to_have_count(0, timeout=25_000)  # the dashboard polls every 15 s
    assert online.inner_text() != before
    expect(key_sensor).to_contain_text("9.87")  # its row swapped by itself
    expect(key_sensor.get_by_test_id("freshness")).to_have_text("fresh")
    assert page.evaluate("window.fieldwatchMarker") == "no reload"
    page.screenshot(path=artifacts / "dashboard-live-desktop.png", full_page=True)


def test_on_a_phone_an_empty_list_says_so_within_its_card(page, server_port, artifacts, fleet):
    """A list with nothing to show (its one cell spanning the columns) is not a wide table: the
    message wraps inside the card instead of running off to the right, where nobody scrolls."""
    base = f"http://acme.localhost:{server_port}"
    page.set_viewport_size(PHONE)
    sign_in(page, base, "/dead-letters/")
    for path in ("/dead-letters/", "/assets/?q=nothing-matches-this", "/devices/?q=nothing-matches-this"):
        assert page.goto(f"{base}{path}").status == 200
        message = page.locator("td[colspan]").first
        expect(message).to_be_visible()
        card = page.locator(".table-responsive").first.bounding_box()
        text = message.evaluate(
            "cell => { const range = document.createRange(); range.selectNodeContents(cell);"
            " const box = range.getBoundingClientRect(); return {x: box.x, right: box.right}; }"
        )
        assert card["x"] <= text["x"] and text["right"] <= card["x"] + card["width"], (path, text, card)
    page.screenshot(path=artifacts / "empty-list-390.png", full_page=True)

"""The dashboard as a live fleet overview: devices online and offline (the offline ones listed
and linked), readings in the last hour, dead letters today, assets in fault with their reason,
each site's key sensors; changes to things (not sign-ins) in Recent activity; a cheap poll."""

import re
from datetime import timedelta
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.facilities.models import Asset, DeviceBinding, Site
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import DeadLetter, Device, Sensor

LIVE = "/dashboard/live/"


def report(device_id, sensor="temp", value=4.0, minutes_ago=1.0, **fields):
    with schema_context("acme"):
        moment = timezone.now() - timedelta(minutes=minutes_ago)
        ingest([ReadingIn(device_id, sensor, moment, value, unit="°C")], source="mqtt")
        device = Device.objects.get(device_id=device_id)
        if fields:
            Sensor.objects.filter(device=device, key=sensor).update(**fields)
        return device


@pytest.fixture
def fleet(db):
    """Two devices reporting, one silent for two hours, on two sites' assets."""
    with schema_context("acme"):
        north, south = Site.objects.create(name="North plant"), Site.objects.create(name="South plant")
        chiller = Asset.objects.create(site=north, tag="CHILLER-001", name="Main chiller")
        freezer = Asset.objects.create(site=south, tag="FRZ-01", name="Pharmacy freezer")
        cold = Asset.objects.create(site=south, tag="COLD-01")
    on_chiller = report("gw-north", "supply_temp", 6.456, on_dashboard=True, precision=1)
    on_freezer = report("gw-south", "cabinet", -19.25, minutes_ago=3, on_dashboard=True)
    silent = report("gw-cold", "room", 3.0, minutes_ago=120)
    with schema_context("acme"):
        for asset, device in ((chiller, on_chiller), (freezer, on_freezer), (cold, silent)):
            DeviceBinding.objects.create(asset=asset, device=device)
        ingest(
            [
                ReadingIn("gw-north", "supply_temp", timezone.now() - timedelta(minutes=m), 6.0, unit="°C")
                for m in range(2, 40)
            ],
            source="mqtt",
        )
        DeadLetter.objects.create(source="mqtt", payload="{}", reason="out_of_range")
        DeadLetter.objects.create(
            source="mqtt", payload="{}", reason="out_of_range", received_at=timezone.now() - timedelta(days=2)
        )
    return {"chiller": chiller, "freezer": freezer, "cold": cold, "silent": silent}


def widget(html: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}".*?data-testid="widget-value">([^<]+)<', html, re.S)
    return unescape(found.group(1)).strip()


def test_the_dashboard_counts_the_fleet(as_acme, fleet):
    html = as_acme("acme_viewer").get("/").content.decode()
    assert widget(html, "devices-online-widget") == "2 of 3"
    assert widget(html, "readings-widget") == "40"  # the 2-hour-old reading is not in the last hour
    assert widget(html, "dead-letters-widget") == "1"  # today's, not the one of two days ago


def test_offline_devices_are_listed_and_linked(as_acme, fleet):
    html = as_acme("acme_viewer").get("/").content.decode()
    panel = re.search(r'data-testid="offline-devices".*?</ul>', html, re.S).group(0)
    assert f'href="/devices/{fleet["silent"].pk}/"' in panel and "gw-cold" in panel and "2 hours ago" in panel
    assert "gw-north" not in panel and 'href="/devices/?status=offline"' in panel


def test_assets_in_fault_say_why(as_acme, fleet):
    admin = as_acme("acme_admin")
    admin.post(
        f"/assets/{fleet['chiller'].pk}/edit/",
        {
            "site": fleet["chiller"].site_id,
            "tag": "CHILLER-001",
            "name": "Main chiller",
            "type": "other",
            "status": "fault",
        },
    )
    html = as_acme("acme_viewer").get("/").content.decode()
    reasons = dict(
        re.findall(
            r'data-testid="asset-fault">\s*<a[^>]*>([^<]+)</a>.*?data-testid="fault-reason">(.*?)</div>', html, re.S
        )
    )
    assert "marked by acme_admin@example.com" in reasons["CHILLER-001"]
    assert "no device has reported since" in reasons["COLD-01"] and "2 hours ago" in reasons["COLD-01"]
    assert "FRZ-01" not in reasons  # reporting and operational


def test_each_site_shows_its_key_sensors_at_their_precision(as_acme, fleet):
    html = as_acme("acme_viewer").get("/").content.decode()
    panel = re.search(r'data-testid="key-sensors".*?</table>', html, re.S).group(0)
    assert panel.index("North plant") < panel.index("CHILLER-001") < panel.index("South plant") < panel.index("FRZ-01")
    # the newest reading (6.456, a minute ago) at the sensor's precision of 1
    assert "6.5 °C" in panel and "-19.25 °C" in panel and "COLD-01" not in panel  # not a key sensor


def test_recent_activity_shows_changes_not_sign_ins(as_acme, fleet):
    from portal.audit.models import AuditLog

    with schema_context("acme"):  # what signing in on acme's host writes (portal.audit.signals)
        AuditLog.objects.create(action="user.signed_in", actor_email="acme_admin@example.com", object_repr="Admin")
    as_acme("acme_admin").post(f"/devices/{fleet['silent'].pk}/edit/", {"name": "Cold room gateway", "kind": "gateway"})
    html = as_acme("acme_viewer").get("/").content.decode()
    activity = re.search(r'data-testid="recent-activity">.*?</ul>', html, re.S).group(0)
    assert "Cold room gateway" in activity
    assert "signed in" not in activity.lower() and ">Admin<" not in activity
    audit = as_acme("acme_admin").get("/audit/").content.decode()
    assert "user.signed_in" in audit  # admins still find it in the audit log


def poll_url(html: str) -> str:
    return unescape(re.search(r'hx-get="(/dashboard/live/[^"]+)"', html).group(1))


def swapped(body: str) -> set[str]:
    """The sections a live answer re-rendered (swapped out of band by id)."""
    return set(re.findall(r'id="dash-([a-z0-9-]+)"[^>]*hx-swap-oob="true"', body))


def swapped_rows(body: str) -> set[str]:
    return set(re.findall(r'<tr id="key-sensor-(\d+)"[^>]*hx-swap-oob="true"', body))


def test_the_poll_says_nothing_new_until_something_changes_then_sends_only_what_moved(as_acme, fleet):
    client = as_acme("acme_viewer")
    url = poll_url(client.get("/").content.decode())
    assert client.get(url).status_code == 204
    device = report("gw-north", "supply_temp", 7.31, minutes_ago=0)
    answer = client.get(url)
    assert answer.status_code == 200
    body = answer.content.decode()
    # a reading moves the device cards (readings, last hour: 41 now) and the key sensor's row,
    # not the activity, alerts or faults (nothing went offline, nobody changed anything), nor
    # the other key sensors' rows
    assert swapped(body) == {"devices-cards"}
    with schema_context("acme"):
        north = str(device.sensors.get(key="supply_temp").pk)
    assert swapped_rows(body) == {north}
    assert widget(body, "readings-widget") == "41" and "7.3 °C" in body  # at the sensor's precision
    assert 'id="overview"' not in body and "recent-activity" not in body and "-19.25" not in body
    assert client.get(poll_url(body)).status_code == 204


def test_a_key_sensor_seen_again_after_an_edit_is_shown_whole(as_acme, fleet):
    """Which sensors are key (an audited edit) moves the whole panel, rows not marked one by one."""
    client = as_acme("acme_viewer")
    url = poll_url(client.get("/").content.decode())
    with schema_context("acme"):
        sensor = Sensor.objects.get(device__device_id="gw-south", key="cabinet")
    as_acme("acme_operator").post(
        f"/devices/{sensor.device_id}/sensors/{sensor.pk}/edit/",
        {"label": "Cabinet", "unit": "°C", "type": "temperature", "precision": 2, "enabled": "on"},
    )
    body = client.get(url).content.decode()
    assert "facilities-key-sensors" in swapped(body) and not swapped_rows(body)
    assert "-19.25 °C" not in body  # no longer a key sensor: the form left "Key sensor" unticked


def test_a_change_people_make_moves_the_sections_showing_it(as_acme, fleet):
    client = as_acme("acme_viewer")
    url = poll_url(client.get("/").content.decode())
    as_acme("acme_admin").post(
        f"/assets/{fleet['freezer'].pk}/edit/",
        {
            "site": fleet["freezer"].site_id,
            "tag": "FRZ-01",
            "name": "Pharmacy freezer",
            "type": "freezer",
            "status": "fault",
        },
    )
    body = client.get(url).content.decode()
    assert {"facilities-cards", "facilities-faults", "activity"} <= swapped(body)
    assert "devices-cards" not in swapped(body)
    assert widget(body, "faults-widget") == "1"
    faults = re.search(r'id="dash-facilities-faults".*?</ul>', body, re.S).group(0)
    assert "FRZ-01" in faults and "marked by acme_admin@example.com" in faults
    assert "Pharmacy freezer" in re.search(r'data-testid="recent-activity">.*?</ul>', body, re.S).group(0)


def test_time_alone_moves_what_it_changes(as_acme, fleet, time_machine):
    """Devices go offline and readings leave the last hour with no event saying so."""
    client = as_acme("acme_viewer")
    url = poll_url(client.get("/").content.decode())
    time_machine.move_to(timezone.now() + timedelta(minutes=10), tick=True)
    body = client.get(url).content.decode()
    assert {"devices-cards", "devices-offline", "facilities-cards", "facilities-faults"} <= swapped(body)
    assert widget(body, "devices-online-widget") == "0 of 3"
    offline = re.search(r'data-testid="offline-devices".*?</ul>', body, re.S).group(0)
    assert "gw-north" in offline and "gw-south" in offline
    assert client.get(poll_url(body)).status_code == 204


def grow(count: int, first: int) -> None:
    """`count` more reporting devices, each with a key sensor on an asset of its own site."""
    with schema_context("acme"):
        ingest([ReadingIn(f"dev-{first + n}", "t", timezone.now(), 1.0) for n in range(count)], source="mqtt")
        site = Site.objects.create(name=f"Grown {first}")
        for n in range(count):
            device = Device.objects.get(device_id=f"dev-{first + n}")
            asset = Asset.objects.create(site=site, tag=f"G-{first + n}")
            DeviceBinding.objects.create(asset=asset, device=device)
        Sensor.objects.filter(device__device_id__startswith="dev-").update(on_dashboard=True)


def queries_of(client, url, status) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == status
    return len([q for q in queries if not q["sql"].startswith(("SET", "SAVEPOINT", "RELEASE"))])


def test_a_poll_costs_the_same_few_queries_however_big_the_fleet(as_acme, fleet):
    client = as_acme("acme_viewer")
    grow(5, 0)
    url = poll_url(client.get("/").content.decode())
    idle_small = queries_of(client, url, 204)
    report("gw-north", "supply_temp", 7.0, minutes_ago=0)
    changed_small = queries_of(client, url, 200)

    grow(150, 100)
    url = poll_url(client.get("/").content.decode())
    assert queries_of(client, url, 204) == idle_small <= 4  # the session, user, membership; the probes
    report("gw-north", "supply_temp", 7.0, minutes_ago=0)
    assert queries_of(client, url, 200) == changed_small


def test_a_page_of_an_older_release_gets_every_section(as_acme, fleet):
    """A poll without versions (a page rendered before this mechanism) is brought up to date."""
    body = as_acme("acme_viewer").get(LIVE).content.decode()
    assert {"devices-cards", "devices-offline", "facilities-key-sensors", "activity"} <= swapped(body)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    v=st.text(max_size=60)
    | st.from_regex(
        r"[a-z-]{1,45}:[0-9a-f]{1,18}(@[0-9]{1,13}(\.[0-9]{1,7})?)?(,[a-z-]{1,45}:[0-9a-f]{0,18})*", fullmatch=True
    )
)
def test_the_poll_never_500s(as_acme, in_acme, v):
    assert as_acme("acme_viewer").get(LIVE, {"v": v}).status_code in (200, 204, 400)


def test_a_key_sensor_row_escapes_what_people_typed_and_links_its_asset():
    """Rows are drawn in Python (portal.facilities.dashboard.key_sensor_rows): the tag, label and
    unit come from people and are escaped; the value has the sensor's precision."""
    from datetime import UTC, datetime

    from portal.facilities.dashboard import key_sensor_rows

    row = {"pk": 7, "asset_pk": 42, "tag": "<b>CH-1</b>", "label": "Supply & return", "unit": "°C<", "precision": 1}
    page, poll = (
        key_sensor_rows([row | {"ts": datetime(2026, 12, 2, tzinfo=UTC), "value": 6.875}], oob=oob)[0]
        for oob in (False, True)
    )
    assert '<tr id="key-sensor-7" data-testid="key-sensor">' in page and "hx-swap-oob" not in page
    assert '<a href="/assets/42/">&lt;b&gt;CH-1&lt;/b&gt;</a>' in page
    assert "Supply &amp; return" in page and "6.9 °C&lt;" in page
    assert '<tr id="key-sensor-7" data-testid="key-sensor" hx-swap-oob="true">' in poll
    assert "—" in key_sensor_rows([row | {"ts": None, "value": None}])[0]


def test_key_sensors_are_the_bound_ones_in_site_tag_key_order_with_their_newest_reading(fleet, monkeypatch):
    """One statement lists them (portal.facilities.dashboard.KEY_SENSORS_SQL): a key sensor of an
    unbound device is left out, one without a reading yet is listed without a value, and no more
    than KEY_SENSORS_LISTED come back."""
    from portal.facilities import dashboard

    report("gw-loose", "loose", 1.0, on_dashboard=True)  # a key sensor, but on no asset
    with schema_context("acme"):
        device = Device.objects.get(device_id="gw-north")
        Sensor.objects.create(device=device, key="return_temp", unit="°C", on_dashboard=True)  # no reading yet
        rows = dashboard.key_sensors()
        assert [(row["site"].name, row["tag"], row["label"]) for row in rows] == [
            ("North plant", "CHILLER-001", "return_temp"),
            ("North plant", "CHILLER-001", "supply_temp"),
            ("South plant", "FRZ-01", "cabinet"),
        ]
        assert rows[0]["ts"] is None and rows[0]["value"] is None
        assert rows[1]["value"] == 6.456 and rows[1]["precision"] == 1 and rows[1]["asset_pk"] == fleet["chiller"].pk
        with CaptureQueriesContext(connection) as captured:
            dashboard.key_sensors()
        assert len(captured) == 1
        monkeypatch.setattr(dashboard, "KEY_SENSORS_LISTED", 2)
        assert [row["label"] for row in dashboard.key_sensors()] == ["return_temp", "supply_temp"]

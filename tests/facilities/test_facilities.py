import csv
import io
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from helpers import unchanged
from pytest import approx
from telemetry_builders import NOW, expected_points

from portal.audit.models import AuditLog
from portal.facilities.models import Asset, DeviceBinding, Site
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import Device, Sensor


def make_assets(n, site_name="Plant", schema="acme"):
    with schema_context(schema):
        site, _ = Site.objects.get_or_create(name=site_name)
        assets = [
            Asset.objects.create(
                site=site, tag=f"A-{i:03}", name=f"Asset {i}", type=Asset.Type.CHILLER if i % 2 else Asset.Type.FREEZER
            )
            for i in range(n)
        ]
        return site, assets


def install(asset, device_id, sensor, value=5.0, minutes_ago=1, schema="acme"):
    with schema_context(schema):
        ingest(
            [ReadingIn(device_id, sensor, timezone.now() - timedelta(minutes=minutes_ago), value, unit="°C")],
            source="internal",
        )
        device = Device.objects.get(device_id=device_id)
        DeviceBinding.objects.get_or_create(device=device, defaults={"asset": asset})
        return device


def csv_lines(response):
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_an_asset_shows_the_sensors_of_all_its_devices(as_acme):
    _, (asset,) = make_assets(1)
    install(asset, "old-controller", "temp")
    install(asset, "new-gateway", "supply")
    response = as_acme("acme_viewer").get(f"/assets/{asset.pk}/")
    assert response.status_code == 200
    keys = {row["sensor"].key for row in response.context["sensor_rows"]}
    assert keys == {"temp", "supply"}
    assert len(response.context["charts"]) == 2


def test_assets_list_filters_and_csv_equal_the_page(as_acme):
    _, assets = make_assets(6)
    install(assets[1], "gw-online", "t")
    client = as_acme("acme_viewer")
    page = client.get("/assets/?type=chiller&sort=-tag")
    tags = [a.tag for a in page.context["rows"]]
    assert tags == ["A-005", "A-003", "A-001"]
    lines = csv_lines(client.get("/assets/?type=chiller&sort=-tag&export=csv"))
    assert lines[0] == ["tag", "name", "site", "type", "status", "online"]
    assert [line[0] for line in lines[1:]] == tags
    online = client.get("/assets/?online=yes")
    assert [a.tag for a in online.context["rows"]] == ["A-001"]


def test_assets_list_query_count_does_not_grow(as_acme, django_assert_max_num_queries):
    make_assets(5)
    client = as_acme("acme_viewer")
    with django_assert_max_num_queries(20) as few:
        client.get("/assets/")
    make_assets(60, site_name="Second")
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get("/assets/")


def test_asset_detail_query_count_does_not_grow_with_history(as_acme, django_assert_max_num_queries):
    _, (asset,) = make_assets(1)
    install(asset, "gw", "t")
    client = as_acme("acme_viewer")
    with django_assert_max_num_queries(30) as before:
        client.get(f"/assets/{asset.pk}/?range=7d")
    with schema_context("acme"):
        now = timezone.now()
        ingest(
            [ReadingIn("gw", "t", now - timedelta(minutes=5 * i), float(i % 7)) for i in range(2, 2000)],
            source="internal",
        )
    with django_assert_max_num_queries(len(before.captured_queries)):
        client.get(f"/assets/{asset.pk}/?range=7d")


def test_charts_switch_by_htmx_and_bad_input_falls_back(as_acme):
    _, (asset,) = make_assets(1)
    install(asset, "gw", "t")
    client = as_acme("acme_viewer")
    partial = client.get(f"/assets/{asset.pk}/?range=30d&bucket=1d", HTTP_HX_REQUEST="true")
    assert partial.status_code == 200
    assert b"<html" not in partial.content and b'id="charts"' in partial.content
    assert b'<option value="1d" selected>' in partial.content
    bad = client.get(f"/assets/{asset.pk}/?range=custom&start=yesterday&end=2020-01-01T00:00&bucket=7y")
    assert bad.status_code == 200
    assert bad.context["window"]["range"] == "24h"
    assert b"alert-warning" in bad.content


def test_history_rows_and_csv_are_the_raw_readings_bucketed(as_acme, time_machine):
    time_machine.move_to(NOW, tick=False)
    _, (asset,) = make_assets(1)
    install(asset, "gw", "t")
    install(asset, "gw", "u", value=-2.5)
    with schema_context("acme"):
        ingest(
            [ReadingIn("gw", key, NOW - timedelta(minutes=7 * i), float(i) / 3) for i in range(2, 300) for key in "tu"]
            + [ReadingIn("gw", "t", NOW - timedelta(days=8), 99.0)],  # outside the 7 days
            source="internal",
        )
        sensors = {sensor.pk: sensor for sensor in Sensor.objects.all()}
        expected = expected_points(sensors, NOW - timedelta(days=7), NOW, "1h")
    assert len(expected) > 50  # more than a page of the history table
    # newest first; sensors in the page's order (by key) within a bucket
    expected.sort(key=lambda p: sensors[p["sensor_id"]].key)
    expected.sort(key=lambda p: p["bucket"], reverse=True)
    client = as_acme("acme_viewer")
    history = client.get(f"/assets/{asset.pk}/?range=7d&bucket=1h").context["page"].paginator.object_list
    assert [
        (row["time"], row["sensor"].key, row["avg"], row["min"], row["max"], row["last"], row["count"])
        for row in history
    ] == [
        (p["bucket"], sensors[p["sensor_id"]].key, approx(p["avg"]), p["min"], p["max"], p["last"], p["count"])
        for p in expected
    ]
    header, *lines = csv_lines(client.get(f"/assets/{asset.pk}/?range=7d&bucket=1h&export=csv"))
    assert header == ["time", "device", "sensor", "unit", "avg", "min", "max", "last", "count"]
    assert [
        (line[2], float(line[4]), float(line[5]), float(line[6]), float(line[7]), int(line[8])) for line in lines
    ] == [  # the CSV writes floats in 15 significant digits
        (
            sensors[p["sensor_id"]].key,
            *(approx(p[name], rel=1e-14) for name in ("avg", "min", "max", "last")),
            p["count"],
        )
        for p in expected
    ]
    assert [datetime.fromisoformat(line[0]) for line in lines] == [p["bucket"] for p in expected]


def test_an_asset_of_another_tenant_is_404(as_acme):
    _, (own,) = make_assets(1)
    with schema_context("globex"):
        # an id acme has no asset under: a lookup that leaked across schemas would find this one
        site = Site.objects.create(name="Far")
        foreign = Asset.objects.create(pk=own.pk + 1000, site=site, tag="GLOBEX-ONLY", name="Globex asset")
    with schema_context("acme"):
        assert not Asset.objects.filter(pk=foreign.pk).exists()
    client = as_acme("acme_owner")
    assert client.get(f"/assets/{own.pk}/").status_code == 200
    response = client.get(f"/assets/{foreign.pk}/")
    assert response.status_code == 404
    assert b"GLOBEX-ONLY" not in response.content


def test_admin_creates_a_site_and_it_is_audited(as_acme):
    client = as_acme("acme_admin")
    response = client.post("/sites/new/", {"name": "North Plant", "address": "1 Road", "time_zone": "Europe/Lisbon"})
    assert response.status_code == 302
    with schema_context("acme"):
        site = Site.objects.get(name="North Plant")
        entry = AuditLog.objects.get(action="site.created")
    assert entry.object_id == str(site.pk)
    assert entry.changes["time_zone"] == [None, "Europe/Lisbon"]


def test_site_form_errors_are_shown(as_acme):
    client = as_acme("acme_admin")
    with unchanged():
        response = client.post("/sites/new/", {"name": "", "time_zone": "Mars/Olympus"})
    assert response.status_code == 400
    assert b"is not a time zone name" in response.content


@pytest.mark.parametrize("persona", ["acme_viewer", "acme_operator"])
def test_only_admins_change_configuration(as_acme, persona):
    site, (asset,) = make_assets(1)
    client = as_acme(persona)
    with unchanged():
        assert client.post("/sites/new/", {"name": "X", "time_zone": "UTC"}).status_code == 403
        assert client.post(f"/assets/{asset.pk}/delete/").status_code == 403
        assert client.post(f"/sites/{site.pk}/edit/", {"name": "Y", "time_zone": "UTC"}).status_code == 403


def test_a_site_with_assets_cannot_be_deleted(as_acme):
    site, _ = make_assets(1)
    client = as_acme("acme_admin")
    with unchanged():
        response = client.post(f"/sites/{site.pk}/delete/")
    assert b"still has assets" in client.get(response["Location"]).content  # the page it sends back to
    with schema_context("acme"):
        assert Site.objects.filter(pk=site.pk).exists()


def test_binding_a_device_and_removing_it(as_acme):
    _, (asset,) = make_assets(1)
    with schema_context("acme"):
        device = Device.objects.create(device_id="spare-gw")
    client = as_acme("acme_admin")
    assert client.post(f"/assets/{asset.pk}/devices/new/", {"device": device.pk}).status_code == 302
    with schema_context("acme"):
        binding = DeviceBinding.objects.get(device=device)
    again = client.post(f"/assets/{asset.pk}/devices/new/", {"device": device.pk})
    assert again.status_code == 400  # already installed: not offered
    assert client.post(f"/assets/{asset.pk}/devices/{binding.pk}/remove/").status_code == 302
    with schema_context("acme"):
        assert not DeviceBinding.objects.exists()
        actions = list(AuditLog.objects.values_list("action", flat=True))
    assert "asset.device_bound" in actions and "asset.device_unbound" in actions


def test_site_detail_lists_open_problems(as_acme):
    site, assets = make_assets(3)
    with schema_context("acme"):
        Asset.objects.filter(pk=assets[0].pk).update(status=Asset.Status.FAULT)
    install(assets[1], "gw", "t")
    response = as_acme("acme_viewer").get(f"/sites/{site.pk}/")
    problems = {a.tag for a in response.context["problems"]}
    assert problems == {"A-000", "A-002"}  # in fault; no device reporting


@pytest.mark.parametrize("bucket", ["1h", "raw"])
def test_asset_detail_queries_each_sensors_points_once_whatever_the_sensor_count(
    as_acme, django_assert_max_num_queries, bucket
):
    _, (asset,) = make_assets(1)
    install(asset, "gw", "t0")
    client = as_acme("acme_viewer")
    with django_assert_max_num_queries(30) as one:
        first = client.get(f"/assets/{asset.pk}/?range=24h&bucket={bucket}")
    for n in range(1, 8):
        install(asset, "gw", f"t{n}", value=float(n))
    with django_assert_max_num_queries(len(one.captured_queries)):
        eight = client.get(f"/assets/{asset.pk}/?range=24h&bucket={bucket}")
    assert len(first.context["charts"]) == 1 and len(eight.context["charts"]) == 8
    # the history table shows the charts' points, newest first
    rows = list(eight.context["page"].object_list)
    assert {row["sensor"].key for row in rows} == {f"t{n}" for n in range(8)}
    assert [row["time"] for row in rows] == sorted((row["time"] for row in rows), reverse=True)

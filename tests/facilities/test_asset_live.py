"""The asset page's live endpoint: what is new since the page's cursor, at a constant cost."""

import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.core.live import LIVE_HEADER, STOP_STATUS, epoch
from portal.facilities.models import Asset, DeviceBinding, Site
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import Device


def build_asset(sensors=("supply",), devices=("gw-live",), minutes_ago=2, tag="LIVE-1"):
    """An asset in acme with devices publishing `sensors`, the newest reading `minutes_ago`."""
    with schema_context("acme"):
        site, _ = Site.objects.get_or_create(name="Live plant")
        asset = Asset.objects.create(site=site, tag=tag)
        now = timezone.now()
        readings = [
            ReadingIn(device, key, now - timedelta(minutes=minutes_ago + 5 * i), 7.0 + i, unit="°C")
            for device in devices
            for key in sensors
            for i in range(3)
        ]
        ingest(readings, source="internal")
        for device in Device.objects.filter(device_id__in=devices):
            DeviceBinding.objects.create(asset=asset, device=device)
        return asset


def publish(device, sensor, value, ts=None):
    with schema_context("acme"):
        ingest([ReadingIn(device, sensor, ts or timezone.now(), value, unit="°C")], source="internal")


def cursor_of(html: str) -> str:
    return re.search(r"since=([0-9.]+)", html).group(1)


def test_the_asset_page_carries_a_live_element_with_the_newest_readings_time(as_acme):
    asset = build_asset()
    response = as_acme("acme_viewer").get(f"/assets/{asset.pk}/")
    html = response.content.decode()
    assert 'id="asset-live"' in html and 'data-live-every="5"' in html
    newest = max(row["ts"] for row in response.context["sensor_rows"])
    assert cursor_of(html) == epoch(newest)


def test_a_poll_with_nothing_new_is_a_204_that_htmx_ignores(as_acme):
    asset = build_asset()
    client = as_acme("acme_viewer")
    since = cursor_of(client.get(f"/assets/{asset.pk}/").content.decode())
    response = client.get(f"/assets/{asset.pk}/live/?range=24h&since={since}", HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response[LIVE_HEADER] == "1"
    assert "no-cache" in response["Cache-Control"]


def test_a_new_reading_comes_back_with_its_row_chart_point_and_a_new_cursor(as_acme):
    asset = build_asset()
    client = as_acme("acme_viewer")
    since = cursor_of(client.get(f"/assets/{asset.pk}/?range=24h&bucket=raw").content.decode())
    publish("gw-live", "supply", 9.25)
    response = client.get(f"/assets/{asset.pk}/live/?range=24h&bucket=raw&since={since}", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert float(cursor_of(html)) > float(since)  # the next poll asks from the new reading on
    assert 'hx-swap-oob="true"' in html and "9.25 °C" in html
    updates = json.loads(re.search(r"<script data-chart-updates[^>]*>(.*?)</script>", html, re.S).group(1))
    (points,) = updates.values()
    assert points["series"][0]["values"][-1] == 9.25
    assert float(cursor_of(html)) == pytest.approx(points["x"][-1], abs=0.001)


def test_bucketed_updates_recompute_the_bucket_holding_the_cursor(as_acme):
    asset = build_asset()
    client = as_acme("acme_viewer")
    since = cursor_of(client.get(f"/assets/{asset.pk}/?range=24h&bucket=1h").content.decode())
    publish("gw-live", "supply", 100.0)
    response = client.get(f"/assets/{asset.pk}/live/?range=24h&bucket=1h&since={since}")
    updates = json.loads(
        re.search(r"<script data-chart-updates[^>]*>(.*?)</script>", response.content.decode(), re.S).group(1)
    )
    (points,) = updates.values()
    hour = int(timezone.now().timestamp()) // 3600 * 3600
    assert points["x"][-1] == hour
    assert points["series"][2]["values"][-1] == 100.0  # the hour's max took the new reading


def test_a_custom_range_that_ended_stops_polling(as_acme):
    asset = build_asset()
    client = as_acme("acme_viewer")
    page = client.get(f"/assets/{asset.pk}/?range=custom&start=2026-01-01T00:00&end=2026-01-02T00:00")
    assert 'id="asset-live"' not in page.content.decode()
    response = client.get(f"/assets/{asset.pk}/live/?range=custom&start=2026-01-01T00:00&end=2026-01-02T00:00")
    assert response.status_code == STOP_STATUS


def test_a_bad_cursor_is_a_400_with_the_error_shape(as_acme):
    asset = build_asset()
    response = as_acme("acme_viewer").get(f"/assets/{asset.pk}/live/?since=yesterday")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_cursor"


def test_another_tenants_asset_is_a_404_and_strangers_are_refused(as_acme, globex_client, people):
    from helpers import sign_in

    asset = build_asset()
    with schema_context("globex"):
        assert not Asset.objects.filter(pk=asset.pk).exists()
    globex = sign_in(globex_client, people["globex_owner"], "globex")
    assert globex.get(f"/assets/{asset.pk}/live/").status_code == 404
    assert as_acme("acme_viewer").get("/assets/999999/live/").status_code == 404
    from django.test import Client

    anonymous = Client(HTTP_HOST="acme.localhost").get(f"/assets/{asset.pk}/live/")
    assert anonymous.status_code == 302 and LIVE_HEADER not in anonymous  # live.js will not paste a sign-in page


def test_a_poll_costs_the_same_queries_for_one_sensor_or_twenty(as_acme, django_assert_num_queries):
    small = build_asset(sensors=("a",), devices=("gw-small",), tag="SMALL")
    large = build_asset(sensors=tuple(f"s{i}" for i in range(10)), devices=("gw-l1", "gw-l2"), tag="LARGE")
    client = as_acme("acme_viewer")
    client.get(f"/assets/{small.pk}/live/")  # session and caches warm, as for a page in use
    with CaptureQueriesContext(connection) as counted:
        assert client.get(f"/assets/{small.pk}/live/").status_code == 200
    with django_assert_num_queries(len(counted.captured_queries)):
        assert client.get(f"/assets/{large.pk}/live/").status_code == 200
    since = epoch(timezone.now())
    with CaptureQueriesContext(connection) as idle:
        assert client.get(f"/assets/{large.pk}/live/?since={since}").status_code == 204
    sql = " ".join(query["sql"] for query in idle.captured_queries)
    assert 'FROM "facilities_devicebinding"' not in sql and "date_bin" not in sql  # nothing new: no bindings, no chart


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    since=st.one_of(st.text(max_size=40), st.floats(allow_nan=True, allow_infinity=True).map(str)),
    range_=st.sampled_from(["24h", "7d", "30d", "custom", "", "x" * 300]),
    bucket=st.sampled_from(["raw", "1m", "5m", "1h", "1d", "", "2h"]),
    start=st.text(max_size=30),
)
def test_fuzzed_live_parameters_never_cause_a_500(as_acme, since, range_, bucket, start):
    client = as_acme("acme_viewer")
    with schema_context("acme"):
        asset = Asset.objects.order_by("pk").first() or build_asset(tag="FUZZ")
    response = client.get(
        f"/assets/{asset.pk}/live/", {"since": since, "range": range_, "bucket": bucket, "start": start, "end": start}
    )
    assert response.status_code in (200, 204, 400, STOP_STATUS)

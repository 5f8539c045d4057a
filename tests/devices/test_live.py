"""Live endpoints of the device page and the explorer."""

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

from portal.core.formatting import local_input
from portal.core.live import STOP_STATUS, epoch
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import Device


def publish(device_id, sensor, value, minutes_ago=0.0):
    with schema_context("acme"):
        when = timezone.now() - timedelta(minutes=minutes_ago)
        ingest([ReadingIn(device_id, sensor, when, value, unit="°C")], source="internal")
        return Device.objects.get(device_id=device_id)


def cursor_of(html: str) -> str:
    return re.search(r"since=([0-9.]+)", html).group(1)


def chart_points(html: str) -> dict:
    return json.loads(re.search(r"<script data-chart-updates[^>]*>(.*?)</script>", html, re.S).group(1))


def test_the_device_page_polls_from_its_newest_reading(as_acme):
    device = publish("gw-dev-live", "temp", 20.0, minutes_ago=3)
    client = as_acme("acme_viewer")
    html = client.get(f"/devices/{device.pk}/").content.decode()
    since = cursor_of(html)
    assert f"/devices/{device.pk}/live/" in html
    assert client.get(f"/devices/{device.pk}/live/?since={since}").status_code == 204
    publish("gw-dev-live", "temp", 21.5)
    response = client.get(f"/devices/{device.pk}/live/?since={since}")
    assert response.status_code == 200
    body = response.content.decode()
    assert "21.50" in body and 'id="device-online" hx-swap-oob="true"' in body
    assert float(cursor_of(body)) > float(since)


def test_a_device_poll_costs_the_same_for_one_sensor_or_many(as_acme):
    one = publish("gw-one", "a", 1.0)
    with schema_context("acme"):
        ingest([ReadingIn("gw-many", f"s{i}", timezone.now(), i, unit="°C") for i in range(15)], source="internal")
        many = Device.objects.get(device_id="gw-many")
    client = as_acme("acme_viewer")
    client.get(f"/devices/{one.pk}/live/")
    with CaptureQueriesContext(connection) as small:
        client.get(f"/devices/{one.pk}/live/")
    with CaptureQueriesContext(connection) as large:
        client.get(f"/devices/{many.pk}/live/")
    assert len(small) == len(large)


def explorer_query(device, bucket="raw", hours=1, ends_in_minutes=1):
    end = timezone.now() + timedelta(minutes=ends_in_minutes)
    sensor = device.sensors.get()
    return {
        "device": device.pk,
        "sensor": sensor.pk,
        "from": local_input(end - timedelta(hours=hours)),
        "to": local_input(end),
        "bucket": bucket,
    }


def test_an_explorer_range_up_to_now_appends_new_points(as_acme):
    device = publish("gw-explore", "temp", 5.0, minutes_ago=10)
    client = as_acme("acme_viewer")
    with schema_context("acme"):
        query = explorer_query(device)
    page = client.get("/explorer/", query).content.decode()
    assert 'id="explorer-live"' in page
    since = cursor_of(page)
    assert client.get("/explorer/live/", {**query, "since": since, "follow": "1"}).status_code == 204
    publish("gw-explore", "temp", 6.5)
    response = client.get("/explorer/live/", {**query, "since": since, "follow": "1"})
    assert response.status_code == 200
    points = chart_points(response.content.decode())["chart-data-1"]
    assert points["series"][0]["values"][-1] == 6.5


def test_an_explorer_range_in_the_past_has_no_live_element_and_stops(as_acme):
    device = publish("gw-past", "temp", 5.0, minutes_ago=200)
    client = as_acme("acme_viewer")
    with schema_context("acme"):
        query = explorer_query(device, hours=5, ends_in_minutes=-60)
    assert 'id="explorer-live"' not in client.get("/explorer/", query).content.decode()
    assert client.get("/explorer/live/", query).status_code == STOP_STATUS


def test_an_invalid_explorer_form_stops_polling(as_acme):
    assert as_acme("acme_viewer").get("/explorer/live/?device=nope").status_code == STOP_STATUS


@pytest.mark.django_db
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    since=st.one_of(st.text(max_size=30), st.floats().map(str), st.just(epoch(timezone.now()))),
    bucket=st.sampled_from(["raw", "1m", "1h", "1d", "x"]),
    start=st.text(max_size=20),
    device=st.one_of(st.integers(-5, 10**12).map(str), st.text(max_size=10)),
)
def test_fuzzed_live_requests_never_cause_a_500(as_acme, since, bucket, start, device):
    client = as_acme("acme_viewer")
    response = client.get(
        "/explorer/live/", {"since": since, "bucket": bucket, "from": start, "to": start, "device": device}
    )
    assert response.status_code in (200, 204, 400, STOP_STATUS)
    response = client.get(f"/devices/{device if device.isdigit() else 1}/live/", {"since": since})
    assert response.status_code in (200, 204, 400, 404)


def test_a_live_answer_asks_nothing_only_the_navigation_shows(as_acme):
    """The open-alert count is the navbar's (its own poll keeps it live): a live fragment, which
    has no navbar, costs no query for it."""
    device = publish("gw-no-nav", "temp", 1.0, minutes_ago=2)
    client = as_acme("acme_viewer")
    since = cursor_of(client.get(f"/devices/{device.pk}/").content.decode())
    publish("gw-no-nav", "temp", 2.0)
    with CaptureQueriesContext(connection) as answered:
        assert client.get(f"/devices/{device.pk}/live/?since={since}").status_code == 200
    assert not [query for query in answered if "alerts_alert" in query["sql"]]
    page = client.get(f"/devices/{device.pk}/").content.decode()
    assert 'data-testid="open-alert-count"' in page and re.search(
        r'title="Open alerts">\d+<', page
    )  # pages still show it


def test_an_idle_device_poll_is_one_query_besides_the_session_for_one_sensor_or_many(as_acme):
    one = publish("gw-idle-one", "a", 1.0, minutes_ago=1)
    with schema_context("acme"):
        ingest([ReadingIn("gw-idle-many", f"s{i}", timezone.now(), i, unit="°C") for i in range(15)], source="internal")
        many = Device.objects.get(device_id="gw-idle-many")
    client = as_acme("acme_viewer")
    counts = []
    for device in (one, many):
        since = cursor_of(client.get(f"/devices/{device.pk}/").content.decode())
        with CaptureQueriesContext(connection) as idle:
            assert client.get(f"/devices/{device.pk}/live/?since={since}").status_code == 204
        counts.append(len([q for q in idle if not q["sql"].startswith(("SET", "SAVEPOINT", "RELEASE"))]))
    assert counts[0] == counts[1] <= 4  # the session, the user, the membership; the device's newest
    assert client.get("/devices/999999/live/").status_code == 404

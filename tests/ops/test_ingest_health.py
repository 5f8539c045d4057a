"""The console's live ingest health: readings per minute, dead letters by reason, bridges and their
status lines, queue depth, failed notifications; polled through portal.core.live."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.core.models import ProcessHeartbeat
from telemetry.models import DeadLetter, Device, Reading, Sensor

NOW = datetime(2026, 11, 30, 10, 30, 30, tzinfo=UTC)
LAST_MINUTE = datetime(2026, 11, 30, 10, 29, tzinfo=UTC)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def store(schema, times):
    with schema_context(schema):
        sensor = Sensor.objects.create(device=Device.objects.create(device_id="gw"), key="t")
        Reading.objects.bulk_create([Reading(sensor=sensor, ts=ts, value=1.0) for ts in times])


def letters(schema, *reasons):
    with schema_context(schema):
        DeadLetter.objects.bulk_create([DeadLetter(source="mqtt", payload="x", reason=r) for r in reasons])


def figure(html, testid):
    return re.sub(r"<[^>]+>", "", re.search(rf'data-testid="{testid}">(.*?)</div>', html, re.S).group(1)).strip()


def test_the_page_shows_each_tenants_minutes_and_the_totals(staff_client, frozen):
    store("acme", [LAST_MINUTE + timedelta(seconds=n) for n in range(3)] + [NOW - timedelta(minutes=10)])
    store("globex", [LAST_MINUTE + timedelta(seconds=10)])
    html = staff_client.get("/ops/ingest/").content.decode()
    assert figure(html, "readings-per-minute") == "4"
    rows = dict(re.findall(r'<code>(\w+)</code>.*?data-testid="last-minute">(\d+)<', html, re.S))
    assert rows == {"acme": "3", "globex": "1"}
    assert html.count("<rect") == 2 * 15  # a bar per minute per tenant


def test_dead_letters_by_reason_include_the_unclaimed_ones(staff_client, frozen):
    letters("acme", "out_of_range", "out_of_range", "unknown_format")
    letters("globex", "out_of_range")
    letters("public", "unknown_tenant")
    with schema_context("acme"):
        DeadLetter.objects.create(
            source="mqtt", payload="old", reason="old_reason", received_at=NOW - timedelta(days=2)
        )
    html = staff_client.get("/ops/ingest/").content.decode()
    assert figure(html, "dead-letter-total") == "5"
    reasons = re.findall(r"<code>(\w+)</code><span>(\d+)</span>", html)
    assert reasons == [("out_of_range", "3"), ("unknown_format", "1"), ("unknown_tenant", "1")]


def test_bridges_show_alive_or_silent_with_their_status_line(staff_client, frozen):
    ProcessHeartbeat.beat("bridge:a", "bridge", NOW, {"line": "120 msgs, 118 readings", "connected": True})
    ProcessHeartbeat.objects.create(
        name="bridge:b", kind="bridge", started_at=NOW, beat_at=NOW - timedelta(minutes=5), stats={"connected": False}
    )
    html = staff_client.get("/ops/ingest/").content.decode()
    rows = {re.search(r"bridge:\w+", row).group(0): row for row in html.split('data-testid="bridge-row"')[1:]}
    assert "120 msgs, 118 readings" in rows["bridge:a"] and ">alive<" in rows["bridge:a"]
    assert ">silent<" in rows["bridge:b"] and "not connected" in rows["bridge:b"]


def test_failed_notifications_and_queue_depth_are_shown(staff_client, frozen):
    from portal.alerts.models import Channel, Delivery

    with schema_context("acme"):
        channel = Channel.objects.create(name="ops", kind="webhook", webhook_url="https://example.com/hook")
        Delivery.objects.create(channel=channel, status="failed", finished_at=NOW - timedelta(hours=1))
        Delivery.objects.create(channel=channel, status="sent", finished_at=NOW - timedelta(hours=1))
        Delivery.objects.create(channel=channel, status="failed", finished_at=NOW - timedelta(days=3))
    html = staff_client.get("/ops/ingest/").content.decode()
    assert figure(html, "failed-notifications") == "1"
    assert figure(html, "queue-depth").isdigit()


def test_the_live_poll_answers_204_until_something_changes(staff_client, frozen):
    html = staff_client.get("/ops/ingest/").content.decode()
    cursor = re.search(r'hx-get="/ops/ingest/live/\?since=(\w+)"', html).group(1)
    response = staff_client.get("/ops/ingest/live/", {"since": cursor})
    assert response.status_code == 204 and response["X-Fieldwatch-Live"] == "1"
    store("globex", [LAST_MINUTE])
    response = staff_client.get("/ops/ingest/live/", {"since": cursor})
    assert response.status_code == 200 and 'id="ingest-live"' in response.content.decode()
    assert "<html" not in response.content.decode()  # only the live part
    assert figure(response.content.decode(), "readings-per-minute") == "1"


def test_the_live_poll_is_for_staff_only(public_client, people, as_acme):
    from helpers import sign_in

    sign_in(public_client, people["acme_owner"], "public")
    assert public_client.get("/ops/ingest/live/").status_code == 403
    assert as_acme("acme_owner").get("/ops/ingest/live/").status_code == 404


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(since=st.text(max_size=40))
def test_the_live_poll_never_500s(staff_client, since):
    assert staff_client.get("/ops/ingest/live/", {"since": since}).status_code in (200, 204)

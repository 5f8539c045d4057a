"""The device API on a live gunicorn (several processes and threads, as in production): 50 copies
of one event arriving at once store one row, and a handshake round trip works over real HTTP.

The server runs against the session's test database, so the device and token it must see are
committed (module fixture, removed at the end) rather than made in a test's transaction.
"""

import http.client
import json
import os
import sys
import threading
from pathlib import Path

import pytest
from django_tenants.utils import schema_context
from helpers import database_url_for_tests, free_port, serving

from telemetry.models import DeadLetter, Device, DeviceEvent

COPIES = 50
MAC = "02:00:00:00:0A:01"
NEW_MAC = "02:00:00:00:0A:02"

pytestmark = pytest.mark.django_db


def request(port, method, path, body=None, token=None, host="acme.localhost"):
    """One request on its own connection: (status, parsed JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": f"{host}:{port}", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


@pytest.fixture(scope="module")
def gunicorn_port(django_db_setup):
    """gunicorn (4 processes × 8 threads) on a free port against the test database."""
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": database_url_for_tests(),
        "FIELDWATCH_TESTING": "1",
        "DATABASE_CONN_MAX_AGE": "0",  # no idle connection keeps the test database from being dropped
        "DEBUG": "0",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "portal.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "4",
        "--threads",
        "8",
        "--worker-class",
        "gthread",
        "--log-level",
        "warning",
    ]
    with serving(command, env, port):
        yield port


@pytest.fixture(scope="module")
def committed_token(django_db_setup, django_db_blocker):
    """A device of acme with a token, committed; it and whatever the tests made go at the end."""
    with django_db_blocker.unblock(), schema_context("acme"):
        device = Device.objects.create(device_id="live-counter", mac=MAC, kind=Device.Kind.COUNTER)
        token = device.issue_token()
        device.save()
    yield token
    with django_db_blocker.unblock(), schema_context("acme"):
        Device.objects.filter(mac__in=[MAC, NEW_MAC]).delete()  # their events go with them
        DeadLetter.objects.filter(device_ref__in=["live-counter", MAC, NEW_MAC, "dev-020000000a02"]).delete()
    with django_db_blocker.unblock(), schema_context("globex"):
        DeadLetter.objects.filter(payload__contains="live-globex-1").delete()


def test_fifty_copies_of_one_event_at_once_store_one_row(gunicorn_port, committed_token):
    body = {
        "device_id": "live-counter",
        "event_id": "live-counter-0000000001",
        "event": "treatment",
        "treatment": "BASIC",
        "counter": 1,
        "ts": "2025-09-16T12:34:56Z",
        "firmware": "1.0.0",
    }
    start = threading.Barrier(COPIES)
    results = [None] * COPIES

    def send(n):
        start.wait()  # all 50 leave together
        results[n] = request(gunicorn_port, "POST", "/api/device/events/", body, committed_token)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(COPIES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [(200, {"ack": True, "event_id": "live-counter-0000000001"})] * COPIES
    with schema_context("acme"):
        assert DeviceEvent.objects.filter(event_id="live-counter-0000000001").count() == 1
        assert DeviceEvent.objects.filter(device__device_id="live-counter").count() == 1


def test_a_handshake_round_trip_over_http(gunicorn_port, committed_token):
    status, body = request(gunicorn_port, "POST", "/api/handshake/", {"mac": NEW_MAC.lower(), "firmware": "2.0"})
    assert status == 200 and body["assigned"] is False and body["device_id"] == "dev-020000000a02"
    event = {"event_id": "live-new-1", "treatment": "PREMIUM", "counter": 3, "ts": "2025-09-16T12:34:56Z"}
    assert request(gunicorn_port, "POST", "/api/device/events/", event, body["token"]) == (
        200,
        {"ack": True, "event_id": "live-new-1"},
    )
    status, again = request(gunicorn_port, "POST", "/api/handshake/", {"mac": NEW_MAC, "firmware": "2.0"})
    assert (status, again["error"]["code"]) == (403, "already_provisioned")
    status, rotated = request(gunicorn_port, "POST", "/api/handshake/", {"mac": NEW_MAC}, body["token"])
    assert status == 200 and rotated["token"] != body["token"]


def test_an_acme_token_on_globex_is_401(gunicorn_port, committed_token):
    event = {"event_id": "live-globex-1", "treatment": "BASIC", "counter": 1, "ts": "2025-09-16T12:34:56Z"}
    status, body = request(
        gunicorn_port, "POST", "/api/device/events/", event, committed_token, host="globex.localhost"
    )
    assert (status, body["error"]["code"]) == (401, "invalid_token")

"""Each input that once answered 500 (issue 11 §2), now a clear 4xx: nesting depth, ids that
cannot be stored, time-zone offsets and years out of range, non-ASCII digits, a stored status
value that broke the device page, a Content-Length that is no number, HTML errors on API paths,
a POST without its trailing slash."""

import hashlib
import hmac
import json

import pytest
from api.bulk_helpers import make_key
from django.test import Client
from django_tenants.utils import schema_context
from helpers import sign_in_staff

from telemetry.models import DeadLetter, Device, DeviceEvent, Reading

SECRET = "webhook-secret-for-tests-0123456789abcdef"
MAC = "EC:E3:34:46:2B:C0"
DEEP = "[" * 950 + "]" * 950


def client(host="acme.localhost"):
    return Client(HTTP_HOST=host)


def post_raw(path, raw, **headers):
    return client().post(path, raw, content_type="application/json", **headers)


def signed_post(raw: bytes):
    signature = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return post_raw("/ingest/", raw, HTTP_X_DEVICE_TOKEN=signature)


def error_code(response):
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return response.json()["error"]["code"]


@pytest.fixture
def secret(settings):
    settings.INGESTION_SECRET = SECRET


@pytest.fixture
def token(db):
    response = post_raw("/api/handshake/", json.dumps({"mac": MAC, "firmware": "1.0"}))
    assert response.status_code == 200, response.content
    return response.json()["token"]


# --- one body parser, nesting bounded ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/handshake/"])
def test_json_nested_950_deep_is_400(db, path):
    response = post_raw(path, DEEP)
    assert response.status_code == 400
    assert error_code(response) == "malformed_json"


def test_the_signed_webhook_refuses_deep_json_with_400(secret, db):
    response = signed_post(DEEP.encode())
    assert response.status_code == 400
    assert error_code(response) == "malformed_json"


def test_json_deeper_than_the_bound_is_400_even_where_python_could_parse_it(db):
    response = post_raw("/api/v1/auth/login", '{"username": ' + "[" * 40 + "]" * 40 + "}")
    assert response.status_code == 400
    assert "nested deeper than 32" in response.json()["error"]["message"]


# --- ids PostgreSQL cannot store ----------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("device_id", "d" * 101),
        ("sensor_id", "s" * 101),
        ("device_id", "gw\x00"),
        ("sensor_id", "t\x00"),
        ("device_id", "\ud800"),
        ("sensor_id", "x\udfff"),
    ],
)
def test_webhook_items_with_unstorable_ids_are_dead_lettered(secret, db, field, value):
    good = {"device_id": "ESP32-01", "sensor_id": "temp", "value": 1.5, "timestamp": "2026-11-20T12:00:00Z"}
    raw = json.dumps([good, good | {field: value, "timestamp": "2026-11-20T12:01:00Z"}]).encode()
    response = signed_post(raw)
    assert response.status_code == 200, response.content
    assert response.json() | {"reasons": None} == {"written": 1, "duplicates": 0, "rejected": 1, "reasons": None}
    assert response.json()["reasons"] == {"invalid_id": 1}
    with schema_context("acme"):
        assert Reading.objects.count() == 1
        assert list(DeadLetter.objects.values_list("reason", flat=True)) == ["invalid_id"]
        assert not Device.objects.filter(device_id__startswith="dd").exists()


# --- times --------------------------------------------------------------------------------------


def event(ts: str, n=1):
    return {"event_id": f"e-{n}", "event": "treatment", "treatment": "BASIC", "counter": 1, "ts": ts}


@pytest.mark.parametrize("ts", ["2026-11-20T12:00:00+16:00", "2026-11-20T12:00:00-14:30", "2026-11-20T12:00:00+23:59"])
def test_an_offset_beyond_14_hours_is_400(token, ts):
    response = post_raw("/api/device/events/", json.dumps(event(ts)), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"] == {"ts": "the time-zone offset must be within ±14:00"}


def test_an_offset_within_14_hours_is_stored_in_utc(token):
    response = post_raw(
        "/api/device/events/", json.dumps(event("2026-11-20T12:00:00+14:00")), HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200, response.content
    with schema_context("acme"):
        assert DeviceEvent.objects.get().ts.isoformat() == "2026-11-19T22:00:00+00:00"


@pytest.fixture
def api_key(db):
    return make_key("acme")


@pytest.mark.parametrize(
    "params",
    [
        {"from": "²"},
        {"to": "²"},
        {"from": "0001-01-01T00:00:00Z"},
        {"to": "9999-12-31T23:59:59Z"},
        {"from": "253402300799"},
        {"to": "1e400"},
        {"from": "99999999999999999999999999"},
        {"to": "2026-11-20T12:00:00+20:00"},
    ],
)
def test_analytics_ranges_out_of_bounds_are_400(api_key, params):
    with schema_context("acme"):
        Device.objects.create(device_id="eq-a")
    response = client().get("/api/v1/analytics/equipment/eq-a/history", params, HTTP_X_API_KEY=api_key)
    assert response.status_code == 400, response.content
    assert error_code(response) == "bad_parameter"


@pytest.fixture
def asset(in_acme):
    from portal.facilities.models import Asset, Site

    site = Site.objects.create(name="Plant")
    return Asset.objects.create(site=site, name="Chiller", tag="CH-1")


def test_a_custom_range_in_year_9999_is_a_form_error(as_acme, asset):
    response = as_acme("acme_viewer").get(
        f"/assets/{asset.pk}/", {"range": "custom", "start": "9999-12-31T00:00", "end": "9999-12-31T23:00"}
    )
    assert response.status_code == 200
    assert "between 1970 and 2100" in response.content.decode()


# --- digits that are not ASCII ------------------------------------------------------------------


def test_a_site_of_superscript_two_preselects_nothing(as_acme, db):
    response = as_acme("acme_admin").get("/assets/new/", {"site": "²"})
    assert response.status_code == 200


def test_a_site_beyond_a_bigint_preselects_nothing(as_acme, db):
    response = as_acme("acme_admin").get("/assets/new/", {"site": "9" * 30})
    assert response.status_code == 200


def test_replaying_ids_of_superscript_two_is_a_message_not_a_crash(as_acme, db):
    response = as_acme("acme_admin").post("/dead-letters/replay/", {"ids": ["²", "9" * 30]})
    assert response.status_code == 302


# --- device status: bounded on input, rendered defensively -------------------------------------


def test_a_heartbeat_with_an_absurd_uptime_is_400_and_stores_nothing(token):
    response = post_raw(
        "/api/devices/dev-ece334462bc0/heartbeat/",
        json.dumps({"uptime": 100000000000000}),
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 400
    assert "uptime" in response.json()["error"]["fields"]
    with schema_context("acme"):
        assert "uptime_seconds" not in Device.objects.get(mac=MAC).status


def test_a_stored_absurd_status_still_renders_the_device_page(token, as_acme):
    with schema_context("acme"):
        Device.objects.filter(mac=MAC).update(status={"uptime_seconds": 10**14, "mode": "x" * 5000})
        pk = Device.objects.get(mac=MAC).pk
    response = as_acme("acme_viewer").get(f"/devices/{pk}/")
    assert response.status_code == 200
    assert "100000000000000 s" in response.content.decode()


def test_legacy_counts_beyond_what_json_keeps_exactly_are_400(token):
    response = client().post(
        "/api/iot/",
        {"mode": "BASIC", "macaddr": MAC, "timestamp": "2026-11-20 12:00:00", "count1": str(2**53)},
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 400
    assert "count1" in response.json()["error"]["fields"]


# --- headers and paths --------------------------------------------------------------------------


def test_a_content_length_that_is_no_number_is_400_and_kept_without_its_body(token):
    response = client().post("/api/device/events/", "{}", content_type="application/json", CONTENT_LENGTH="abc")
    assert response.status_code == 400
    assert error_code(response) == "bad_content_length"
    with schema_context("acme"):
        letter = DeadLetter.objects.get(reason="bad_content_length")
    assert letter.payload == ""


@pytest.mark.parametrize("path", ["/api/nothing-here", "/api/v1/", "/ingest/more", "/api/v1/telemetry/jobs/x"])
def test_an_unresolved_api_path_is_a_json_404(db, path):
    response = client().get(path)
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_an_unresolved_api_path_on_the_public_host_is_a_json_404(db):
    response = client("localhost").get("/api/nothing-here")
    assert error_code(response) == "not_found"


def test_a_pages_404_stays_a_page(as_acme):
    response = as_acme("acme_viewer").get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_server_error_on_an_api_path_is_json(db, settings, monkeypatch):
    from portal.api import analytics

    def broken(request):
        raise RuntimeError("boom")

    monkeypatch.setattr(analytics, "authenticate", broken)
    c = Client(HTTP_HOST="acme.localhost", raise_request_exception=False)
    response = c.get("/api/v1/analytics/equipment/eq-a/history")
    assert response.status_code == 500
    assert error_code(response) == "server_error"


@pytest.mark.parametrize("debug", [True, False])
def test_a_post_without_its_trailing_slash_is_redirected_keeping_the_method(public_client, people, settings, debug):
    settings.DEBUG = debug
    sign_in_staff(public_client, people["staff"])
    response = public_client.post("/ops", {"q": "x"})
    assert response.status_code == 308
    assert response["Location"] == "/ops/"


def test_a_get_without_its_trailing_slash_is_still_a_301(public_client, db):
    response = public_client.get("/ops")
    assert response.status_code == 301

"""The device HTTP API as devices in the field speak it (seed 003): handshake by MAC, idempotent
events, legacy form posts, heartbeats; every refusal a JSON 4xx kept as a dead letter."""

import hashlib
import json

import pytest
from django.test import Client
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.models import DeadLetter, Device, DeviceEvent, TelemetrySettings

MAC = "EC:E3:34:46:2B:C0"
HANDSHAKE, EVENTS, LEGACY = "/api/handshake/", "/api/device/events/", "/api/iot/"


def post_json(path, body, token=None, host="acme.localhost", raw=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else json.dumps(body)
    return Client(HTTP_HOST=host).post(path, data, content_type="application/json", **headers)


def post_form(fields, token=None, host="acme.localhost"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return Client(HTTP_HOST=host).post(LEGACY, fields, **headers)  # multipart, as a browser form would send


def post_urlencoded(body: str, token=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return Client(HTTP_HOST="acme.localhost").post(
        LEGACY, body, content_type="application/x-www-form-urlencoded", **headers
    )


def handshake(mac=MAC, firmware="1.0.0", token=None):
    return post_json(HANDSHAKE, {"mac": mac, "firmware": firmware}, token=token)


def error_code(response):
    return response.json()["error"]["code"]


def event(n=123, **changes):
    body = {
        "device_id": "dev-ece334462bc0",
        "firmware": "1.0.0",
        "event_id": f"esp32-001-{n:010}",
        "event": "treatment",
        "treatment": "BASIC",
        "counter": 124,
        "ts": "2025-09-16T12:34:56Z",
    }
    return {key: value for key, value in (body | changes).items() if value is not ...}


@pytest.fixture
def token(db):
    """A provisioned device (MAC above, id dev-ece334462bc0) and its token."""
    response = handshake()
    assert response.status_code == 200, response.content
    return response.json()["token"]


def device(**lookup) -> Device:
    with schema_context("acme"):
        return Device.objects.get(**(lookup or {"mac": MAC}))


def in_acme(model, **filters):
    with schema_context("acme"):
        return list(model.objects.filter(**filters))


# --- handshake -------------------------------------------------------------------------------------


def test_an_unknown_mac_gets_an_unregistered_device_and_a_token(db):
    response = handshake(mac="ec-e3-34-46-2b-c0")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"device_id", "token", "assigned"}
    assert body["device_id"] == "dev-ece334462bc0" and body["assigned"] is False
    assert len(body["token"]) >= 40  # 32 random bytes
    stored = device()
    assert (stored.device_id, stored.kind, stored.firmware) == ("dev-ece334462bc0", "counter", "1.0.0")
    assert stored.last_handshake_at is not None and stored.last_seen is not None and stored.token_created_at is not None
    assert not stored.assigned


def test_tokens_are_stored_as_hashes_only(token):
    stored = device()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    with schema_context("acme"):
        assert not Device.objects.filter(token_hash=token).exists()


@pytest.mark.parametrize(
    "mac", ["ECE334462BC0", "ece334462bc0", "ec:e3:34:46:2b:c0", "EC-E3-34-46-2B-C0", " EC:E3:34:46:2B:C0 "]
)
def test_a_mac_is_accepted_in_any_notation_and_stored_normalised(db, mac):
    assert handshake(mac=mac).status_code == 200
    assert device().mac == MAC


@pytest.mark.parametrize(
    "mac", ["EC:E3:34:46:2B", "EC:E3-34:46:2B:C0", "GG:E3:34:46:2B:C0", "EC:E3:34:46:2B:C0:00", "", None, 42, ["EC"]]
)
def test_a_malformed_mac_is_400_with_a_field_message(db, mac):
    response = handshake(mac=mac)
    assert response.status_code == 400
    assert error_code(response) == "invalid_handshake"
    assert "mac" in response.json()["error"]["fields"]
    assert not in_acme(Device)


def test_a_known_mac_without_its_token_is_refused(token):
    response = handshake(firmware="6.6.6")
    assert response.status_code == 403
    assert error_code(response) == "already_provisioned"
    assert "reset provisioning" in response.json()["error"]["message"]
    assert device().firmware == "1.0.0"  # nothing about the device changed
    assert post_json(EVENTS, event(), token=token).status_code == 200  # and its token still works


def test_a_known_mac_with_a_wrong_token_is_refused(token):
    assert handshake(token="not-the-token").status_code == 403


def test_the_current_token_rotates_it(token):
    response = handshake(firmware="1.1.0", token=token)
    assert response.status_code == 200
    new = response.json()["token"]
    assert new != token
    assert device().firmware == "1.1.0"
    assert post_json(EVENTS, event(), token=token).status_code == 401
    assert post_json(EVENTS, event(), token=new).status_code == 200


def test_after_a_provisioning_reset_one_handshake_gets_a_token(token, as_acme):
    client = as_acme("acme_admin")
    assert client.post(f"/devices/{device().pk}/reset-provisioning/").status_code == 302
    assert device().provisioning_reset_at is not None
    response = handshake()
    assert response.status_code == 200
    assert device().provisioning_reset_at is None  # consumed
    assert post_json(EVENTS, event(), token=response.json()["token"]).status_code == 200
    assert handshake().status_code == 403  # once only


def test_a_registered_device_handshakes_as_assigned(token, as_acme):
    as_acme("acme_admin").post(f"/devices/{device().pk}/register/")
    assert handshake(token=token).json()["assigned"] is True


def test_a_device_id_taken_by_another_device_gets_a_suffix(db):
    with schema_context("acme"):
        Device.objects.create(device_id="dev-ece334462bc0")  # reported over MQTT, no MAC
    assert handshake().json()["device_id"] == "dev-ece334462bc0-2"


def test_handshakes_are_rate_limited_per_mac(db):
    assert handshake().status_code == 200
    responses = [handshake() for _ in range(10)]
    assert [r.status_code for r in responses[:9]] == [403] * 9
    assert responses[9].status_code == 429
    assert int(responses[9]["Retry-After"]) > 0
    assert error_code(responses[9]) == "rate_limited"


# --- events ----------------------------------------------------------------------------------------


def test_an_event_is_stored_once_and_a_repeat_gets_the_same_ack(token):
    first = post_json(EVENTS, event(firmware="1.0.1"), token=token)
    assert first.status_code == 200
    assert first.json() == {"ack": True, "event_id": "esp32-001-0000000123"}
    again = post_json(EVENTS, event(firmware="1.0.1"), token=token)
    assert (again.status_code, again.json()) == (200, first.json())
    (stored,) = in_acme(DeviceEvent)
    assert (stored.event, stored.treatment, stored.counter, stored.source, stored.firmware) == (
        "treatment",
        "BASIC",
        124,
        "api",
        "1.0.1",
    )
    assert stored.ts.isoformat() == "2025-09-16T12:34:56+00:00"
    refreshed = device()
    assert (
        refreshed.firmware == "1.0.1" and refreshed.token_last_used_at is not None and refreshed.last_seen is not None
    )


def test_events_of_an_unregistered_device_are_stored(token):
    assert not device().assigned
    for n in range(3):
        assert (
            post_json(EVENTS, event(n, treatment=["BASIC", "STANDARD", "PREMIUM"][n]), token=token).status_code == 200
        )
    assert len(in_acme(DeviceEvent, device__mac=MAC)) == 3


def test_device_id_and_firmware_may_be_left_out(token):
    assert post_json(EVENTS, event(device_id=..., firmware=..., event=...), token=token).status_code == 200


def test_an_event_id_used_by_another_device_is_409(token):
    other = handshake(mac="02:00:00:00:00:99").json()
    assert post_json(EVENTS, event(device_id=other["device_id"]), token=other["token"]).status_code == 200
    response = post_json(EVENTS, event(), token=token)
    assert response.status_code == 409
    assert error_code(response) == "event_id_taken"
    assert len(in_acme(DeviceEvent)) == 1


def test_a_device_id_other_than_the_tokens_is_403(token):
    response = post_json(EVENTS, event(device_id="esp32-999"), token=token)
    assert response.status_code == 403
    assert error_code(response) == "device_mismatch"
    assert not in_acme(DeviceEvent)


@pytest.mark.parametrize("token_header", [None, "wrong", "x" * 500])
def test_without_a_valid_token_it_is_401(token, token_header):
    response = post_json(EVENTS, event(), token=token_header)
    assert response.status_code == 401
    assert error_code(response) == "invalid_token"


def test_an_acme_token_on_globex_is_401(token):
    response = post_json(EVENTS, event(), token=token, host="globex.localhost")
    assert response.status_code == 401
    assert not in_acme(DeviceEvent)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"event_id": ...}, "event_id"),
        ({"event_id": ""}, "event_id"),
        ({"event_id": "x" * 101}, "event_id"),
        ({"event_id": 17}, "event_id"),
        ({"event_id": "a\u0000b"}, "event_id"),
        ({"treatment": "GOLD"}, "treatment"),
        ({"treatment": "basic"}, "treatment"),
        ({"treatment": ...}, "treatment"),
        ({"counter": -1}, "counter"),
        ({"counter": "many"}, "counter"),
        ({"counter": 1.5}, "counter"),
        ({"counter": True}, "counter"),
        ({"counter": 2**63}, "counter"),
        ({"counter": ...}, "counter"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": "2025-13-01T00:00:00Z"}, "ts"),
        ({"ts": "0001-01-01T00:00:00+01:00"}, "ts"),
        ({"ts": 1758026096}, "ts"),
        ({"ts": ...}, "ts"),
        ({"firmware": "f" * 51}, "firmware"),
    ],
)
def test_invalid_fields_are_400_with_a_message_per_field(token, changes, field):
    response = post_json(EVENTS, event(**changes), token=token)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_event"
    assert set(error["fields"]) == {field}
    assert error["message"].startswith(f"{field}: ")
    assert not in_acme(DeviceEvent)


def test_a_counter_as_digits_and_a_time_with_offset_are_accepted(token):
    assert post_json(EVENTS, event(counter="124", ts="2025-09-16T14:34:56+02:00"), token=token).status_code == 200
    assert in_acme(DeviceEvent)[0].ts.isoformat() == "2025-09-16T12:34:56+00:00"


@pytest.mark.parametrize("raw", ["{", "[1, 2]", '"text"', "", "\xff\xfe", "[" * 5000, '{"a": NaN'])
def test_a_body_that_is_not_a_json_object_is_400(token, raw):
    response = post_json(EVENTS, None, token=token, raw=raw.encode("latin-1"))
    assert response.status_code == 400
    assert error_code(response) in ("malformed_json", "invalid_body")


def test_other_methods_are_405_and_big_bodies_413(token):
    assert Client(HTTP_HOST="acme.localhost").get(EVENTS).status_code == 405
    response = post_json(EVENTS, None, token=token, raw=b"{" + b" " * 20_000 + b"}")
    assert response.status_code == 413
    assert error_code(response) == "too_large"


def test_events_are_rate_limited_per_device(token, settings):
    settings.FIELDWATCH_DEVICE_RATE = "3/60"
    codes = [post_json(EVENTS, event(n), token=token).status_code for n in range(4)]
    assert codes == [200, 200, 200, 429]
    response = post_json(EVENTS, event(9), token=token)
    assert response.status_code == 429 and 0 < int(response["Retry-After"]) <= 60
    assert len(in_acme(DeviceEvent)) == 3
    assert not in_acme(DeadLetter, reason="rate_limited")  # a flood is not written down row by row


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.dictionaries(
        st.sampled_from(["event_id", "event", "treatment", "counter", "ts", "firmware", "device_id", "x"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text()
        | st.lists(st.integers(), max_size=2)
        | st.sampled_from(["BASIC", "2025-09-16T12:34:56Z", "dev-ece334462bc0", "9" * 30]),
    )
)
def test_no_body_makes_a_server_error(token, body):
    response = post_json(EVENTS, None, token=token, raw=json.dumps(body).encode())
    assert response.status_code in (200, 400, 403, 409), response.content


# --- rejected requests are kept ---------------------------------------------------------------------


def test_a_refused_request_is_kept_with_its_reason_and_claimed_device(token):
    body = event(device_id="dev-ece334462bc0", counter=-5)
    post_json(EVENTS, body, token="stolen-or-stale")
    post_json(EVENTS, body, token=token)
    letters = {letter.reason: letter for letter in in_acme(DeadLetter)}
    assert set(letters) == {"invalid_token", "invalid_event"}
    for letter in letters.values():
        assert (letter.source, letter.topic, letter.device_ref) == ("http", EVENTS, "dev-ece334462bc0")
        assert json.loads(letter.payload) == body
    assert letters["invalid_event"].detail.startswith("counter: ")


def test_a_dead_letter_keeps_at_most_10_kB_of_text_postgres_accepts(token):
    raw = ('{"event_id": "a\\u0000", "pad": "' + "\x00é" * 4000 + '"}').encode()
    assert post_json(EVENTS, None, token=token, raw=raw).status_code == 400
    (letter,) = in_acme(DeadLetter)
    assert 5000 < len(letter.payload) <= 10 * 1024  # the first 10 kB, each NUL byte shown as U+FFFD
    assert "\x00" not in letter.payload


def test_a_refused_handshake_names_the_mac(token):
    handshake(mac="ec-e3-34-46-2b-c0")
    (letter,) = in_acme(DeadLetter)
    assert (letter.reason, letter.device_ref) == ("already_provisioned", MAC)


# --- legacy form posts ------------------------------------------------------------------------------


def legacy(mode="BASIC", **changes):
    body = {
        "mode": mode,
        "macaddr": MAC,
        "type1": "12.5",
        "type2": "3",
        "type3": "0",
        "count1": "41",
        "count2": "7",
        "count3": "2",
        "timestamp": "2024-01-15 14:30:25",
        "rtc_available": "true",
        "sd_available": "false",
    }
    return {key: value for key, value in (body | changes).items() if value is not ...}


def test_a_legacy_treatment_post_stores_one_event_and_the_counts(token):
    response = post_form(legacy("STANDARD"))
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert post_form(legacy("STANDARD")).json() == {"status": "ok"}  # the device retried
    (stored,) = in_acme(DeviceEvent)
    assert (stored.treatment, stored.counter, stored.source) == ("STANDARD", 7, "legacy")
    assert stored.event_id == "legacy-ece334462bc0-20240115143025-STANDARD"
    assert stored.ts.isoformat() == "2024-01-15T14:30:25+00:00"
    status = device().status
    assert (
        status["current_count_basic"] == 41
        and status["current_count_standard"] == 7
        and status["on_time_basic"] == 12.5
    )
    assert status["rtc_available"] is True and status["sd_card_available"] is False


def test_url_encoded_posts_as_old_firmware_sends_them_are_accepted(token):
    body = "mode=PREMIUM&macaddr=EC%3AE3%3A34%3A46%3A2B%3AC0&count3=9&timestamp=2024-01-15+14%3A30%3A25"
    assert post_urlencoded(body).json() == {"status": "ok"}
    assert in_acme(DeviceEvent)[0].counter == 9


def test_mode_status_is_kept_as_a_status_event_and_updates_the_status(token):
    assert post_form(legacy("status", count1="50")).status_code == 200
    assert post_form(legacy("status", count1="50")).status_code == 200  # a retry stores nothing more
    (stored,) = in_acme(DeviceEvent)
    assert (stored.event, stored.treatment, stored.counter, stored.source) == ("status", "", None, "legacy")
    refreshed = device()
    assert refreshed.status["current_count_basic"] == 50 and refreshed.status["mode"] == "status"
    assert refreshed.status["device_timestamp"] == "2024-01-15T14:30:25+00:00"


def test_a_tokenless_post_is_accepted_and_flagged(token):
    post_form(legacy("status"))
    assert device().legacy_tokenless_at is not None


def test_a_post_with_the_token_is_not_flagged(token):
    assert post_form(legacy("status"), token=token).status_code == 200
    refreshed = device()
    assert refreshed.legacy_tokenless_at is None and refreshed.token_last_used_at is not None


def test_a_token_of_another_mac_is_403(token):
    response = post_form(legacy(macaddr="02:00:00:00:00:99"), token=token)
    assert (response.status_code, error_code(response)) == (403, "device_mismatch")


def test_an_unknown_mac_becomes_an_unregistered_device_and_its_post_is_kept(db):
    """Seed 003's legacy firmware never handshakes: its data must not be lost."""
    response = post_form(legacy("BASIC"))
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    (created,) = in_acme(Device)
    assert (created.mac, created.kind, created.assigned) == (MAC, Device.Kind.COUNTER, False)
    assert created.legacy_tokenless_at is not None and created.status["current_count_basic"] == 41
    (stored,) = in_acme(DeviceEvent)
    assert (stored.device_id, stored.treatment, stored.counter) == (created.pk, "BASIC", 41)
    assert not in_acme(DeadLetter)
    # it handshakes later (new firmware): the same device, now with a token
    assert handshake().json()["device_id"] == created.device_id


def test_an_unknown_mac_is_refused_where_tokens_are_required(db):
    with schema_context("acme"):
        TelemetrySettings.objects.update_or_create(defaults={"accept_tokenless_legacy": False})
    response = post_form(legacy())
    assert (response.status_code, error_code(response)) == (401, "token_required")
    assert not in_acme(Device)


def test_tokenless_posts_are_refused_when_the_tenant_says_so(token):
    with schema_context("acme"):
        TelemetrySettings.objects.update_or_create(
            pk=TelemetrySettings.current().pk, defaults={"accept_tokenless_legacy": False}
        )
    response = post_form(legacy())
    assert (response.status_code, error_code(response)) == (401, "token_required")
    assert post_form(legacy(), token=token).status_code == 200


def test_a_count_padded_with_a_separator_character_is_read_not_a_500(token):
    # str.strip() removes "\x1e" (a record separator counts as white space) but int() does not
    response = post_form(legacy("STANDARD", count2="7\x1e"))
    assert response.status_code == 200
    (stored,) = in_acme(DeviceEvent)
    assert stored.counter == 7


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"mode": ...}, "mode"),
        ({"mode": "GOLD"}, "mode"),
        ({"macaddr": "EC:E3:34"}, "macaddr"),
        ({"timestamp": "2024-01-15T14:30:25Z"}, "timestamp"),
        ({"timestamp": "2024-02-30 10:00:00"}, "timestamp"),
        ({"count1": "lots"}, "count1"),
        ({"count1": ...}, "count1"),  # the count of the post's own mode is required
        ({"count2": "-3"}, "count2"),
        ({"type1": "nan"}, "type1"),
        ({"type2": "inf"}, "type2"),
        ({"rtc_available": "maybe"}, "rtc_available"),
    ],
)
def test_malformed_legacy_posts_are_400_and_kept(token, changes, field):
    response = post_form(legacy(**changes))
    assert response.status_code == 400
    assert error_code(response) == "invalid_legacy_post"
    assert field in response.json()["error"]["fields"]
    assert not in_acme(DeviceEvent)
    (letter,) = in_acme(DeadLetter)
    assert letter.reason == "invalid_legacy_post" and field in letter.detail


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("multipart/form-data", b"no boundary"),
        ("multipart/form-data; boundary=", b"--\r\n"),
        ("application/x-www-form-urlencoded", b"&".join([b"a=1"] * 1500)),  # more fields than Django parses
        ("application/x-www-form-urlencoded", b"mode=%ff%fe&macaddr=\xff\x00"),
    ],
)
def test_unreadable_form_bodies_are_400_json(token, content_type, body):
    response = Client(HTTP_HOST="acme.localhost").post(LEGACY, body, content_type=content_type)
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert error_code(response) in ("malformed_form", "invalid_legacy_post")
    assert len(in_acme(DeadLetter)) == 1


def test_json_sent_to_the_legacy_endpoint_is_400(token):
    response = post_json(LEGACY, {"mode": "BASIC", "macaddr": MAC})
    assert response.status_code == 400


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    fields=st.dictionaries(
        st.sampled_from(
            [
                "mode",
                "macaddr",
                "type1",
                "type2",
                "type3",
                "count1",
                "count2",
                "count3",
                "timestamp",
                "rtc_available",
                "sd_available",
            ]
        ),
        st.text(max_size=30)
        | st.sampled_from(
            ["BASIC", "status", MAC, "2024-01-15 14:30:25", "true", "-1", "1e400", "nan", "99999999999999999999"]
        ),
    )
)
def test_no_form_post_makes_a_server_error(token, fields):
    response = post_form(fields)
    assert response.status_code in (200, 400, 404, 409), response.content


# --- heartbeat --------------------------------------------------------------------------------------


def heartbeat_url(device_id="dev-ece334462bc0"):
    return f"/api/devices/{device_id}/heartbeat/"


def test_a_heartbeat_is_kept_in_the_status(token):
    body = {
        "last_seen": "2025-09-16T12:34:56Z",
        "uptime": 3600,
        "wifi": {"rssi": -61, "connected": True},
        "firmware": "1.0.2",
    }
    response = post_json(heartbeat_url(), body, token=token)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    refreshed = device()
    assert (
        refreshed.status["uptime_seconds"] == 3600
        and refreshed.status["wifi_rssi"] == -61
        and refreshed.status["wifi_connected"] is True
    )
    assert refreshed.firmware == "1.0.2" and refreshed.last_seen > refreshed.last_handshake_at


def test_a_heartbeat_may_be_empty_and_keeps_what_a_status_post_reported(token):
    post_form(legacy("status"))
    assert post_json(heartbeat_url(), None, token=token, raw=b"").status_code == 200
    assert post_json(heartbeat_url(), {"uptime": 5}, token=token).status_code == 200
    status = device().status
    assert status["current_count_basic"] == 41 and status["uptime_seconds"] == 5  # merged, not replaced


def test_a_heartbeat_for_another_device_is_403_and_without_token_401(token):
    assert post_json(heartbeat_url("esp32-999"), {}, token=token).status_code == 403
    assert post_json(heartbeat_url(), {}).status_code == 401


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["uptime", "wifi", "rssi", "connected", "firmware"]), inner, max_size=4)
        ),
        max_leaves=8,
    )
)
def test_no_heartbeat_body_makes_a_server_error(token, body):
    response = post_json(heartbeat_url(), body, token=token)
    assert response.status_code in (200, 400), response.content


@pytest.mark.parametrize(
    "body, field",
    [
        ({"uptime": -1}, "uptime"),
        ({"wifi": "up"}, "wifi"),
        ({"wifi": {"rssi": "strong"}}, "wifi.rssi"),
        ({"wifi": {"connected": "perhaps"}}, "wifi.connected"),
    ],
)
def test_a_malformed_heartbeat_is_400(token, body, field):
    response = post_json(heartbeat_url(), body, token=token)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_a_known_mac_is_reprovisioned_where_the_tenant_allows_it(token):
    with schema_context("acme"):
        TelemetrySettings.objects.update_or_create(defaults={"reprovision_by_mac": True})
    response = handshake(firmware="2.0.0")  # re-flashed: no token
    assert response.status_code == 200
    fresh = response.json()["token"]
    assert fresh != token and device().firmware == "2.0.0"
    assert post_json(EVENTS, event(), token=token).status_code == 401  # the old token is revoked
    assert post_json(EVENTS, event(), token=fresh).status_code == 200
    refreshed = device()
    assert refreshed.reprovisioned_at is not None
    from portal.audit.models import AuditLog

    with schema_context("acme"):
        (entry,) = AuditLog.objects.filter(action="device.reprovisioned")
    assert entry.object_id == str(refreshed.pk) and entry.changes["mac"] == MAC


def test_online_means_seen_within_the_tenants_window(db):
    from datetime import timedelta

    from django.utils import timezone

    from telemetry.ingest import clear_caches
    from telemetry.models import online_window

    with schema_context("acme"):
        Device.objects.create(device_id="quiet", last_seen=timezone.now() - timedelta(minutes=6))
        assert online_window() == timedelta(minutes=5)  # seeds 000, 003 and 004: five minutes
        assert not Device.objects.get(device_id="quiet").online and not Device.objects.online().exists()
        TelemetrySettings.objects.update_or_create(defaults={"online_window_seconds": 600})
        clear_caches()
        assert Device.objects.get(device_id="quiet").online and Device.objects.online().count() == 1


# --- seed 000's devices: no handshake token, the tenant's key or a member's token vouches ---------


def seed_000_heartbeat(client, device_id, body, **headers):
    return client.post(f"/api/devices/{device_id}/heartbeat/", body, content_type="application/json", **headers)


def test_a_seed_000_device_beats_with_an_api_key_and_a_timestamp(acme_client, db):
    from datetime import timedelta

    from django.utils import timezone

    from portal.api.models import ApiKey

    with schema_context("acme"):
        Device.objects.create(device_id="ESP32-01")
        raw = ApiKey.issue("hvac app", role="operator")[1]
    alive = (timezone.now() - timedelta(minutes=2)).replace(microsecond=0)
    response = seed_000_heartbeat(acme_client, "ESP32-01", {"timestamp": alive.isoformat()}, HTTP_X_API_KEY=raw)
    assert response.status_code == 200, response.content
    with schema_context("acme"):
        device = Device.objects.get(device_id="ESP32-01")
    assert device.last_seen == alive and device.status["heartbeat_at"] == alive.isoformat()
    assert device.token_last_used_at is None  # no device token was used
    assert seed_000_heartbeat(acme_client, "nobody", {}, HTTP_X_API_KEY=raw).status_code == 404
    future = (timezone.now() + timedelta(hours=2)).isoformat()
    assert seed_000_heartbeat(acme_client, "ESP32-01", {"timestamp": future}, HTTP_X_API_KEY=raw).status_code == 400


def test_a_seed_000_heartbeat_needs_this_tenants_credentials(acme_client, db):
    from portal.api.models import ApiKey

    with schema_context("acme"):
        Device.objects.create(device_id="ESP32-01")
    with schema_context("globex"):
        foreign = ApiKey.issue("globex app", role="admin")[1]
    assert seed_000_heartbeat(acme_client, "ESP32-01", {}).status_code == 401
    assert seed_000_heartbeat(acme_client, "ESP32-01", {}, HTTP_X_API_KEY=foreign).status_code == 401
    assert seed_000_heartbeat(acme_client, "ESP32-01", {}, HTTP_AUTHORIZATION="Bearer not-a-token").status_code == 401

"""The broker's webhook as seeds 000 and 001 configure it: one URL on the public host for every
tenant (POST /ingest and /ingest/), seed 001's rule output decoded by the bridge's own code, the
HMAC x-device-token, and seed 000's 1,000 requests an hour per device."""

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from django.test import Client
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.facilities import topics
from portal.facilities.models import Asset, DeviceBinding
from telemetry.models import DeadLetter, Reading

SECRET = "webhook-secret-for-tests-0123456789abcdef"
TS = "2026-11-20T12:00:00+00:00"
TS_MS = int(datetime(2026, 11, 20, 12, 30, tzinfo=UTC).timestamp() * 1000)  # the broker's message time


def post(body, host="localhost", path="/ingest", signature=None, raw=None):
    raw = raw if raw is not None else json.dumps(body).encode()
    token = signature if signature is not None else hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return Client(HTTP_HOST=host).post(path, raw, content_type="application/json", HTTP_X_DEVICE_TOKEN=token)


@pytest.fixture(autouse=True)
def secret(settings):
    settings.INGESTION_SECRET = SECRET


def stored(schema):
    with schema_context(schema):
        rows = Reading.objects.select_related("sensor__device").order_by(
            "sensor__device__device_id", "sensor__key", "ts"
        )
        return [(r.sensor.device.device_id, r.sensor.key, r.ts.isoformat(), r.value) for r in rows]


def letters(schema):
    with schema_context(schema):
        return sorted(DeadLetter.objects.values_list("reason", "source"))


def flat(**changes):
    base = {"device_id": "ESP32-01", "sensor_id": "temp_001", "value": 23.5, "unit": "°C", "timestamp": TS}
    return base | changes


@pytest.mark.parametrize("path", ["/ingest", "/ingest/"])
def test_the_public_host_takes_each_tenants_readings_from_the_body(db, path):
    response = post([flat(tenant="acme"), flat(tenant="globex", value=5)], path=path)
    assert response.status_code == 200 and response.json()["written"] == 2
    assert stored("acme") == [("ESP32-01", "temp_001", TS, 23.5)]
    assert stored("globex") == [("ESP32-01", "temp_001", TS, 5.0)]


def seed_001_body(topic, payload, ts_ms=TS_MS, client_id="gw-7"):
    """What seed 001's rule selects: SELECT clientid as client_id, topic, payload, timestamp as ts."""
    return {"client_id": client_id, "topic": topic, "payload": payload, "ts": ts_ms}


def test_seed_001_rule_output_is_decoded_from_its_topic(db):
    body = seed_001_body("tenants/acme/devices/gw-7/sensors/temp", json.dumps({"value": 21.5, "unit": "°C"}))
    response = post(body)
    assert response.status_code == 200 and response.json()["written"] == 1
    # no timestamp in the payload: the broker's message time (ts, milliseconds) is the reading's
    assert stored("acme") == [("gw-7", "temp", "2026-11-20T12:30:00+00:00", 21.5)]


def test_the_webhook_and_the_bridge_store_the_same_readings_and_hierarchy(db):
    """The same SenML message on an asset topic: through the webhook into acme, through the bridge's
    decode() and store() into globex; both tenants end up with the same rows."""
    senml = json.dumps(
        [{"bn": "gw-9/", "bt": TS_MS // 1000, "n": "temp", "u": "Cel", "v": 6.5}, {"n": "hum", "u": "%RH", "v": 40}]
    )
    post(seed_001_body("tenants/acme/sites/Plant 1/assets/CH-1/telemetry", senml))
    with schema_context("globex"):
        message = topics.decode("tenants/globex/sites/Plant 1/assets/CH-1/telemetry", senml.encode(), datetime.now(UTC))
        topics.store([message])
    assert stored("acme") == stored("globex") and len(stored("acme")) == 2
    for schema in ("acme", "globex"):
        with schema_context(schema):
            assert list(Asset.objects.values_list("site__name", "tag")) == [("Plant 1", "CH-1")]
            assert DeviceBinding.objects.get().asset.tag == "CH-1"


def test_seed_000_rule_output_takes_device_and_sensor_from_the_topic(db):
    body = {"topic": "tenants/globex/devices/hvac-1/sensors/pressure", "value": 2.5, "unit": "bar", "timestamp": TS}
    assert post(body).json()["written"] == 1
    assert stored("globex") == [("hvac-1", "pressure", TS, 2.5)]


def test_input_naming_no_active_tenant_is_kept_in_the_public_schema(db, acme):
    acme.is_active = False
    acme.save(update_fields=["is_active"])
    response = post([flat(), flat(tenant="nobody"), flat(tenant="acme"), seed_001_body("sensors/x", "1")])
    assert response.json()["rejected"] == 4
    assert letters("public") == [("unknown_tenant", "webhook")] * 3 + [("unknown_topic", "webhook")]
    assert stored("acme") == []


def test_an_item_whose_tenant_and_topic_disagree_is_refused(db):
    body = seed_001_body("tenants/acme/devices/gw-7/sensors/temp", "1") | {"tenant": "globex"}
    assert post(body).json()["reasons"] == {"wrong_tenant": 1}
    assert stored("acme") == stored("globex") == []


def test_on_a_tenant_host_the_host_decides_and_other_tenants_are_refused(db):
    body = [
        seed_001_body("tenants/acme/devices/gw-7/sensors/temp", "3"),
        seed_001_body("tenants/globex/devices/gw-7/sensors/temp", "4"),
    ]
    response = post(body, host="acme.localhost", path="/ingest")
    assert (response.json()["written"], response.json()["reasons"]) == (1, {"wrong_tenant": 1})
    assert [row[3] for row in stored("acme")] == [3.0] and stored("globex") == []
    assert letters("acme") == [("wrong_tenant", "webhook")]


@pytest.mark.parametrize("host", ["localhost", "acme.localhost"])
def test_unsigned_or_unconfigured_is_401_on_every_host(settings, db, host):
    assert post(flat(tenant="acme"), host=host, signature="0" * 64).status_code == 401
    settings.INGESTION_SECRET = ""
    response = post(flat(tenant="acme"), host=host)
    assert response.status_code == 401 and response.json()["error"]["code"] == "webhook_not_configured"
    assert stored("acme") == []


def bearer_post(body, token, host="localhost"):
    raw = json.dumps(body).encode()
    return Client(HTTP_HOST=host).post("/ingest", raw, content_type="application/json", HTTP_AUTHORIZATION=token)


@pytest.mark.parametrize("host", ["localhost", "acme.localhost"])
def test_a_broker_that_cannot_sign_sends_the_secret_as_a_bearer_token(settings, db, host):
    """EMQX's HTTP action cannot compute an HMAC of its body: the shared secret itself, as a bearer."""
    assert bearer_post(flat(tenant="acme"), f"Bearer {SECRET}", host).status_code == 200
    assert stored("acme") == [("ESP32-01", "temp_001", TS, 23.5)]
    for wrong in (f"Bearer {SECRET[:-1]}", f"Basic {SECRET}", "Bearer ", SECRET, f"Bearer {SECRET}x"):
        response = bearer_post(flat(tenant="acme", value=1), wrong, host)
        assert response.status_code == 401 and response.json()["error"]["code"] == "bad_signature", wrong
    # a wrong signature is not rescued by a right bearer: the signature alone decides
    raw = json.dumps(flat(tenant="acme", value=2)).encode()
    response = Client(HTTP_HOST=host).post(
        "/ingest",
        raw,
        content_type="application/json",
        HTTP_X_DEVICE_TOKEN="0" * 64,
        HTTP_AUTHORIZATION=f"Bearer {SECRET}",
    )
    assert response.status_code == 401
    settings.INGESTION_SECRET = ""
    assert bearer_post(flat(tenant="acme", value=3), "Bearer ", host).status_code == 401
    assert [row[3] for row in stored("acme")] == [23.5]


def test_each_device_gets_its_hourly_rate_then_429_with_retry_after(settings, db):
    settings.FIELDWATCH_WEBHOOK_DEVICE_RATE = "2/3600"
    for n in range(2):
        assert post(flat(tenant="acme", timestamp=f"2026-11-20T12:0{n}:00Z")).status_code == 200
    response = post(flat(tenant="acme", timestamp="2026-11-20T12:05:00Z"))
    assert response.status_code == 429 and response.json()["error"]["code"] == "rate_limited"
    assert 0 < int(response["Retry-After"]) <= 3600
    assert len(stored("acme")) == 2  # the refused request stored nothing
    assert post(flat(tenant="acme", device_id="other")).status_code == 200  # another device has its own
    assert post(flat(tenant="globex")).status_code == 200  # the same id in another tenant too


def test_the_default_rate_is_seed_000s_thousand_an_hour(settings):
    from django.conf import settings as live

    assert live.FIELDWATCH_WEBHOOK_DEVICE_RATE == "1000/3600"


def test_the_webhook_runs_on_the_lean_path(db, django_assert_max_num_queries):
    post(flat(tenant="acme"))  # warm the host and sensor caches
    with django_assert_max_num_queries(12):
        assert post(flat(tenant="acme", timestamp="2026-11-20T13:00:00Z")).status_code == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
items = st.fixed_dictionaries(
    {},
    optional={
        "tenant": st.sampled_from(["acme", "globex", "", "nobody"]) | st.text(max_size=10),
        "topic": st.sampled_from(["tenants/acme/devices/d/sensors/s", "tenants/globex/sites/S/assets/A/telemetry", "x"])
        | st.text(max_size=40),
        "payload": json_values | st.text(max_size=40),
        "device_id": st.text(max_size=120),
        "sensor_id": st.text(max_size=120),
        "value": json_values,
        "timestamp": json_values,
        "ts": json_values,
        "client_id": json_values,
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(items, st.lists(items, max_size=4), json_values),
    host=st.sampled_from(["localhost", "acme.localhost"]),
)
def test_signed_fuzz_never_500s(db, body, host):
    assert post(body, host=host).status_code < 500


def test_ids_the_database_cannot_hold_are_dead_letters_not_500s(db):
    body = [
        flat(tenant="acme", device_id="gw\x00"),
        flat(tenant="acme\x00"),
        seed_001_body("tenants/acme/devices/gw\ud800/sensors/t", "1"),
        seed_001_body("tenants/ac\x00me/devices/gw/sensors/t", "1"),
    ]
    response = post(body, raw=json.dumps(body).encode("utf-8", "surrogatepass"))
    assert response.status_code == 200 and response.json()["written"] == 0
    assert {reason for reason, _ in letters("public") + letters("acme")} <= {
        "invalid_id",
        "unknown_topic",
        "unknown_tenant",
    }

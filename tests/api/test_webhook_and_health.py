import hashlib
import hmac
import json

import pytest
from django.test import Client
from django_tenants.utils import schema_context
from helpers import unchanged

from telemetry.models import DeadLetter, Reading

SECRET = "webhook-secret-for-tests-0123456789abcdef"


def signed(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(body, secret=SECRET, host="acme.localhost", signature=None):
    raw = json.dumps(body).encode()
    headers = {"HTTP_X_DEVICE_TOKEN": signature if signature is not None else signed(raw, secret)}
    return Client(HTTP_HOST=host).post("/ingest/", raw, content_type="application/json", **headers)


@pytest.fixture
def secret(settings):
    settings.INGESTION_SECRET = SECRET


def item(**changes):
    base = {
        "device_id": "ESP32-01",
        "sensor_id": "temp_001",
        "tenant": "acme",
        "value": 23.5,
        "unit": "°C",
        "timestamp": "2026-11-20T12:00:00Z",
    }
    return base | changes


def test_a_signed_reading_is_stored(secret, db):
    response = post(item())
    assert response.status_code == 200, response.content
    assert response.json()["written"] == 1
    with schema_context("acme"):
        assert Reading.objects.get().value == 23.5


def test_a_list_keeps_the_good_items_and_dead_letters_the_bad(secret, db):
    response = post(
        [item(), item(timestamp="2026-11-20T12:01:00Z", value=24), item(sensor_id=None), item(tenant="globex"), "x"]
    )
    body = response.json()
    assert (body["written"], body["rejected"]) == (2, 3)
    with schema_context("acme"):
        assert sorted(DeadLetter.objects.values_list("reason", flat=True)) == [
            "missing_field",
            "unknown_format",
            "wrong_tenant",
        ]


@pytest.mark.parametrize(
    "configured, signature, code",
    [(True, "0" * 64, "bad_signature"), (True, "", "bad_signature"), (False, None, "webhook_not_configured")],
)
def test_wrong_or_unconfigured_signature_is_401(settings, db, configured, signature, code):
    settings.INGESTION_SECRET = SECRET if configured else ""
    with unchanged():
        response = post(item(), signature=signature)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    with schema_context("acme"):
        assert not Reading.objects.exists()


def test_bad_input_is_a_clear_4xx(secret, db):
    raw = b"{not json"
    with unchanged():
        response = Client(HTTP_HOST="acme.localhost").post(
            "/ingest/", raw, content_type="application/json", HTTP_X_DEVICE_TOKEN=signed(raw)
        )
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_json"
    assert Client(HTTP_HOST="acme.localhost").get("/ingest/").status_code == 405


def test_api_health_endpoints(db):
    from api.bulk_helpers import make_key

    client = Client(HTTP_HOST="acme.localhost")
    assert client.get("/api/v1/health").json()["status"] == "ok"
    assert client.get("/api/v1/health/detailed").status_code == 401  # details need a key
    detailed = client.get("/api/v1/health/detailed", HTTP_X_API_KEY=make_key("acme")).json()
    assert set(detailed["checks"]) == {"database", "queue", "storage", "broker"}
    assert detailed["checks"]["storage"]["ok"] is True


@pytest.mark.parametrize(
    "bad",
    [
        {"device_id": "ESP\x0032"},
        {"sensor_id": "temp\x00"},
        {"unit": "\x00C"},
        {"device_id": "d" * 101},
        {"sensor_id": "s\ud800"},
        {"unit": "u" * 21},
    ],
    ids=["nul-device", "nul-sensor", "nul-unit", "long-device", "surrogate-sensor", "long-unit"],
)
def test_ids_postgresql_cannot_store_are_dead_lettered_and_the_rest_kept(secret, db, bad):
    # found by the OpenAPI fuzz once its webhook cases were signed: a NUL in an id was a 500
    response = post([item(), item(timestamp="2026-11-20T12:01:00Z", **bad)])
    assert response.status_code == 200
    assert (response.json()["written"], response.json()["rejected"]) == (1, 1)
    with schema_context("acme"):
        assert Reading.objects.count() == 1
        letter = DeadLetter.objects.get()
    assert letter.reason in {"invalid_id", "unit_mismatch"} and "\x00" not in letter.payload


@pytest.mark.parametrize("bad", ["x\x00y", "s\ud800", {"topic": "tenants/acme/devices/d\x00/sensors/t", "value": 1}])
def test_an_item_postgresql_cannot_store_is_dead_lettered_not_a_500(secret, db, bad):
    response = post([bad, item()])
    assert response.status_code == 200 and response.json()["rejected"] == 1
    with schema_context("acme"):
        assert Reading.objects.count() == 1 and DeadLetter.objects.count() == 1

"""Every device and integration endpoint of a tenant host, fuzzed in-process with credentials
that pass (a device token, an API key, the webhook's HMAC signature), so the hostile bodies and
parameters reach the code behind authentication. JSON bodies are drawn over the fields these
endpoints read, nested and typed at random, with the values that once broke one; the legacy
endpoint gets form posts. Assertion: no 500 (the test client re-raises a view's exception)."""

import hashlib
import hmac
import json
import re

import pytest
from api.bulk_helpers import make_key
from django.test import Client
from django_tenants.utils import schema_context
from fuzzing import EDGES, hostile_text, query_string, record, walk
from hypothesis import HealthCheck, given, settings
from hypothesis import settings as settings_
from hypothesis import strategies as st

SECRET = "webhook-secret-for-fuzzing-0123456789abcdef"
EXAMPLES = 40
FIELDS = [
    "mac", "firmware", "event_id", "event", "treatment", "counter", "ts", "device_id", "uptime", "wifi", "rssi",
    "connected", "username", "password", "refresh_token", "grant_type", "sensor_id", "value", "unit", "timestamp",
    "tenant", "equip_uuid", "equip_name", "sensors", "sensor_uuid", "sensor_tipo", "readings", "mode", "macaddr",
    "count1", "count2", "count3", "type1", "rtc_available", "sd_available", "period", "from", "to",
    "email", "name", "old_password", "new_password", "organisation", "slug",
]  # fmt: skip
MAC = "EC:E3:34:46:2B:C0"

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
    st.sampled_from([MAC, "BASIC", "PREMIUM", "2026-11-20T12:00:00Z", "2026-11-20 12:00:00", 1764000000]),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=6))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6), max_leaves=20
)
bodies = st.one_of(
    st.dictionaries(keys, json_values, max_size=8),
    st.lists(st.dictionaries(keys, json_values, max_size=8), max_size=4),
    json_values,
)


def api_routes(urlconf="portal.urls_tenant") -> list[str]:
    return sorted({route for route, _, _ in walk(urlconf) if route.startswith(("api/", "ingest/", "auth/"))})


@pytest.fixture
def credentials(db, settings):
    settings.INGESTION_SECRET = SECRET
    settings.FIELDWATCH_LOGIN_RATE = "1000000/60"  # the sign-in endpoints' limit would answer 429 only
    client = Client(HTTP_HOST="acme.localhost")
    reply = client.post("/api/handshake/", {"mac": MAC, "firmware": "1.0"}, content_type="application/json")
    with schema_context("acme"):
        from telemetry.models import Device

        Device.objects.create(device_id="eq-a")
    return {"token": reply.json()["token"], "key": make_key("acme"), "device_id": reply.json()["device_id"]}


def fill(route, credentials, data) -> str:
    def value(match):
        converter, name = match.group(1), match.group(2)
        if converter == "int":
            return str(data.draw(st.integers(0, 2**63 - 1) | st.just(1), label=name))
        known = {"device_id": credentials["device_id"], "uuid": "eq-a"}.get(name, "x")
        text = data.draw(st.one_of(st.just(known), hostile_text.filter(lambda t: t and "/" not in t)), label=name)
        from urllib.parse import quote

        return quote(text.encode("utf-8", "surrogatepass"), safe="")

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", value, route)


def encoded(body) -> bytes:
    return json.dumps(body, ensure_ascii=True).encode()  # lone surrogates travel escaped, as JSON allows


@pytest.mark.parametrize("route", api_routes())
def test_api_endpoint_answers_no_500_whatever_is_sent(route, credentials):
    client = Client(HTTP_HOST="acme.localhost")
    probe = client.get(fill(route, credentials, None) if "<" not in route else "/" + re.sub(r"<[^>]+>", "1", route))
    method = "post" if probe.status_code == 405 else "get"
    record(f"acme {probe.request['REQUEST_METHOD']} /{route}", probe.status_code)

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=st.data())
    def fuzz(data):
        path = fill(route, credentials, data)
        auth = data.draw(st.sampled_from(["token", "key", "none"]), label="auth")
        headers = {"token": {"HTTP_AUTHORIZATION": f"Bearer {credentials['token']}"}}.get(auth, {})
        if auth == "key":
            headers = {"HTTP_X_API_KEY": credentials["key"]}
        if method == "get":
            query = data.draw(st.dictionaries(keys, hostile_text, max_size=4), label="query")
            response = client.get(f"{path}?{query_string(query)}", **headers)
        elif route == "api/iot/":
            form = data.draw(st.dictionaries(keys, hostile_text | st.sampled_from(EDGES), max_size=10), label="form")
            raw = query_string(form)
            response = client.post(path, raw, content_type="application/x-www-form-urlencoded", **headers)
        else:
            raw = encoded(data.draw(bodies, label="body"))
            if route == "ingest/":
                headers["HTTP_X_DEVICE_TOKEN"] = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
            response = client.post(path, raw, content_type="application/json", **headers)
        record(f"acme {method.upper()} /{route}", response.status_code)
        assert response.status_code < 500
        if response.status_code >= 400:
            assert response.json()["error"]["code"]  # the one error shape

    fuzz()


@pytest.mark.parametrize("route", api_routes("portal.urls_public"))
def test_public_api_endpoint_answers_no_500_whatever_is_sent(route, db, settings):
    """EMQX's authentication and authorisation calls (the public host), with the shared secret;
    seed 000's sign-up of an organisation (its limit lifted: it would answer 429 only)."""
    settings.EMQX_AUTH_SECRET = SECRET
    settings.FIELDWATCH_LOGIN_RATE = "1000000/60"
    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {SECRET}")

    @settings_(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies)
    def fuzz(body):
        response = client.post(f"/{route}", encoded(body), content_type="application/json")
        record(f"public POST /{route}", response.status_code)
        assert response.status_code < 500
        answer = response.json()
        assert "result" in answer or "message" in answer or answer["error"]["code"]

    fuzz()

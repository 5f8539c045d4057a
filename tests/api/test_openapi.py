"""The OpenAPI document is served, and fuzzing every operation it describes against a live
server finds no server error (a bounded number of examples per operation keeps CI fast).

The fuzz has to get past the door to test the handlers: its server has a webhook secret and
rate limits lifted (its own process, started for this module), every webhook case is signed as
the broker signs it, and path ids are mostly real ones (an equipment with readings, its sensor,
a bulk job, an outlet and its machine, the token's device), with one case in four keeping the
fuzzer's own value.
"""

import hashlib
import hmac
import re
import zlib
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context
from fuzzing import walk
from helpers import site
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from portal.api.openapi import document

schema = schemathesis.openapi.from_dict(document())
WEBHOOK_SECRET = "fuzz-webhook-secret"
UNLIMITED = "1000000/60"


@pytest.fixture(scope="module")
def fuzz_port(django_db_setup):
    """The site on a port of its own, with a webhook secret and no rate limit that a few
    hundred requests from one address would reach."""
    rates = ("DEVICE", "KEY", "LOGIN", "WEBHOOK_DEVICE")
    limits = {f"FIELDWATCH_{name}_RATE": UNLIMITED for name in rates}
    with site(INGESTION_SECRET=WEBHOOK_SECRET, **limits) as port:
        yield port


@pytest.fixture(scope="module")
def fuzz_tenant(django_db_setup, django_db_blocker):
    """A tenant of its own (whatever the fuzzer creates is dropped with it), committed for the
    live server to see: a device token, an API key, an equipment with two sensors' readings,
    a bulk job. Yields the headers and the real ids."""
    from portal.api.models import ApiKey, BulkJob
    from portal.outlets.models import Machine, Outlet
    from portal.tenancy.models import Tenant
    from portal.tenancy.provisioning import create_tenant
    from telemetry.ingest import ReadingIn, ingest
    from telemetry.models import Device

    with django_db_blocker.unblock():
        tenant = create_tenant("Fuzz", "fuzz")
        with schema_context("fuzz"):
            device = Device.objects.create(device_id="fuzz-device", mac="02:00:00:00:00:01")
            token = device.issue_token()
            device.save()
            _, raw_key = ApiKey.issue("fuzzing", role="admin")  # writes are fuzzed too
            now = timezone.now()
            ingest(
                [
                    ReadingIn("fuzz-freezer", key, now - timedelta(minutes=20 * n), float(n % 9))
                    for n in range(1, 150)
                    for key in ("fuzz-temp", "fuzz-door")
                ],
                source="internal",
            )
            job = BulkJob.objects.create(file_name="fuzz.json.gz", size_bytes=1)
            outlet = Outlet.objects.create(name="Fuzz outlet")
            machine = Machine.objects.create(outlet=outlet, name="Fuzz machine")
    ids = {"device_id": "fuzz-device", "pk": job.pk, "outlet_id": outlet.pk, "machine_id": machine.pk}
    yield {
        "headers": {"Authorization": f"Bearer {token}", "X-API-Key": raw_key},
        "ids": {name: str(value) for name, value in ids.items()} | {"equipment": "fuzz-freezer", "sensor": "fuzz-temp"},
    }
    with django_db_blocker.unblock():
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


class SigningSession(requests.Session):
    """Signs what goes to the broker webhook as the broker does: the hex HMAC-SHA256 of the
    exact body bytes sent (so it is computed here, after schemathesis has serialised them)."""

    def send(self, request, **kwargs):
        if urlsplit(request.url).path in ("/ingest", "/ingest/"):
            body = request.body or b""
            body = body.encode() if isinstance(body, str) else body
            request.headers["x-device-token"] = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return super().send(request, **kwargs)


def keeps_its_own(value) -> bool:
    """One case in four keeps the fuzzer's value (unknown ids must be a 4xx too); chosen by
    the value itself, so a shrunk example chooses the same."""
    return zlib.crc32(repr(value).encode()) % 4 == 0


def use_real_ids(case, ids: dict) -> None:
    for name, value in (case.path_parameters or {}).items():
        if keeps_its_own(value):
            continue
        if name == "uuid":
            case.path_parameters[name] = ids["sensor" if "/sensor/" in case.path else "equipment"]
        elif name in ids:
            case.path_parameters[name] = ids[name]
    body = case.body
    events = case.path == "/api/device/events/" and isinstance(body, dict) and "device_id" in body
    if events and not keeps_its_own(body["device_id"]):
        body["device_id"] = ids["device_id"]  # another device's id is refused before the handler


def test_the_document_is_served(db):
    response = Client(HTTP_HOST="acme.localhost").get("/api/schema/")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1")
    assert set(response.json()["paths"]) == set(document()["paths"])


def test_the_document_lists_every_api_route_of_a_tenant_host_aliases_included():
    machine_routes = {
        "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        for route, _, _ in walk("portal.urls_tenant")
        if route.startswith(("api/", "ingest/", "health/", "auth/"))
    }
    assert machine_routes - set(document()["paths"]) == set()
    assert {"/api/v1/telemetria/bulk", "/api/home-assistant/{uuid}", "/auth/login/"} <= machine_routes
    public = {"/" + route for route, _, _ in walk("portal.urls_public") if route.startswith("auth/")}
    assert public == {"/auth/register/"} and public <= set(document()["paths"])


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_with_a_server_error(case, fuzz_port, fuzz_tenant):
    use_real_ids(case, fuzz_tenant["ids"])
    with SigningSession() as session:
        case.call_and_validate(
            base_url=f"http://127.0.0.1:{fuzz_port}",
            session=session,
            checks=[not_a_server_error],
            headers={"Host": f"fuzz.localhost:{fuzz_port}", **fuzz_tenant["headers"]},
        )

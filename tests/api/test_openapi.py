"""The OpenAPI document is served, and fuzzing every operation it describes against a live
server finds no server error (a bounded number of examples per operation keeps CI fast)."""

import pytest
import schemathesis
from django.test import Client
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from portal.api.openapi import document

schema = schemathesis.openapi.from_dict(document())


@pytest.fixture(scope="module")
def credentials(django_db_setup, django_db_blocker):
    """A tenant of its own (whatever the fuzzer creates is dropped with it), a device token and
    an API key there, committed for the live server to see."""
    from portal.api.models import ApiKey
    from portal.tenancy.models import Tenant
    from portal.tenancy.provisioning import create_tenant
    from telemetry.models import Device

    with django_db_blocker.unblock():
        tenant = create_tenant("Fuzz", "fuzz")
        with schema_context("fuzz"):
            device = Device.objects.create(device_id="fuzz-device", mac="02:00:00:00:00:01")
            token = device.issue_token()
            device.save()
            _, raw_key = ApiKey.issue("fuzzing")
    yield {"Authorization": f"Bearer {token}", "X-API-Key": raw_key}
    with django_db_blocker.unblock():
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


def test_the_document_is_served(db):
    response = Client(HTTP_HOST="acme.localhost").get("/api/schema/")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.0")
    assert set(response.json()["paths"]) == set(document()["paths"])


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_with_a_server_error(case, server_port, credentials):
    case.call_and_validate(base_url=f"http://127.0.0.1:{server_port}", checks=[not_a_server_error],
                           headers={"Host": f"fuzz.localhost:{server_port}", **credentials})

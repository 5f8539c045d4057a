"""A session replayed on another tenant's host is void and leaves no trace in that tenant:
no user.signed_out rows with another tenant's people in its audit log."""

from django.test import Client
from django_tenants.utils import schema_context

from portal.audit.models import AuditLog
from portal.tenancy.middleware import SESSION_TENANT_KEY


def audit_rows(schema):
    with schema_context(schema):
        return list(AuditLog.objects.values_list("action", "actor_email"))


def test_an_acme_session_replayed_on_globex_writes_nothing_into_globex(as_acme, people):
    before = audit_rows("globex")
    cookie = as_acme("acme_viewer").cookies["fieldwatch_session"].value
    globex = Client(HTTP_HOST="globex.localhost")
    for _ in range(3):
        globex.cookies["fieldwatch_session"] = cookie
        response = globex.get("/")
        assert response.status_code == 302
    assert audit_rows("globex") == before


def test_a_session_bound_to_no_tenant_is_void_without_an_audit_row(acme_client, people):
    acme_client.force_login(people["acme_owner"], backend="django.contrib.auth.backends.ModelBackend")
    session = acme_client.session
    session.pop(SESSION_TENANT_KEY, None)
    session.save()
    before = audit_rows("acme")
    response = acme_client.get("/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert audit_rows("acme") == before


def test_signing_out_on_ones_own_host_is_still_recorded(as_acme):
    client = as_acme("acme_viewer")
    client.post("/accounts/logout/")
    assert ("user.signed_out", "acme_viewer@example.com") in audit_rows("acme")

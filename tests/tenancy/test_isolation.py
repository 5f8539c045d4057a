from django.test import Client
from django_tenants.utils import schema_context
from helpers import sign_in, sign_in_staff, unchanged

from portal.audit.log import record
from portal.audit.models import AuditLog


def test_anonymous_visitor_is_sent_to_sign_in(acme_client, db):
    response = acme_client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_member_sees_the_dashboard(as_acme):
    response = as_acme("acme_viewer").get("/")
    assert response.status_code == 200
    assert b"Acme" in response.content


def test_user_of_another_tenant_gets_nothing(globex_client, people):
    sign_in(globex_client, people["acme_viewer"], "globex")
    for path in ["/", "/members/", "/audit/"]:
        response = globex_client.get(path)
        assert response.status_code == 403, path
        assert b"not a member" in response.content


def test_acme_session_is_void_on_the_globex_host(as_acme, people):
    client = as_acme("acme_owner")  # a member of both tenants
    cookie = client.cookies["fieldwatch_session"].value
    globex = Client(HTTP_HOST="globex.localhost")
    globex.cookies["fieldwatch_session"] = cookie  # replaying the acme cookie on globex
    response = globex.get("/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_session_cookie_is_host_only(acme_client, people, settings):
    assert settings.SESSION_COOKIE_DOMAIN is None
    response = acme_client.post(
        "/accounts/login/", {"login": "acme_viewer@example.com", "password": "correct-horse-battery-staple"}
    )
    assert response.status_code == 302
    morsel = response.cookies["fieldwatch_session"]
    assert morsel["domain"] == ""


def test_audit_rows_stay_in_their_tenant(acme, globex, as_acme):
    with schema_context("globex"):
        entry = record(None, "globex.secret", object_type="thing", object_id="42", object_repr="globex-only")
    response = as_acme("acme_admin").get("/audit/")
    assert b"globex-only" not in response.content
    assert as_acme("acme_admin").get(f"/audit/?q={entry.object_id}").content.count(b"globex-only") == 0
    with schema_context("acme"):
        assert not AuditLog.objects.filter(action="globex.secret").exists()


def test_member_of_another_tenant_by_id_is_404(as_acme, globex, people):
    from portal.tenancy.models import Membership

    foreign = Membership.objects.get(tenant=globex, user=people["globex_owner"])
    client = as_acme("acme_owner")
    with unchanged("acme"), unchanged("globex"):
        assert client.post(f"/members/{foreign.pk}/role/", {"role": "viewer"}).status_code == 404
        assert client.post(f"/members/{foreign.pk}/remove/").status_code == 404
    foreign.refresh_from_db()
    assert foreign.role == "owner"


def test_unknown_host_gets_a_clear_404(db):
    response = Client(HTTP_HOST="nobody.localhost").get("/")
    assert response.status_code == 404
    assert b"No organisation here" in response.content


def test_console_is_absent_on_tenant_hosts(as_acme, people):
    client = as_acme("acme_owner")
    assert client.get("/ops/").status_code == 404
    assert Client(HTTP_HOST="acme.localhost").get("/ops/").status_code == 404


def test_console_is_for_staff_on_the_public_site(public_client, people):
    sign_in(public_client, people["acme_owner"], "public")
    assert public_client.get("/ops/").status_code == 403
    sign_in_staff(public_client, people["staff"])
    response = public_client.get("/ops/")
    assert response.status_code == 200
    assert b"acme" in response.content and b"globex" in response.content


def test_suspended_tenant_shows_a_notice_and_refuses_devices(acme, as_acme):
    acme.is_active = False
    acme.save(update_fields=["is_active"])
    client = as_acme("acme_owner")
    response = client.get("/")
    assert response.status_code == 403
    assert b"is suspended" in response.content
    api = client.post("/api/device/events/", {}, content_type="application/json")
    assert api.status_code == 403
    assert api.json()["error"]["code"] == "tenant_suspended"
    assert client.get("/health/").status_code in (200, 503)


def test_cache_keys_carry_the_schema(acme, globex):
    from django.core.cache import cache

    with schema_context("acme"):
        cache.set("shared-name", "acme value")
    with schema_context("globex"):
        assert cache.get("shared-name") is None

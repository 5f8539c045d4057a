"""The operator console: who gets in (staff with a second factor, never on a tenant host), the
tenants list with figures measured in each schema, the tenant page, and its audit log."""

import csv
import io
import re
from datetime import timedelta

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY, format_hotp_value, hotp_value
from django.test import Client
from django.urls import reverse as reverse_any
from django.utils import timezone
from django_tenants.utils import schema_context
from helpers import PASSWORD, sign_in, sign_in_staff
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.audit.models import AuditLog
from portal.ops.log import READS
from portal.tenancy.models import Domain, Tenant

OPS_PATHS = [
    "/ops/",
    "/ops",
    "/ops/tenants/new/",
    "/ops/tenants/1/",
    "/ops/tenants/1/suspend/",
    "/ops/tenants/1/reactivate/",
    "/ops/tenants/1/domains/",
    "/ops/tenants/1/domains/1/remove/",
    "/ops/tenants/1/domains/1/primary/",
    "/ops/audit/",
    "/ops/telemetry",
    "/ops/telemetry/",
    "/ops/telemetry/drilldown",
    "/ops/telemetry/drilldown/",
    "/ops/telemetry/export",
    "/ops/telemetry/export/",
    "/ops/ingest/",
    "/ops/ingest/live/",
    "/ops/nothing-here/",
]


def reverse(name, args=None):
    return reverse_any(name, args=args, urlconf="portal.urls_public")


def ops_log(**filters):
    with schema_context("public"):
        return list(AuditLog.objects.filter(**filters).order_by("id"))


def tenant_log(schema, **filters):
    with schema_context(schema):
        return list(AuditLog.objects.filter(**filters).order_by("id"))


# --- who gets in ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", OPS_PATHS)
def test_every_console_url_is_404_on_a_tenant_host(path, as_acme, people):
    for client in (Client(HTTP_HOST="acme.localhost"), as_acme("acme_owner")):
        assert client.get(path).status_code == 404
        assert client.post(path).status_code == 404
    staff = sign_in(Client(HTTP_HOST="acme.localhost"), people["staff"], "acme")
    assert staff.get(path).status_code == 404


def test_the_console_urls_listed_here_are_all_of_them():
    from portal.ops.urls import urlpatterns

    listed = {re.sub(r"\d+", "<int>", path) for path in OPS_PATHS}
    for pattern in urlpatterns:
        route = "/" + re.sub(r"<int:\w+>", "<int>", str(pattern.pattern))
        assert route in listed, f"{route} is not checked for 404 on tenant hosts"


def test_anonymous_people_are_sent_to_sign_in(db, public_client):
    response = public_client.get("/ops/")
    assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


def test_members_who_are_not_staff_are_refused(public_client, people):
    sign_in(public_client, people["acme_owner"], "public")
    for path in ("/ops/", "/ops/audit/", "/ops/tenants/new/"):
        assert public_client.get(path).status_code == 403


def test_staff_without_two_factor_are_sent_to_enrol(public_client, people):
    sign_in_staff(public_client, people["staff"], enrolled=False, second_factor=False)
    response = public_client.get("/ops/audit/?q=x")
    assert response.status_code == 302
    assert response["Location"] == reverse("mfa_activate_totp") + "?next=%2Fops%2Faudit%2F%3Fq%3Dx"


def test_staff_whose_session_skipped_the_second_factor_must_present_it(public_client, people):
    sign_in_staff(public_client, people["staff"], enrolled=True, second_factor=False)
    response = public_client.get("/ops/")
    assert response.status_code == 302 and response["Location"].startswith(reverse("mfa_reauthenticate"))


def totp_now(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, int(timezone.now().timestamp()) // 30))


def test_staff_sign_in_lands_on_the_console_and_enrolment_lets_them_in(public_client, people):
    """The whole path as a person takes it: password, console, enrol with a real code, console."""
    from allauth.account.models import EmailAddress

    EmailAddress.objects.create(user=people["staff"], email="staff@example.com", verified=True, primary=True)
    response = public_client.post(reverse("account_login"), {"login": "staff@example.com", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("ops-tenant-list")
    response = public_client.get(response["Location"])
    assert response["Location"].startswith(reverse("mfa_activate_totp"))
    response = public_client.get(response["Location"], follow=True)
    if "password" in response.content.decode() and reverse("account_reauthenticate") in response.redirect_chain[-1][0]:
        response = public_client.post(response.redirect_chain[-1][0], {"password": PASSWORD}, follow=True)
    page = response.content.decode()
    assert response.status_code == 200 and 'name="code"' in page
    secret = public_client.session[SECRET_SESSION_KEY]  # the secret the QR code on the page shows
    response = public_client.post(reverse("mfa_activate_totp"), {"code": totp_now(secret)})
    assert response.status_code == 302 and response["Location"] == "/ops/"  # back where they were going
    assert Authenticator.objects.filter(user=people["staff"], type=Authenticator.Type.TOTP).exists()
    assert public_client.get("/ops/").status_code == 200


# --- tenants list: figures measured in each schema ---------------------------------------------


def fill_acme(readings_today=3, readings_yesterday=2):
    from portal.alerts.models import Alert
    from portal.facilities.models import Asset, DeviceBinding, Site
    from telemetry.models import Device, Reading, Sensor

    now = timezone.now()
    with schema_context("acme"):
        site = Site.objects.create(name="Plant")
        Site.objects.create(name="Depot")
        asset = Asset.objects.create(site=site, tag="CH-1")
        device = Device.objects.create(device_id="gw-1", last_seen=now)
        Device.objects.create(device_id="gw-2")
        DeviceBinding.objects.create(device=device, asset=asset)
        sensor = Sensor.objects.create(device=device, key="t")
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        today = [midnight + timedelta(seconds=n + 1) for n in range(readings_today)]
        yesterday = [midnight - timedelta(seconds=n + 1) for n in range(readings_yesterday)]
        Reading.objects.bulk_create([Reading(sensor=sensor, ts=ts, value=1.0) for ts in today + yesterday])
        Alert.objects.create(subject_key="s", severity="high", summary="hot", opened_at=now)
        Alert.objects.create(subject_key="s2", severity="high", summary="was hot", opened_at=now, resolved_at=now)


def row_of(html: str, name: str) -> str:
    rows = html.split('data-testid="tenant-row"')
    return next(row for row in rows[1:] if f">{name}</a>" in row)


def cell(row: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}">(.*?)</td>', row, re.S)
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def test_the_list_shows_each_tenants_own_figures(staff_client):
    fill_acme(readings_today=3, readings_yesterday=2)
    html = staff_client.get("/ops/").content.decode()
    acme, globex = row_of(html, "Acme"), row_of(html, "Globex")
    assert [cell(acme, n) for n in ("sites", "assets", "devices", "readings-today", "open-alerts")] == [
        "2",
        "1",
        "2",
        "3",
        "1",
    ]
    assert [cell(globex, n) for n in ("sites", "assets", "devices", "readings-today", "open-alerts")] == ["0"] * 5
    assert "seconds ago" in acme or "now" in acme  # the device seen just now is the last activity


def test_the_csv_has_the_same_figures_for_the_filtered_rows(staff_client):
    fill_acme()
    response = staff_client.get("/ops/", {"q": "acm", "export": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["slug"] for row in rows] == ["acme"]
    assert {k: rows[0][k] for k in ("sites", "assets", "devices", "readings_today", "open_alerts")} == {
        "sites": "2",
        "assets": "1",
        "devices": "2",
        "readings_today": "3",
        "open_alerts": "1",
    }
    assert rows[0]["last_activity"]


def test_the_list_costs_one_query_per_tenant_shown(staff_client, django_assert_max_num_queries):
    staff_client.get("/ops/")  # warm the session and the host cache
    with django_assert_max_num_queries(8 + 2 * Tenant.objects.customers().count()):
        assert staff_client.get("/ops/").status_code == 200


# --- create, suspend, reactivate ---------------------------------------------------------------


def test_creating_a_tenant_is_quick_and_logged(staff_client, people):
    response = staff_client.post(
        "/ops/tenants/new/", {"name": "Initech", "slug": "initech", "owner_email": "outsider@example.com"}
    )
    tenant = Tenant.objects.get(slug="initech")
    assert response.status_code == 302 and response["Location"] == reverse("ops-tenant-detail", args=[tenant.pk])
    assert tenant.memberships.get().user == people["outsider"]
    [entry] = ops_log(action="tenant.created", object_id=str(tenant.pk))
    assert entry.actor_email == "staff@example.com" and entry.changes["owner"] == "outsider@example.com"
    assert entry.changes["seconds"] < 30
    assert Client(HTTP_HOST="initech.localhost").get("/").status_code == 302  # served: sign in


def test_a_slug_whose_host_name_is_taken_is_refused(staff_client, acme):
    Domain.objects.create(tenant=acme, domain="initech.localhost", is_primary=False)
    response = staff_client.post("/ops/tenants/new/", {"name": "Initech", "slug": "initech"})
    assert response.status_code == 400 and "already serves another tenant" in response.content.decode()
    assert not Tenant.objects.filter(slug="initech").exists()


def test_suspending_and_reactivating_are_logged_in_both_logs(staff_client, acme):
    assert staff_client.post(f"/ops/tenants/{acme.pk}/suspend/").status_code == 302
    acme.refresh_from_db()
    assert not acme.is_active
    assert Client(HTTP_HOST="acme.localhost").post("/api/device/events/").status_code == 403
    staff_client.post(f"/ops/tenants/{acme.pk}/suspend/")  # a second click changes nothing
    assert len(ops_log(action="tenant.suspended")) == 1
    assert len(tenant_log("acme", action="tenant.suspended")) == 1
    staff_client.post(f"/ops/tenants/{acme.pk}/reactivate/")
    acme.refresh_from_db()
    assert acme.is_active
    assert [e.changes for e in ops_log(action="tenant.reactivated")] == [{"is_active": [False, True]}]


def test_suspend_is_post_only_and_the_public_tenant_is_not_a_customer(staff_client, acme):
    assert staff_client.get(f"/ops/tenants/{acme.pk}/suspend/").status_code == 405
    public = Tenant.objects.get(schema_name="public")
    assert staff_client.post(f"/ops/tenants/{public.pk}/suspend/").status_code == 404
    assert staff_client.get(f"/ops/tenants/{public.pk}/").status_code == 404
    assert staff_client.get("/ops/tenants/999999/").status_code == 404


# --- the tenant page and its domains -----------------------------------------------------------


def test_the_tenant_page_shows_usage_health_domains_and_members(staff_client, acme):
    fill_acme()
    html = staff_client.get(f"/ops/tenants/{acme.pk}/").content.decode()
    assert "acme.localhost" in html and "acme_owner@example.com" in html
    assert re.search(r'data-testid="readings-today">3<', html)
    assert "Devices online / offline" in html and "1 owner" in html


def test_opening_a_tenants_page_is_audited_and_left_out_of_its_console_actions(staff_client, acme):
    """The page shows the tenant's members (names, emails): staff reading it are in the ops log
    (seed 001: who, when, which tenant), not in the tenant's own log, and the page's list of
    console actions keeps to actions that changed something."""
    staff_client.post(f"/ops/tenants/{acme.pk}/suspend/")
    staff_client.get(f"/ops/tenants/{acme.pk}/")
    html = staff_client.get(f"/ops/tenants/{acme.pk}/").content.decode()
    viewed = ops_log(action="tenant.viewed")
    assert [(e.object_id, e.actor_email) for e in viewed] == [(str(acme.pk), "staff@example.com")] * 2
    assert not tenant_log("acme", action="tenant.viewed")
    history = html.split('data-testid="history"')[1]
    assert "tenant suspended" in history and "tenant viewed" not in history
    assert staff_client.get("/ops/tenants/999999/").status_code == 404
    assert len(ops_log(action="tenant.viewed")) == 2  # nothing read, nothing recorded


def test_domains_can_be_added_made_primary_and_removed(staff_client, acme):
    page = f"/ops/tenants/{acme.pk}/"
    response = staff_client.post(f"{page}domains/", {"domain": "Monitoring.Acme-Corp.example."}, follow=True)
    assert "Add monitoring.acme-corp.example to ALLOWED_HOSTS" in response.content.decode()
    staff_client.post(f"{page}domains/", {"domain": "acme-eu.localhost"})
    added = Domain.objects.get(domain="acme-eu.localhost")
    assert added.tenant == acme and not added.is_primary
    assert Client(HTTP_HOST="acme-eu.localhost").get("/").status_code == 302  # routed to acme: sign in
    old = Domain.objects.get(domain="acme.localhost")
    staff_client.post(f"{page}domains/{added.pk}/primary/")
    added.refresh_from_db(), old.refresh_from_db()
    assert added.is_primary and not old.is_primary
    response = staff_client.post(f"{page}domains/{added.pk}/remove/", follow=True)
    assert "make another one primary first" in response.content.decode()
    staff_client.post(f"{page}domains/{old.pk}/remove/")
    assert not Domain.objects.filter(pk=old.pk).exists()
    actions = [e.action for e in ops_log(object_id=str(acme.pk)) if e.action not in READS]
    assert actions == ["tenant.domain_added", "tenant.domain_added", "tenant.domain_primary", "tenant.domain_removed"]
    assert [e.action for e in tenant_log("acme", action__startswith="tenant.domain")] == actions


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ("localhost", "base domain"),
        ("globex.localhost", "already in use"),
        ("ops.localhost", "one free name"),
        ("a.b.localhost", "one free name"),
        ("-bad-.example", "Enter a host name"),
        ("nodots", "Enter a host name"),
        ("https://x.example/", "Enter a host name"),
        ("x" * 260, "at most 253"),
    ],
)
def test_bad_domains_are_refused_with_a_reason(staff_client, acme, domain, message):
    response = staff_client.post(f"/ops/tenants/{acme.pk}/domains/", {"domain": domain}, follow=True)
    assert message in response.content.decode()
    assert acme.domains.count() == 1
    assert not ops_log(action="tenant.domain_added")


def test_another_tenants_domain_is_404(staff_client, acme, globex):
    foreign = globex.domains.get()
    assert staff_client.post(f"/ops/tenants/{acme.pk}/domains/{foreign.pk}/primary/").status_code == 404
    assert staff_client.post(f"/ops/tenants/{acme.pk}/domains/{foreign.pk}/remove/").status_code == 404
    assert Domain.objects.filter(pk=foreign.pk, is_primary=True).exists()


# --- the console's audit log -------------------------------------------------------------------


def test_the_audit_page_and_csv_list_console_actions_only(staff_client, acme, as_acme):
    staff_client.post(f"/ops/tenants/{acme.pk}/suspend/")
    html = staff_client.get("/ops/audit/").content.decode()
    assert "Console audit log" in html and "tenant.suspended" in html
    response = staff_client.get("/ops/audit/", {"action": "tenant.suspended", "export": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["actor"], r["action"], r["object_id"]) for r in rows] == [
        ("staff@example.com", "tenant.suspended", str(acme.pk))
    ]


# --- fuzz: no 500 ------------------------------------------------------------------------------

text = st.text(max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(["/ops/", "/ops/audit/"]),
    params=st.dictionaries(
        st.sampled_from(["q", "is_active", "action", "actor", "since", "until", "sort", "page", "export"]),
        text,
        max_size=5,
    ),
)
def test_console_lists_never_500(staff_client, path, params):
    assert staff_client.get(path, params).status_code < 500


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    form=st.dictionaries(st.sampled_from(["name", "slug", "owner_email", "domain"]), text, max_size=4),
    action=st.sampled_from(["tenants/new/", "tenants/{pk}/domains/", "tenants/{pk}/", "tenants/{pk}/suspend/"]),
)
def test_console_forms_never_500(staff_client, acme, form, action):
    assert staff_client.post("/ops/" + action.format(pk=acme.pk), form).status_code < 500


def test_old_console_audit_rows_are_purged_like_tenant_ones(settings, acme):
    from portal.ops.tasks import purge_old_console_audit_rows

    with schema_context("public"):
        old = AuditLog.objects.create(action="tenant.suspended", object_id=str(acme.pk))
        recent = AuditLog.objects.create(action="tenant.reactivated", object_id=str(acme.pk))
        AuditLog.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=401))
    with schema_context("acme"):
        kept = AuditLog.objects.create(action="x")
        AuditLog.objects.filter(pk=kept.pk).update(created_at=timezone.now() - timedelta(days=401))
    assert purge_old_console_audit_rows.call_local() == 1
    console = [e.pk for e in ops_log()]
    assert old.pk not in console and recent.pk in console
    assert kept.pk in [e.pk for e in tenant_log("acme")]  # each tenant's log is its own task's

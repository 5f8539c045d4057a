import pytest
from helpers import unchanged

from portal.tenancy.models import Membership, Role


@pytest.mark.parametrize(
    "persona, status", [("acme_viewer", 403), ("acme_operator", 403), ("acme_admin", 200), ("acme_owner", 200)]
)
def test_only_admins_manage_members(as_acme, persona, status):
    assert as_acme(persona).get("/members/").status_code == status


@pytest.mark.parametrize("persona, status", [("acme_viewer", 403), ("acme_admin", 200)])
def test_only_admins_read_the_audit_log(as_acme, persona, status):
    assert as_acme(persona).get("/audit/").status_code == status


def test_admin_changes_a_role_and_it_is_audited(as_acme, acme, people):
    from django_tenants.utils import schema_context

    from portal.audit.models import AuditLog

    target = Membership.objects.get(tenant=acme, user=people["acme_viewer"])
    response = as_acme("acme_admin").post(f"/members/{target.pk}/role/", {"role": "operator"})
    assert response.status_code == 302
    target.refresh_from_db()
    assert target.role == Role.OPERATOR
    with schema_context("acme"):
        entry = AuditLog.objects.get(action="member.role_changed")
    assert entry.actor_email == "acme_admin@example.com"
    assert entry.changes == {"role": ["viewer", "operator"]}
    assert entry.ip == "127.0.0.1"


def test_admin_cannot_make_an_owner(as_acme, acme, people):
    target = Membership.objects.get(tenant=acme, user=people["acme_viewer"])
    client = as_acme("acme_admin")
    with unchanged():
        client.post(f"/members/{target.pk}/role/", {"role": "owner"})
    target.refresh_from_db()
    assert target.role == Role.VIEWER


def test_admin_cannot_touch_an_owner(as_acme, acme, people):
    owner = Membership.objects.get(tenant=acme, user=people["acme_owner"])
    client = as_acme("acme_admin")
    with unchanged():
        assert client.post(f"/members/{owner.pk}/remove/").status_code == 403
    assert Membership.objects.filter(pk=owner.pk).exists()


def test_the_last_owner_cannot_be_removed_or_demoted(as_acme, acme, people):
    owner = Membership.objects.get(tenant=acme, user=people["acme_owner"])
    client = as_acme("acme_owner")
    with unchanged():
        client.post(f"/members/{owner.pk}/remove/")
        client.post(f"/members/{owner.pk}/role/", {"role": "admin"})
    owner.refresh_from_db()
    assert owner.role == Role.OWNER
    messages = [str(m) for m in client.get("/members/").context["messages"]]
    assert any("last owner" in m for m in messages)


def test_owner_removes_a_member(as_acme, acme, people):
    target = Membership.objects.get(tenant=acme, user=people["acme_operator"])
    response = as_acme("acme_owner").post(f"/members/{target.pk}/remove/")
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=target.pk).exists()


def test_viewer_cannot_change_roles(as_acme, acme, people):
    target = Membership.objects.get(tenant=acme, user=people["acme_operator"])
    client = as_acme("acme_viewer")
    with unchanged():
        assert client.post(f"/members/{target.pk}/role/", {"role": "admin"}).status_code == 403
    target.refresh_from_db()
    assert target.role == Role.OPERATOR


def test_members_csv_equals_the_filtered_rows(as_acme):
    client = as_acme("acme_admin")
    page = client.get("/members/?role=operator")
    csv_body = b"".join(client.get("/members/?role=operator&export=csv").streaming_content).decode()
    lines = csv_body.strip().splitlines()
    assert lines[0] == "email,name,role,joined"
    assert [line.split(",")[0] for line in lines[1:]] == [m.user.email for m in page.context["rows"]]
    assert lines[1].startswith("acme_operator@example.com")


def test_members_table_partial_for_htmx(as_acme):
    response = as_acme("acme_admin").get("/members/?q=viewer", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"<html" not in response.content
    assert b"acme_viewer@example.com" in response.content
    assert b"acme_owner@example.com" not in response.content


def test_filter_form_submits_to_the_bare_path(as_acme):
    """htmx appends the form's fields to hx-get; the current query string must not be repeated."""
    response = as_acme("acme_admin").get("/members/?role=viewer")
    assert b'hx-get="/members/"' in response.content and b'action="/members/"' in response.content


def test_htmx_history_restore_gets_the_whole_page(as_acme):
    response = as_acme("acme_admin").get("/members/", HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert b"<html" in response.content


def test_audit_log_filters_by_action(as_acme, acme, people):
    from django_tenants.utils import schema_context

    from portal.audit.log import record

    with schema_context("acme"):
        record(None, "site.created", object_type="site", object_id="1", object_repr="North")
        record(None, "asset.deleted", object_type="asset", object_id="2", object_repr="Old chiller")
    response = as_acme("acme_admin").get("/audit/?action=site.created")
    assert [e.action for e in response.context["rows"]] == ["site.created"]
    assert b'<option value="asset.deleted">' in response.content

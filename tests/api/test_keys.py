"""The API keys page (/settings/api-keys/): admins list, create and revoke keys; all audited."""

import pytest
from api.bulk_helpers import BULK_URL, equipment, gz, post
from django_tenants.utils import schema_context
from helpers import unchanged

from portal.api.models import ApiKey
from portal.audit.models import AuditLog
from telemetry.models import hash_token

PAGE = "/settings/api-keys/"


def keys_in(schema="acme"):
    with schema_context(schema):
        return list(ApiKey.objects.order_by("pk"))


def audit(action):
    with schema_context("acme"):
        return list(AuditLog.objects.filter(action=action))


@pytest.mark.parametrize(
    "persona, status", [("acme_viewer", 403), ("acme_operator", 403), ("acme_admin", 200), ("acme_owner", 200)]
)
def test_only_admins_see_the_page(as_acme, persona, status):
    assert as_acme(persona).get(PAGE).status_code == status


@pytest.mark.parametrize("persona", ["acme_viewer", "acme_operator"])
def test_non_admins_cannot_create_or_revoke(as_acme, persona):
    with schema_context("acme"):
        key, _ = ApiKey.issue("existing")
    client = as_acme(persona)
    with unchanged():
        assert client.post(PAGE, {"name": "sneaky"}).status_code == 403
        assert client.post(f"{PAGE}{key.pk}/revoke/").status_code == 403
    assert [k.name for k in keys_in()] == ["existing"] and keys_in()[0].revoked_at is None


def test_people_of_no_membership_and_anonymous_get_nothing(acme_client, people):
    assert acme_client.get(PAGE).status_code == 302  # to sign in
    from helpers import sign_in

    assert sign_in(acme_client, people["outsider"], "acme").get(PAGE).status_code == 403


def test_an_admin_creates_a_key_and_sees_it_once(as_acme, people):
    client = as_acme("acme_admin")
    response = client.post(PAGE, {"name": "Home Assistant"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    (key,) = keys_in()
    raw = response.context["raw_key"]
    assert raw.startswith("fwk_") and raw.startswith(key.prefix) and key.key_hash == hash_token(raw)
    assert raw in response.content.decode()
    assert (key.name, key.created_by_id) == ("Home Assistant", people["acme_admin"].pk)
    (entry,) = audit("api_key.created")
    assert entry.actor_email == "acme_admin@example.com" and entry.object_id == str(key.pk)
    assert entry.changes == {"name": "Home Assistant", "prefix": key.prefix, "role": "operator"} and raw not in str(
        entry.changes
    )
    # afterwards the page lists it by prefix only
    page = client.get(PAGE).content.decode()
    assert key.prefix in page and raw not in page and "Home Assistant" in page


def test_the_new_key_uploads_telemetry(as_acme, acme_client):
    raw = as_acme("acme_admin").post(PAGE, {"name": "uploader"}).context["raw_key"]
    assert post(acme_client, gz([equipment()]), raw).status_code == 200
    assert keys_in()[0].last_used_at is not None


def test_a_key_needs_a_name(as_acme):
    response = as_acme("acme_admin").post(PAGE, {"name": "  "})
    assert response.status_code == 400 and keys_in() == []
    assert "This field is required" in response.content.decode()


def test_an_admin_revokes_a_key_and_it_stops_working(as_acme, acme_client):
    client = as_acme("acme_admin")
    raw = client.post(PAGE, {"name": "old"}).context["raw_key"]
    key = keys_in()[0]
    response = client.post(f"{PAGE}{key.pk}/revoke/")
    assert response.status_code == 302 and response["Location"] == PAGE
    assert keys_in()[0].revoked_at is not None
    assert [e.object_id for e in audit("api_key.revoked")] == [str(key.pk)]
    assert client.post(f"{PAGE}{key.pk}/revoke/").status_code == 302
    assert len(audit("api_key.revoked")) == 1  # revoking again changes nothing, audits nothing
    assert acme_client.post(BULK_URL, gz([]), content_type="application/json", HTTP_X_API_KEY=raw).status_code == 401
    assert "revoked" in client.get(PAGE).content.decode()


def test_revoking_needs_a_post(as_acme):
    with schema_context("acme"):
        key, _ = ApiKey.issue("k")
    assert as_acme("acme_admin").get(f"{PAGE}{key.pk}/revoke/").status_code == 405


def test_a_key_of_another_tenant_is_404(as_acme):
    with schema_context("globex"):
        key, _ = ApiKey.issue("globex key")
    client = as_acme("acme_admin")
    with unchanged("acme"), unchanged("globex"):
        assert client.post(f"{PAGE}{key.pk}/revoke/").status_code == 404
    assert keys_in("globex")[0].revoked_at is None


def test_the_list_filters_and_exports_csv(as_acme):
    with schema_context("acme"):
        ApiKey.issue("alpha")
        ApiKey.issue("beta")[0].revoke()
    client = as_acme("acme_admin")
    assert client.get(PAGE, {"status": "revoked"}).context["page"].paginator.count == 1
    assert [k.name for k in client.get(PAGE, {"q": "alp"}).context["rows"]] == ["alpha"]
    csv = client.get(PAGE, {"export": "csv", "sort": "name"})
    lines = b"".join(csv.streaming_content).decode().splitlines()
    assert lines[0] == "name,role,prefix,created_by,created_at,last_used_at,revoked_at"
    assert [line.split(",")[0] for line in lines[1:]] == ["alpha", "beta"]


def test_htmx_gets_the_table_only(as_acme):
    response = as_acme("acme_admin").get(PAGE, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "<nav" not in response.content.decode()


def test_the_admin_menu_links_the_page(as_acme):
    assert f'href="{PAGE}"' in as_acme("acme_admin").get("/").content.decode()


def test_an_admin_chooses_the_keys_role(as_acme):
    response = as_acme("acme_admin").post(PAGE, {"name": "reader", "role": "viewer"})
    assert response.status_code == 200
    (key,) = keys_in()
    assert key.role == "viewer"
    assert as_acme("acme_admin").post(PAGE, {"name": "root", "role": "owner"}).status_code == 400  # never an owner

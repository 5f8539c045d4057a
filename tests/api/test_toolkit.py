"""The JSON API toolkit (portal.api.toolkit), through real routes (seed 003's outlets): each way in
(API key, access token, session with CSRF), the role checks, the one error shape, pagination."""

import json

import pytest
from django.conf import settings as conf
from django.test import Client, RequestFactory
from django_tenants.utils import schema_context
from helpers import PASSWORD, sign_in
from pydantic import ValidationError

from portal.api.models import ApiKey
from portal.api.toolkit import PageNumber
from portal.audit.models import AuditLog
from portal.outlets.models import Outlet

OUTLETS = "/api/outlets/"
NEW = {"name": "Riverside", "address": "1 Quay", "contact_person": "Ana"}


def key(role: str, schema: str = "acme") -> str:
    with schema_context(schema):
        return ApiKey.issue(f"{role} key", role=role)[1]


def post(client: Client, path: str, body, **headers):
    return client.post(path, json.dumps(body), content_type="application/json", **headers)


def token_for(client: Client, person) -> str:
    response = post(client, "/api/v1/auth/login", {"username": person.email, "password": PASSWORD})
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"], body
    return body["error"]


# --- each way in --------------------------------------------------------------------------------


def test_nobody_gets_401_in_the_error_shape(acme_client, db):
    assert_error(acme_client.get(OUTLETS), 401, "unauthenticated")


def test_an_api_key_reads_and_its_role_decides_what_it_writes(acme_client, db):
    viewer, admin = key("viewer"), key("admin")
    assert acme_client.get(OUTLETS, HTTP_X_API_KEY=viewer).status_code == 200
    assert_error(post(acme_client, OUTLETS, NEW, HTTP_X_API_KEY=viewer), 403, "forbidden")
    created = post(acme_client, OUTLETS, NEW, HTTP_X_API_KEY=admin)
    assert created.status_code == 201 and created.json()["name"] == "Riverside"
    # a key as a bearer token works the same
    assert acme_client.get(OUTLETS, HTTP_AUTHORIZATION=f"Bearer {viewer}").json()[0]["name"] == "Riverside"


def test_a_revoked_key_and_another_tenants_key_are_401(acme_client, db):
    raw = key("admin")
    with schema_context("acme"):
        ApiKey.objects.get(key_hash__isnull=False, name="admin key").revoke()
    assert_error(acme_client.get(OUTLETS, HTTP_X_API_KEY=raw), 401, "invalid_api_key")
    assert_error(acme_client.get(OUTLETS, HTTP_X_API_KEY=key("admin", "globex")), 401, "invalid_api_key")


def test_an_access_token_carries_its_members_role(acme_client, people):
    viewer = token_for(acme_client, people["acme_viewer"])
    admin = token_for(acme_client, people["acme_admin"])
    assert acme_client.get(OUTLETS, HTTP_AUTHORIZATION=f"Bearer {viewer}").status_code == 200
    assert_error(post(acme_client, OUTLETS, NEW, HTTP_AUTHORIZATION=f"Bearer {viewer}"), 403, "forbidden")
    assert post(acme_client, OUTLETS, NEW, HTTP_AUTHORIZATION=f"Bearer {admin}").status_code == 201
    with schema_context("acme"):
        entry = AuditLog.objects.get(action="outlet.created")
    assert entry.actor_email == "acme_admin@example.com"


def test_an_access_token_of_another_tenant_is_401(acme_client, globex_client, people):
    token = token_for(acme_client, people["acme_owner"])  # acme's owner is a member of both
    assert_error(globex_client.get(OUTLETS, HTTP_AUTHORIZATION=f"Bearer {token}"), 401, "invalid_token")


def test_a_device_token_is_not_an_access_token(acme_client, db):
    assert_error(acme_client.get(OUTLETS, HTTP_AUTHORIZATION="Bearer not-a-signed-token"), 401, "invalid_token")


def test_a_session_needs_the_csrf_token_on_writes_only(people):
    client = sign_in(Client(HTTP_HOST="acme.localhost", enforce_csrf_checks=True), people["acme_admin"], "acme")
    assert client.get(OUTLETS).status_code == 200  # reads need no token
    assert_error(post(client, OUTLETS, NEW), 403, "csrf_failed")
    client.get("/api/auth/check/")  # sets the csrftoken cookie
    csrf = client.cookies[conf.CSRF_COOKIE_NAME].value
    assert post(client, OUTLETS, NEW, HTTP_X_CSRFTOKEN=csrf).status_code == 201


def test_a_session_carries_the_members_role(people):
    client = sign_in(Client(HTTP_HOST="acme.localhost"), people["acme_operator"], "acme")
    assert_error(post(client, OUTLETS, NEW), 403, "forbidden")


def test_a_signed_in_non_member_is_401(acme_client, people):
    assert_error(sign_in(acme_client, people["outsider"], "acme").get(OUTLETS), 401, "unauthenticated")


def test_api_keys_are_rate_limited(acme_client, db, settings):
    settings.FIELDWATCH_KEY_RATE = "2/60"
    raw = key("viewer")
    assert [acme_client.get(OUTLETS, HTTP_X_API_KEY=raw).status_code for _ in range(3)] == [200, 200, 429]
    assert acme_client.get(OUTLETS, HTTP_X_API_KEY=raw)["Retry-After"]


# --- session sign-in on seed 003's paths ------------------------------------------------------------


def test_login_check_user_and_logout_answer_seed_003s_shapes(people):
    client = Client(HTTP_HOST="acme.localhost", enforce_csrf_checks=True)
    assert client.get("/api/auth/check/").json() == {"authenticated": False, "user": None}
    response = post(client, "/api/auth/login/", {"username": "acme_viewer@example.com", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["user"]["email"] == "acme_viewer@example.com"
    assert set(body["user"]) >= {"id", "username", "email", "first_name", "last_name", "is_staff", "is_superuser"}
    assert client.get("/api/auth/check/").json()["authenticated"] is True
    assert client.get("/api/auth/user/").json()["user"]["role"] == "viewer"
    assert_error(client.post("/api/auth/logout/"), 403, "csrf_failed")
    logout = client.post("/api/auth/logout/", HTTP_X_CSRFTOKEN=client.cookies[conf.CSRF_COOKIE_NAME].value)
    assert logout.json() == {"success": True, "message": "Successfully logged out"}
    assert client.get("/api/auth/check/").json()["authenticated"] is False


def test_login_refuses_wrong_passwords_and_non_members(acme_client, people):
    wrong = post(acme_client, "/api/auth/login/", {"username": "acme_viewer@example.com", "password": "nope"})
    assert_error(wrong, 401, "invalid_credentials")
    outsider = post(acme_client, "/api/auth/login/", {"username": "outsider@example.com", "password": PASSWORD})
    assert_error(outsider, 401, "invalid_credentials")


@pytest.mark.parametrize("path, field", [("/api/auth/login/", "username"), ("/api/v1/auth/login/", "email")])
def test_a_login_with_a_nul_or_control_character_is_a_400_naming_the_field(acme_client, people, path, field):
    # The email is looked up in the database, which cannot store NUL: a 500 the OpenAPI fuzz found.
    for bad in ("acme_viewer@example.com\x00", "acme\x07viewer@example.com"):
        response = post(acme_client, path, {field: bad, "password": PASSWORD})
        assert_error(response, 400, "invalid_request")
        assert field in response.json()["error"]["message"]


def test_register_is_refused_people_join_by_invitation(acme_client, db):
    assert_error(post(acme_client, "/api/auth/register/", {"username": "x"}), 403, "invitation_required")


# --- the error shape --------------------------------------------------------------------------------


def test_validation_errors_name_each_field(acme_client, db):
    error = assert_error(
        post(acme_client, OUTLETS, {"name": "x" * 151, "total_sva": -1}, HTTP_X_API_KEY=key("admin")),
        400,
        "invalid_request",
    )
    assert set(error["fields"]) == {"name", "total_sva"}


def test_text_the_database_cannot_store_is_a_400(acme_client, db):
    response = post(acme_client, OUTLETS, {"name": "bad\u0000name"}, HTTP_X_API_KEY=key("admin"))
    assert assert_error(response, 400, "invalid_request")["fields"] == {"name": "must not contain control characters"}


def test_malformed_json_and_wrong_query_values_are_400(acme_client, db):
    raw = key("admin")
    response = acme_client.post(OUTLETS, "{", content_type="application/json", HTTP_X_API_KEY=raw)
    assert_error(response, 400, "bad_request")
    assert_error(acme_client.get(OUTLETS, {"is_active": "perhaps"}, HTTP_X_API_KEY=raw), 400, "invalid_request")


def test_a_wrong_method_is_405_with_allow(acme_client, db):
    response = acme_client.patch(OUTLETS, HTTP_X_API_KEY=key("admin"))
    assert_error(response, 405, "method_not_allowed")
    assert set(response["Allow"].split(", ")) == {"GET", "POST"}


def test_a_large_body_is_413_before_it_is_read(acme_client, db):
    body = {"name": "a", "address": "x" * 70_000}
    assert_error(post(acme_client, OUTLETS, body, HTTP_X_API_KEY=key("admin")), 413, "too_large")


def test_an_unknown_object_is_404_and_another_tenants_too(acme_client, globex_client, db):
    with schema_context("acme"):
        outlet = Outlet.objects.create(name="Acme only")
    assert_error(acme_client.get("/api/outlets/999999/", HTTP_X_API_KEY=key("viewer")), 404, "not_found")
    globex = key("viewer", "globex")
    assert_error(globex_client.get(f"/api/outlets/{outlet.pk}/", HTTP_X_API_KEY=globex), 404, "not_found")


# --- pagination ---------------------------------------------------------------------------------------


def test_seed_003_lists_are_plain_arrays_bounded_by_limit_and_offset(acme_client, db):
    with schema_context("acme"):
        Outlet.objects.bulk_create([Outlet(name=f"Outlet {n:02}") for n in range(5)])
    raw = key("viewer")
    page = acme_client.get(OUTLETS, {"limit": 2, "offset": 1}, HTTP_X_API_KEY=raw).json()
    assert [row["name"] for row in page] == ["Outlet 01", "Outlet 02"]
    assert len(acme_client.get(OUTLETS, HTTP_X_API_KEY=raw).json()) == 5
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
        assert_error(acme_client.get(OUTLETS, bad, HTTP_X_API_KEY=raw), 400, "invalid_request")


def paged(items, **query):
    request = RequestFactory().get("/api/v1/devices/", query, HTTP_HOST="acme.localhost")
    return PageNumber().paginate_queryset(items, PageNumber.Input(**query), request)


def test_page_number_pages_answer_count_next_previous_and_results():
    first = paged(list(range(45)), page_size=20)
    assert (first["count"], first["total_pages"], first["current_page"], first["results"]) == (
        45,
        3,
        1,
        list(range(20)),
    )
    assert first["previous"] is None and first["next"] == "http://acme.localhost/api/v1/devices/?page_size=20&page=2"
    last = paged(list(range(45)), page=3, page_size=20)
    assert last["results"] == list(range(40, 45)) and last["next"] is None and "page=2" in last["previous"]
    assert paged([], page=1)["results"] == [] and paged([], page=1)["total_pages"] == 1


def test_page_number_bounds_are_enforced():
    for bad in ({"page": 0}, {"page_size": 0}, {"page_size": 101}):
        with pytest.raises(ValidationError):
            PageNumber.Input(**bad)
    from portal.api.endpoint import ApiError

    with pytest.raises(ApiError) as error:
        paged(list(range(5)), page=2, page_size=20)
    assert error.value.status == 404

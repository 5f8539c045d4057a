"""Seed 000's cookie sign-in (/auth/login/, refresh/, logout/, me/, change-password/) on tenant
hosts and its organisation sign-up (/auth/register/) on the public host."""

from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.core import mail
from django.test import Client
from django_tenants.utils import schema_context
from helpers import PASSWORD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.accounts.models import User
from portal.audit.models import AuditLog
from portal.tenancy.models import Membership, Role, Tenant

NEW_PASSWORD = "another-long-passphrase-42"


def browser(host="acme.localhost") -> Client:
    """A client that is refused without the CSRF token, as a browser's request would be."""
    return Client(HTTP_HOST=host, enforce_csrf_checks=True)


def login(client, email="acme_admin@example.com", password=PASSWORD, **extra):
    return client.post("/auth/login/", {"email": email, "password": password}, content_type="application/json", **extra)


def csrf(client) -> dict:
    return {"HTTP_X_CSRFTOKEN": client.cookies["fieldwatch_csrftoken"].value}


def acme_log(**filters) -> list:
    with schema_context("acme"):
        return list(AuditLog.objects.filter(**filters).order_by("id"))


# --- login and the cookies ------------------------------------------------------------------------


def test_login_sets_httponly_cookies_of_15_minutes_and_7_days(people, settings):
    client = browser()
    response = login(client)
    assert response.status_code == 200
    assert response.json()["message"] == "Login successful"
    assert response.json()["user"] | {"date_joined": None} == {
        "id": people["acme_admin"].pk,
        "email": "acme_admin@example.com",
        "name": "Acme Admin",
        "role": "admin",
        "is_staff": False,
        "date_joined": None,
    }
    access, refresh = response.cookies["access_token"], response.cookies["refresh_token"]
    assert access["httponly"] and refresh["httponly"]
    assert access["max-age"] == 15 * 60 and refresh["max-age"] == 7 * 86400
    assert access["samesite"] == refresh["samesite"] == "Lax"
    assert access["path"] == "/" and refresh["path"] == "/auth/"  # the long-lived one goes to /auth/ only
    assert not access["domain"]  # host-only: never sent to another tenant's host
    assert "access_token" not in response.content.decode()  # scripts on the page never see a token
    assert response.cookies["fieldwatch_csrftoken"].value
    [entry] = acme_log(action="user.signed_in")
    assert entry.actor_email == "acme_admin@example.com" and entry.changes == {"via": "seed 000 cookies"}


def test_cookies_are_secure_in_production(people, settings):
    settings.SESSION_COOKIE_SECURE = True
    response = login(browser())
    assert response.cookies["access_token"]["secure"] and response.cookies["refresh_token"]["secure"]


def test_the_access_cookie_opens_seed_000s_api_and_me(people):
    client = browser()
    login(client)
    assert client.get("/auth/me/").json()["email"] == "acme_admin@example.com"
    assert client.get("/assets/sites/").status_code == 200
    anonymous = browser()
    assert anonymous.get("/auth/me/").status_code == 401
    assert anonymous.get("/assets/sites/").status_code == 401


@pytest.mark.parametrize(
    ("email", "password"),
    [("acme_admin@example.com", "wrong"), ("nobody@example.com", PASSWORD), ("outsider@example.com", PASSWORD)],
)
def test_wrong_passwords_and_non_members_get_401_and_no_cookie(people, email, password):
    response = login(browser(), email, password)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_credentials"
    assert "access_token" not in response.cookies
    assert not acme_log(action="user.signed_in")


def test_an_account_with_two_factor_is_refused(people):
    Authenticator.objects.create(
        user=people["acme_admin"], type=Authenticator.Type.TOTP, data={"secret": "JBSWY3DPEHPK3PXP"}
    )
    response = login(browser())
    assert response.status_code == 401 and response.json()["error"]["code"] == "two_factor_required"
    assert "access_token" not in response.cookies


@pytest.mark.parametrize(
    "body",
    [
        {"email": "acme_admin\x00@example.com", "password": PASSWORD},
        {"email": "", "password": PASSWORD},
        {"email": "a" * 300, "password": PASSWORD},
        {"email": "acme_admin@example.com"},
        {"email": 1, "password": 2},
        [1, 2],
    ],
)
def test_bad_login_bodies_are_400_naming_the_field(people, body):
    response = browser().post("/auth/login/", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


def test_logins_are_limited_per_address_and_per_email(people):
    client = browser()
    for _ in range(10):
        assert login(client, password="wrong").status_code == 401
    response = login(client)  # even the right password waits
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1
    assert login(browser(), "acme_admin@example.com", REMOTE_ADDR="10.9.9.9").status_code == 429  # per email too
    assert login(browser(), "acme_viewer@example.com", REMOTE_ADDR="10.9.9.8").status_code == 200


def test_an_acme_cookie_is_nothing_on_globex(people):
    client = browser()
    login(client, "acme_owner@example.com")  # a member of globex too: the token names acme
    other = browser("globex.localhost")
    other.cookies = client.cookies
    assert other.get("/auth/me/").status_code == 401
    assert other.post("/auth/refresh/", **csrf(client)).status_code == 401


# --- CSRF on what the cookies drive --------------------------------------------------------------


def test_cookie_writes_need_the_csrf_token_reads_do_not(people):
    client = browser()
    login(client)
    response = client.patch("/auth/me/", {"name": "Ada Admin"}, content_type="application/json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "csrf_failed"
    response = client.post("/assets/sites/", {"name": "Depot"}, content_type="application/json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "csrf_failed"
    wrong = {"HTTP_X_CSRFTOKEN": "x" * 32}
    assert client.patch("/auth/me/", {"name": "Ada"}, content_type="application/json", **wrong).status_code == 403
    assert client.post("/auth/refresh/").status_code == 403
    assert client.post("/auth/logout/").status_code == 403
    assert client.post("/auth/change-password/", {}, content_type="application/json").status_code == 403
    people["acme_admin"].refresh_from_db()
    assert people["acme_admin"].name == "Acme Admin"
    assert client.get("/auth/me/").status_code == 200
    response = client.post("/assets/sites/", {"name": "Depot"}, content_type="application/json", **csrf(client))
    assert response.status_code == 201


def test_patch_me_changes_the_name_and_is_audited(people):
    client = browser()
    login(client)
    response = client.patch("/auth/me/", {"name": "  Ada Admin "}, content_type="application/json", **csrf(client))
    assert response.status_code == 200 and response.json()["name"] == "Ada Admin"
    people["acme_admin"].refresh_from_db()
    assert people["acme_admin"].name == "Ada Admin"
    [entry] = acme_log(action="user.profile_changed")
    assert entry.changes == {"name": ["Acme Admin", "Ada Admin"]} and entry.actor_email == "acme_admin@example.com"
    for body in ({"email": "evil@example.com"}, {"name": "x\x00"}, {"name": "x" * 151}, {}):
        response = client.patch("/auth/me/", body, content_type="application/json", **csrf(client))
        assert response.status_code == 400, body
    people["acme_admin"].refresh_from_db()
    assert people["acme_admin"].email == "acme_admin@example.com"


def test_me_with_an_api_key_is_no_person(people):
    from api.bulk_helpers import make_key

    response = Client(HTTP_HOST="acme.localhost").get("/auth/me/", HTTP_X_API_KEY=make_key("acme"))
    assert response.status_code == 400 and response.json()["error"]["code"] == "not_a_person"


def test_me_with_a_session_or_a_bearer_token(as_acme, people):
    assert as_acme("acme_viewer").get("/auth/me/").json()["role"] == "viewer"
    tokens = Client(HTTP_HOST="acme.localhost").post(
        "/api/v1/auth/login", {"username": "acme_operator@example.com", "password": PASSWORD}, "application/json"
    )
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {tokens.json()['access_token']}"}
    assert Client(HTTP_HOST="acme.localhost").get("/auth/me/", **bearer).json()["role"] == "operator"


# --- refresh and logout --------------------------------------------------------------------------


def test_an_expired_access_cookie_is_401_and_refresh_gives_a_new_one(people, settings, time_machine):
    time_machine.move_to("2026-11-20 12:00Z", tick=False)
    client = browser()
    login(client)
    time_machine.shift(timedelta(seconds=settings.API_TOKEN_SECONDS + 1))
    response = client.get("/auth/me/")
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_expired"
    response = client.post("/auth/refresh/", **csrf(client))
    assert response.status_code == 200 and response.json() == {"message": "Token refreshed"}
    assert response.cookies["access_token"]["max-age"] == 15 * 60
    assert client.get("/auth/me/").status_code == 200
    time_machine.shift(timedelta(seconds=settings.API_REFRESH_SECONDS + 1))
    assert client.post("/auth/refresh/", **csrf(client)).status_code == 401


def test_refresh_without_a_cookie_or_for_a_removed_member_is_401(people, acme):
    assert browser().post("/auth/refresh/").status_code == 401
    client = browser()
    login(client)
    Membership.objects.filter(user=people["acme_admin"], tenant=acme).delete()
    assert client.post("/auth/refresh/", **csrf(client)).status_code == 401
    assert client.get("/auth/me/").status_code == 401


def test_logout_clears_the_cookies_and_revokes_both_tokens(people):
    client = browser()
    login(client)
    access, refresh = client.cookies["access_token"].value, client.cookies["refresh_token"].value
    response = client.post("/auth/logout/", **csrf(client))
    assert response.status_code == 200 and response.json() == {"message": "Logout successful"}
    assert response.cookies["access_token"]["max-age"] == 0 and response.cookies["refresh_token"]["max-age"] == 0
    assert response.cookies["refresh_token"]["path"] == "/auth/"
    [entry] = acme_log(action="user.signed_out")
    assert entry.actor_email == "acme_admin@example.com"
    replay = browser()  # a copy of the cookies kept by someone else
    replay.cookies["access_token"], replay.cookies["refresh_token"] = access, refresh
    replay.cookies["fieldwatch_csrftoken"] = client.cookies["fieldwatch_csrftoken"].value
    response = replay.get("/auth/me/")
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_revoked"
    assert replay.post("/auth/refresh/", **csrf(client)).status_code == 401
    assert browser().post("/auth/logout/").status_code == 200  # nothing to sign out of: still fine


# --- change-password -----------------------------------------------------------------------------


def change(client, old=PASSWORD, new=NEW_PASSWORD):
    body = {"old_password": old, "new_password": new}
    return client.post("/auth/change-password/", body, content_type="application/json", **csrf(client))


def test_changing_the_password_ends_older_tokens_and_keeps_this_client_in(people):
    client = browser()
    login(client)
    other_device = browser()
    login(other_device)
    seed_004 = Client(HTTP_HOST="acme.localhost").post(
        "/api/v1/auth/login/", {"email": "acme_admin@example.com", "password": PASSWORD}, "application/json"
    )
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {seed_004.json()['tokens']['access']}"}
    assert Client(HTTP_HOST="acme.localhost").get("/auth/me/", **bearer).status_code == 200

    response = change(client)
    assert response.status_code == 200 and response.json() == {"message": "Password changed"}
    people["acme_admin"].refresh_from_db()
    assert people["acme_admin"].check_password(NEW_PASSWORD)
    [entry] = acme_log(action="user.password_changed")
    assert entry.actor_email == "acme_admin@example.com"
    assert client.get("/auth/me/").status_code == 200  # fresh cookies came with the answer
    assert client.post("/auth/refresh/", **csrf(client)).status_code == 200
    for stale in (other_device.get("/auth/me/"), Client(HTTP_HOST="acme.localhost").get("/auth/me/", **bearer)):
        assert stale.status_code == 401 and stale.json()["error"]["code"] == "token_revoked"
    assert other_device.post("/auth/refresh/", **csrf(other_device)).status_code == 401
    assert login(browser()).status_code == 401
    assert login(browser(), password=NEW_PASSWORD).status_code == 200


def test_a_wrong_old_password_or_a_weak_new_one_changes_nothing(people):
    client = browser()
    login(client)
    response = change(client, old="wrong")
    assert response.status_code == 400 and response.json()["error"]["fields"] == {"old_password": "is wrong"}
    response = change(client, new="123")
    assert response.status_code == 400 and "new_password" in response.json()["error"]["fields"]
    response = change(client, new="acme_admin@example.com")
    assert response.status_code == 400 and "too similar" in response.json()["error"]["message"]
    people["acme_admin"].refresh_from_db()
    assert people["acme_admin"].check_password(PASSWORD)
    assert not acme_log(action="user.password_changed")


def test_old_password_guesses_are_limited(people):
    client = browser()
    login(client)
    for _ in range(10):
        assert change(client, old="wrong").status_code == 400
    assert change(client).status_code == 429


def test_a_session_changing_its_password_stays_signed_in(as_acme, people):
    client = as_acme("acme_operator")
    body = {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert client.post("/auth/change-password/", body, content_type="application/json").status_code == 200
    assert client.get("/auth/me/").status_code == 200
    people["acme_operator"].refresh_from_db()
    assert people["acme_operator"].check_password(NEW_PASSWORD)


# --- register (the public host) ------------------------------------------------------------------

SIGNUP = {"organisation": "Initech Refrigeration", "email": "peter@initech.example", "password": "a-long-passphrase-9"}


def register(body, host="localhost"):
    return Client(HTTP_HOST=host).post("/auth/register/", body, content_type="application/json")


def test_register_creates_an_organisation_owned_by_the_person_as_the_site_does(db):
    response = register(SIGNUP | {"name": "Peter Gibbons"})
    assert response.status_code == 201
    assert response.json()["email"] == "peter@initech.example" and "confirm" in response.json()["message"]
    tenant = Tenant.objects.get(slug="initech-refrigeration")
    user = User.objects.get(email="peter@initech.example")
    assert user.name == "Peter Gibbons" and user.check_password(SIGNUP["password"])
    assert Membership.objects.get(user=user, tenant=tenant).role == Role.OWNER
    with schema_context(tenant.schema_name):
        assert AuditLog.objects.filter(action="tenant.created").exists()
    assert "confirm" in mail.outbox[-1].body.lower() and mail.outbox[-1].to == ["peter@initech.example"]
    # as on the site, no sign-in before the address is confirmed
    host = browser("initech-refrigeration.localhost")
    response = login(host, SIGNUP["email"], SIGNUP["password"])
    assert response.status_code == 403 and response.json()["error"]["code"] == "email_unconfirmed"
    assert "access_token" not in response.cookies
    EmailAddress.objects.filter(user=user).update(verified=True)
    assert login(host, SIGNUP["email"], SIGNUP["password"]).json()["user"]["role"] == "owner"


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/v1/auth/login", {"username": SIGNUP["email"]}),  # seed 002
        ("/api/auth/login/", {"username": SIGNUP["email"]}),  # seed 003's session
        ("/api/v1/auth/login/", {"email": SIGNUP["email"]}),  # seed 004
    ],
)
def test_no_api_login_opens_an_unconfirmed_account(db, path, body):
    """A self-registered owner who has not confirmed the address gets no tokens or session from
    any API login either (the site's mandatory confirmation)."""
    assert register(SIGNUP).status_code == 201
    host = Client(HTTP_HOST="initech-refrigeration.localhost")
    response = host.post(path, body | {"password": SIGNUP["password"]}, content_type="application/json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "email_unconfirmed"
    EmailAddress.objects.filter(email=SIGNUP["email"]).update(verified=True)
    again = host.post(path, body | {"password": SIGNUP["password"]}, content_type="application/json")
    assert again.status_code == 200, again.content


def test_register_with_a_chosen_slug(db):
    assert register(SIGNUP | {"slug": "initech"}).status_code == 201
    assert Tenant.objects.get(slug="initech").name == "Initech Refrigeration"


def test_an_email_with_an_account_gets_the_same_answer_and_no_organisation(people):
    response = register(SIGNUP | {"email": "acme_admin@example.com"})
    assert response.status_code == 201  # the answer does not tell who has an account
    assert not Tenant.objects.filter(slug="initech-refrigeration").exists()
    assert mail.outbox[-1].to == ["acme_admin@example.com"]  # told by email instead


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (SIGNUP | {"slug": "acme"}, "slug"),
        (SIGNUP | {"slug": "public"}, "slug"),
        (SIGNUP | {"email": "not-an-email"}, "email"),
        (SIGNUP | {"email": "peter\x00@initech.example"}, "email"),
        (SIGNUP | {"password": "short"}, "password"),
        (SIGNUP | {"organisation": "x"}, "organisation"),
        (SIGNUP | {"organisation": "Init\x00ech"}, "organisation"),
        (SIGNUP | {"tenant_id": 1}, "tenant_id"),
        ({"organisation": "Initech"}, "email"),
    ],
)
def test_bad_sign_ups_are_400_naming_the_field(db, body, field):
    response = register(body)
    assert response.status_code == 400 and field in response.json()["error"]["fields"], response.json()
    assert not User.objects.filter(email="peter@initech.example").exists()
    assert not Tenant.objects.filter(name="Initech Refrigeration").exists()


def test_register_is_off_when_public_sign_up_is_off(db, settings):
    settings.PUBLIC_SIGNUP = False
    response = register(SIGNUP)
    assert response.status_code == 403 and response.json()["error"]["code"] == "signup_closed"
    assert not Tenant.objects.filter(slug="initech-refrigeration").exists()


def test_register_on_a_tenant_host_needs_an_invitation(db):
    response = register(SIGNUP, host="acme.localhost")
    assert response.status_code == 403 and response.json()["error"]["code"] == "invitation_required"
    assert not User.objects.filter(email="peter@initech.example").exists()


def test_register_is_limited_per_address(db):
    for _ in range(10):
        register(SIGNUP | {"email": "bad"})
    assert register(SIGNUP).status_code == 429


def test_the_public_host_has_no_other_auth_route(db):
    client = Client(HTTP_HOST="localhost")
    assert client.post("/auth/login/", {}, content_type="application/json").status_code == 404
    assert client.get("/auth/register/").status_code == 405


# --- fuzz ----------------------------------------------------------------------------------------

hostile = st.one_of(
    st.text(max_size=60), st.sampled_from(["\x00", "\ud800", "a" * 2000, "acme_admin@example.com", PASSWORD])
)
values = st.one_of(hostile, st.none(), st.integers(), st.booleans(), st.lists(hostile, max_size=2))
fields = st.sampled_from(["email", "password", "name", "old_password", "new_password", "organisation", "slug"])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    route=st.sampled_from(["/auth/login/", "/auth/refresh/", "/auth/logout/", "/auth/me/", "/auth/change-password/"]),
    body=st.dictionaries(fields, values, max_size=5),
    method=st.sampled_from(["post", "patch", "get"]),
)
def test_no_auth_route_answers_500_whatever_a_signed_in_client_sends(people, settings, route, body, method):
    import json

    settings.FIELDWATCH_LOGIN_RATE = "1000000/60"
    client = Client(HTTP_HOST="acme.localhost")
    client.cookies = login_cookies()
    raw = json.dumps(body, ensure_ascii=True)
    if method == "get":
        response = client.get(route)  # these routes read no query string
    else:
        response = getattr(client, method)(route, raw, content_type="application/json")
    assert response.status_code < 500
    if response.status_code >= 400:
        assert response.json()["error"]["code"]


def login_cookies():
    client = Client(HTTP_HOST="acme.localhost")
    login(client, "acme_viewer@example.com")
    return client.cookies


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.dictionaries(fields, values, max_size=6))
def test_register_answers_no_500_whatever_is_sent(db, settings, body):
    import json

    settings.FIELDWATCH_LOGIN_RATE = "1000000/60"
    raw = json.dumps(body, ensure_ascii=True)
    response = Client(HTTP_HOST="localhost").post("/auth/register/", raw, content_type="application/json")
    assert response.status_code < 500
    assert response.status_code == 201 or response.json()["error"]["code"]

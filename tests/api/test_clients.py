"""Tokens for integrations: POST /api/v1/auth/login and /api/v1/auth/refresh (seed 002)."""

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from api.bulk_helpers import BULK_URL, equipment, gz
from helpers import PASSWORD

from portal.tenancy.models import Membership

LOGIN, REFRESH = "/api/v1/auth/login", "/api/v1/auth/refresh"


def login(client, email="acme_admin@example.com", password=PASSWORD, **extra):
    return client.post(LOGIN, {"username": email, "password": password}, content_type="application/json", **extra)


def upload_with(client, token):
    return client.post(
        BULK_URL, gz([equipment()]), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def test_a_member_logs_in_and_the_access_token_uploads(acme_client, people, settings):
    response = login(acme_client)
    assert response.status_code == 200
    tokens = response.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == settings.API_TOKEN_SECONDS
    assert upload_with(acme_client, tokens["access_token"]).json()["written"] == 3


def test_login_takes_a_form_post_as_oauth2_clients_send(acme_client, people):
    form = urlencode({"grant_type": "password", "username": "ACME_viewer@example.com", "password": PASSWORD})
    response = acme_client.post(LOGIN, form, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200 and response.json()["access_token"]


@pytest.mark.parametrize(
    "email, password",
    [
        ("acme_admin@example.com", "wrong"),
        ("nobody@example.com", PASSWORD),
        ("outsider@example.com", PASSWORD),
        ("globex_owner@example.com", PASSWORD),
    ],
)
def test_wrong_passwords_and_non_members_get_401(acme_client, people, email, password):
    response = login(acme_client, email, password)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_credentials"


def test_text_a_database_cannot_hold_is_refused_not_a_crash(acme_client, people):
    assert login(acme_client, "acme_admin@example.com\x00").status_code == 401
    assert login(acme_client, password="pass\ud800").status_code == 401


def test_an_inactive_user_gets_401(acme_client, people):
    people["acme_admin"].is_active = False
    people["acme_admin"].save(update_fields=["is_active"])
    assert login(acme_client).status_code == 401


def test_an_account_with_two_factor_must_use_an_api_key(acme_client, people):
    from allauth.mfa.models import Authenticator

    Authenticator.objects.create(
        user=people["acme_admin"], type=Authenticator.Type.TOTP, data={"secret": "JBSWY3DPEHPK3PXP"}
    )
    response = login(acme_client)
    assert response.status_code == 401 and response.json()["error"]["code"] == "two_factor_required"


@pytest.mark.parametrize("body", [{}, {"username": "acme_admin@example.com"}, {"username": 1, "password": 2}, [1, 2]])
def test_missing_credentials_are_400(acme_client, db, body):
    assert acme_client.post(LOGIN, body, content_type="application/json").status_code == 400


def test_malformed_json_is_400(acme_client, db):
    response = acme_client.post(LOGIN, b"{nope", content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_json"


def test_refresh_gives_new_tokens(acme_client, people):
    tokens = login(acme_client).json()
    response = acme_client.post(REFRESH, {"refresh_token": tokens["refresh_token"]}, content_type="application/json")
    assert response.status_code == 200
    assert upload_with(acme_client, response.json()["access_token"]).status_code == 200


def test_an_access_token_is_no_refresh_token_and_back(acme_client, people):
    tokens = login(acme_client).json()
    response = acme_client.post(REFRESH, {"refresh_token": tokens["access_token"]}, content_type="application/json")
    assert response.status_code == 401
    assert upload_with(acme_client, tokens["refresh_token"]).status_code == 401


@pytest.mark.parametrize("raw", ["garbage", "a.b.c", ""])
def test_garbage_tokens_are_refused(acme_client, db, raw):
    response = acme_client.post(REFRESH, {"refresh_token": raw}, content_type="application/json")
    assert response.status_code == (400 if not raw else 401)
    if raw:
        assert upload_with(acme_client, raw).status_code == 401


def test_an_expired_access_token_is_401_and_refresh_still_works(acme_client, people, settings, time_machine):
    time_machine.move_to("2026-11-20 12:00Z", tick=False)
    tokens = login(acme_client).json()
    time_machine.shift(timedelta(seconds=settings.API_TOKEN_SECONDS + 1))
    response = upload_with(acme_client, tokens["access_token"])
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_expired"
    refreshed = acme_client.post(REFRESH, {"refresh_token": tokens["refresh_token"]}, content_type="application/json")
    assert refreshed.status_code == 200
    time_machine.shift(timedelta(seconds=settings.API_REFRESH_SECONDS + 1))
    again = acme_client.post(REFRESH, {"refresh_token": tokens["refresh_token"]}, content_type="application/json")
    assert again.status_code == 401


def test_a_token_of_acme_is_401_on_globex(acme_client, globex_client, people):
    # acme's owner is a member of globex too: the token still names acme only
    tokens = login(acme_client, "acme_owner@example.com").json()
    assert upload_with(globex_client, tokens["access_token"]).status_code == 401
    response = globex_client.post(REFRESH, {"refresh_token": tokens["refresh_token"]}, content_type="application/json")
    assert response.status_code == 401


def test_a_removed_member_can_neither_use_nor_refresh_tokens(acme_client, acme, people):
    tokens = login(acme_client).json()
    Membership.objects.filter(user=people["acme_admin"], tenant=acme).delete()
    assert upload_with(acme_client, tokens["access_token"]).status_code == 401
    response = acme_client.post(REFRESH, {"refresh_token": tokens["refresh_token"]}, content_type="application/json")
    assert response.status_code == 401


def test_login_attempts_are_limited_per_address(acme_client, people):
    for _ in range(10):
        assert login(acme_client, password="wrong").status_code == 401
    response = login(acme_client)  # even the right password waits
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1


def test_login_attempts_are_limited_per_username_across_addresses(acme_client, people):
    for n in range(10):
        assert login(acme_client, password="wrong", REMOTE_ADDR=f"10.0.0.{n}").status_code == 401
    assert login(acme_client, REMOTE_ADDR="10.0.1.1").status_code == 429
    assert login(acme_client, "acme_viewer@example.com", REMOTE_ADDR="10.0.1.2").status_code == 200


def test_login_is_post_only(acme_client, db):
    assert acme_client.get(LOGIN).status_code == 405


def test_token_sign_ins_are_in_the_tenants_audit_log_as_site_sign_ins_are(acme_client, people):
    from django_tenants.utils import schema_context

    from portal.audit.models import AuditLog

    assert login(acme_client).status_code == 200
    seed_004 = {"email": "acme_viewer@example.com", "password": PASSWORD}
    assert acme_client.post("/api/v1/auth/login/", seed_004, content_type="application/json").status_code == 200
    assert login(acme_client, password="wrong").status_code == 401  # a refusal signs nobody in
    with schema_context("acme"):
        rows = AuditLog.objects.filter(action="user.signed_in").order_by("id")
        assert [(r.actor_email, r.changes["via"]) for r in rows] == [
            ("acme_admin@example.com", "seed 002 tokens"),
            ("acme_viewer@example.com", "seed 004 tokens"),
        ]
    with schema_context("globex"):
        assert not AuditLog.objects.filter(action="user.signed_in").exists()
    people["acme_admin"].refresh_from_db()
    assert people["acme_admin"].last_login is not None

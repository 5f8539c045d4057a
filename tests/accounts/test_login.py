from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import (
    SECRET_SESSION_KEY,
    format_hotp_value,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.test import Client
from django_tenants.utils import schema_context
from helpers import PASSWORD

from portal.audit.models import AuditLog


def totp_code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, next(yield_hotp_counters_from_time())))


def test_sign_in_by_email_lands_on_the_dashboard(acme_client, people):
    response = acme_client.post(
        "/accounts/login/", {"login": "ACME_Viewer@example.com", "password": PASSWORD}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/"
    assert b"Dashboard" in response.content


def test_failed_sign_ins_are_rate_limited(acme_client, people):
    for _ in range(5):
        response = acme_client.post("/accounts/login/", {"login": "acme_viewer@example.com", "password": "wrong"})
        assert response.status_code == 200
        assert b"password you specified are not correct" in response.content
    response = acme_client.post("/accounts/login/", {"login": "acme_viewer@example.com", "password": PASSWORD})
    assert response.status_code == 200  # even the right password is refused for now
    assert b"Too many failed login attempts" in response.content


def test_sign_out(as_acme):
    client = as_acme("acme_viewer")
    client.post("/accounts/logout/")
    assert client.get("/").status_code == 302


def test_totp_enrolment_and_second_factor_sign_in(people, django_capture_on_commit_callbacks):
    client = Client(HTTP_HOST="acme.localhost")
    client.post("/accounts/login/", {"login": "acme_admin@example.com", "password": PASSWORD})
    # enrolling a factor asks for the password again (allauth's reauthentication)
    assert client.get("/accounts/2fa/totp/activate/").status_code == 302
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    with django_capture_on_commit_callbacks(execute=True):  # allauth signals after commit
        response = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert response.status_code == 302
    user = people["acme_admin"]
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.RECOVERY_CODES).exists()
    assert client.get("/accounts/2fa/recovery-codes/").status_code == 200

    fresh = Client(HTTP_HOST="acme.localhost")
    response = fresh.post("/accounts/login/", {"login": "acme_admin@example.com", "password": PASSWORD})
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert fresh.get("/").status_code == 302  # not signed in before the second factor
    response = fresh.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert response.status_code == 302
    assert fresh.get("/").status_code == 200
    with schema_context("acme"):
        actions = list(AuditLog.objects.filter(actor_email="acme_admin@example.com").values_list("action", flat=True))
    assert "user.mfa_added" in actions and actions.count("user.signed_in") == 2


def test_password_reset_sends_an_email(acme_client, people):
    from django.core import mail

    response = acme_client.post("/accounts/password/reset/", {"email": "acme_viewer@example.com"})
    assert response.status_code == 302
    assert "acme.localhost/accounts/password/reset/key/" in mail.outbox[-1].body

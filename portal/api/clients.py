"""Tokens for integrations that sign in as a person (seed 002's clients):

    POST /api/v1/auth/login    {"username": "<email>", "password": "…"}
    POST /api/v1/auth/refresh  {"refresh_token": "…"}

both answer {"access_token", "refresh_token", "token_type": "bearer", "expires_in"}. The tokens
are signed (portal.api.auth.issue_tokens) and name this tenant: one of acme is refused on
globex's host. Only members of the tenant get them, and a refresh checks the membership again.
Login also takes form posts (OAuth2's password grant sends username and password as a form).
Attempts are rate-limited per client address and per username. An account with two-factor
authentication cannot sign in with a password alone: it uses an API key instead.
"""

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.db import connection
from django.http import JsonResponse

from portal.api.auth import issue_tokens, read_token, signed_in
from portal.api.endpoint import ApiError, api_endpoint, check_rate, json_body
from portal.audit.log import client_ip
from telemetry.bounds import storable


def credentials(request) -> dict:
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.POST.dict()
    data = json_body(request)
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_request", "Send a JSON object.")
    return data


def is_member(user_id: int) -> bool:
    from portal.tenancy.models import Membership

    return Membership.objects.filter(user_id=user_id, tenant=connection.tenant, user__is_active=True).exists()


def uses_two_factor(user) -> bool:
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.filter(user=user).exclude(type=Authenticator.Type.RECOVERY_CODES).exists()


REFUSED = "Wrong email or password, or not a member of this organisation."


def password_sign_in(request, email: str, password: str, *, two_factor: str):
    """The one password check of every API login (seed 002's, 003's session, 004's and 000's
    cookies): limited per client address and per email, a member of this tenant only, never
    an account with two-factor authentication (a password alone must not open it; `two_factor`
    says what to use instead), and only with a confirmed email address, as the site's sign-in.
    The user, or ApiError 401/403/429."""
    check_rate("api-login-ip", client_ip(request) or "unknown", settings.FIELDWATCH_LOGIN_RATE)
    check_rate("api-login-user", email.strip().lower()[:254], settings.FIELDWATCH_LOGIN_RATE)
    # ModelBackend hashes the password even for an unknown email, so timing tells nothing
    user = ModelBackend().authenticate(request, username=email.strip(), password=password)
    if user is None or not is_member(user.pk):
        raise ApiError(401, "invalid_credentials", REFUSED)
    if uses_two_factor(user):
        raise ApiError(401, "two_factor_required", f"This account uses two-factor authentication: {two_factor}.")
    if not email_confirmed(user):  # the site's rule (mandatory confirmation): no API login skips it
        raise ApiError(403, "email_unconfirmed", "Confirm your email address first: follow the link we emailed you.")
    return user


def email_confirmed(user) -> bool:
    from allauth.account.models import EmailAddress

    return EmailAddress.objects.filter(user=user, email__iexact=user.email, verified=True).exists()


@api_endpoint(methods=("POST",), max_bytes=4096)
def login(request):
    data = credentials(request)
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise ApiError(400, "missing_credentials", 'Send {"username": "<email>", "password": "…"}.')
    if not storable(username) or not storable(password):
        raise ApiError(401, "invalid_credentials", REFUSED)
    user = password_sign_in(request, username, password, two_factor="use an API key instead")
    tokens = issue_tokens(user.pk)
    signed_in(request, user, "seed 002 tokens")
    return JsonResponse(tokens)


@api_endpoint(methods=("POST",), max_bytes=4096)
def refresh(request):
    check_rate("api-refresh-ip", client_ip(request) or "unknown", settings.FIELDWATCH_LOGIN_RATE)
    data = credentials(request)
    raw = data.get("refresh_token")
    if not isinstance(raw, str) or not raw:
        raise ApiError(400, "missing_refresh_token", 'Send {"refresh_token": "…"}.')
    user_id = read_token(raw, "refresh")
    if not is_member(user_id):
        raise ApiError(401, "invalid_token", "The token's user is no longer a member.")
    return JsonResponse(issue_tokens(user_id))

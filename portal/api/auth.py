"""Who is calling: a device (bearer token from the handshake), or an integration (an API key,
or a short-lived signed access token from /api/v1/auth/login)."""

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from portal.api.endpoint import ApiError
from portal.api.models import KEY_PREFIX, ApiKey
from telemetry.models import Device

TOKEN_SALT = "fieldwatch.api.token"  # noqa: S105 (a signing namespace, not a secret)


def bearer(request) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def authenticate_device(request) -> Device:
    """The device whose token the request carries; ApiError 401 otherwise. Tokens are per
    tenant schema, so an acme token on globex's host finds nothing."""
    device = Device.objects.for_token(bearer(request))
    if device is None:
        raise ApiError(401, "invalid_token", "A valid device token is required (Authorization: Bearer <token>).")
    return device


@dataclass(frozen=True)
class Client:
    """An integration calling: by API key, or by a person's access token."""

    kind: str  # "key" or "user"
    identity: str  # key id or user id, for rate limits and logs


def password_stamp(user) -> str:
    """A short HMAC of the person's password hash (Django's session auth hash): every token
    carries it, so changing the password ends every token issued before, as it ends sessions."""
    return user.get_session_auth_hash()[:20]


def issue_tokens(user_id: int) -> dict:
    from portal.accounts.models import User

    schema = connection.schema_name
    stamp = password_stamp(User.objects.only("password").get(pk=user_id))
    access = signing.dumps({"u": user_id, "t": schema, "k": "access", "p": stamp}, salt=TOKEN_SALT)
    refresh = signing.dumps({"u": user_id, "t": schema, "k": "refresh", "p": stamp}, salt=TOKEN_SALT)
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "bearer",
        "expires_in": settings.API_TOKEN_SECONDS,
    }


def revoked_key(raw: str) -> str:
    return "api-token-revoked:" + hashlib.sha256(raw.encode()).hexdigest()


def revoke_token(raw: str) -> None:
    """Refuse this token from now on (seed 004's logout). Kept in the cache (Redis in production,
    shared by every process) for as long as the token could still be valid."""
    cache.set(revoked_key(raw), True, settings.API_REFRESH_SECONDS)


def read_token(raw: str, kind: str) -> int:
    """The user id of a signed token of `kind` made for this tenant; ApiError 401 otherwise."""
    return token_user(raw, kind).pk


def token_user(raw: str, kind: str):
    """The person of a signed token of `kind` made for this tenant, whose password is still the
    one the token was issued under; ApiError 401 otherwise (one query)."""
    max_age = settings.API_TOKEN_SECONDS if kind == "access" else settings.API_REFRESH_SECONDS
    if cache.get(revoked_key(raw)):
        raise ApiError(401, "token_revoked", "The token was revoked (logged out); log in again.")
    try:
        claim = signing.loads(raw, salt=TOKEN_SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise ApiError(401, "token_expired", "The token has expired; refresh it or log in again.") from None
    except signing.BadSignature:
        raise ApiError(401, "invalid_token", "The token is not valid.") from None
    if claim.get("k") != kind or claim.get("t") != connection.schema_name:
        raise ApiError(401, "invalid_token", "The token is not valid here.")
    from portal.accounts.models import User

    user = User.objects.filter(pk=claim.get("u")).first()
    if user is None or not constant_time_compare(claim.get("p", ""), password_stamp(user)):
        raise ApiError(401, "token_revoked", "The password was changed since this token was issued; log in again.")
    return user


def signed_in(request, user, via: str) -> None:
    """A person got tokens: their last login, and user.signed_in in this tenant's audit log
    (as a sign-in on the site writes it), naming how."""
    from portal.accounts.models import User
    from portal.audit.log import record

    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    request.user = user  # the row's actor
    record(request, "user.signed_in", user, {"via": via})


def authenticate_client(request) -> Client:
    """An API key (X-API-Key, or Bearer fwk_…) or a signed access token; ApiError 401 otherwise."""
    raw = request.META.get("HTTP_X_API_KEY", "") or bearer(request)
    if raw.startswith(KEY_PREFIX):
        key = ApiKey.objects.for_raw(raw)
        if key is None:
            raise ApiError(401, "invalid_api_key", "The API key is not valid or was revoked.")
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
        return Client("key", str(key.pk))
    if raw:
        user_id = read_token(raw, "access")
        from portal.tenancy.models import Membership

        if not Membership.objects.filter(user_id=user_id, tenant=connection.tenant, user__is_active=True).exists():
            raise ApiError(401, "invalid_token", "The token's user is no longer a member.")
        return Client("user", str(user_id))
    raise ApiError(401, "unauthenticated", "Send an API key (X-API-Key) or a bearer token from /api/v1/auth/login.")

"""Who is calling: a device (bearer token from the handshake), or an integration (an API key,
or a short-lived signed access token from /api/v1/auth/login)."""

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.db import connection
from django.utils import timezone

from portal.api.endpoint import ApiError
from portal.api.models import KEY_PREFIX, ApiKey
from telemetry.models import Device

TOKEN_SALT = "fieldwatch.api.token"


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


def issue_tokens(user_id: int) -> dict:
    schema = connection.schema_name
    access = signing.dumps({"u": user_id, "t": schema, "k": "access"}, salt=TOKEN_SALT)
    refresh = signing.dumps({"u": user_id, "t": schema, "k": "refresh"}, salt=TOKEN_SALT)
    return {"access_token": access, "refresh_token": refresh, "token_type": "bearer", "expires_in": settings.API_TOKEN_SECONDS}


def read_token(raw: str, kind: str) -> int:
    """The user id of a signed token of `kind` made for this tenant; ApiError 401 otherwise."""
    max_age = settings.API_TOKEN_SECONDS if kind == "access" else settings.API_REFRESH_SECONDS
    try:
        claim = signing.loads(raw, salt=TOKEN_SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise ApiError(401, "token_expired", "The token has expired; refresh it or log in again.") from None
    except signing.BadSignature:
        raise ApiError(401, "invalid_token", "The token is not valid.") from None
    if claim.get("k") != kind or claim.get("t") != connection.schema_name:
        raise ApiError(401, "invalid_token", "The token is not valid here.")
    return claim["u"]


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

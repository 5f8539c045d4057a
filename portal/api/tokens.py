"""Seed 004's token endpoints, for the mobile and web apps that used its API:

    POST /api/v1/auth/login/          {"email", "password"} -> {"user": {…}, "tokens": {"access", "refresh"}}
    POST /api/v1/auth/token/refresh/  {"refresh"} -> {"access"}
    POST /api/v1/auth/logout/         {"refresh"} -> {"message": "Successfully logged out"}

The tokens are the same signed tokens as seed 002's /api/v1/auth/login (portal.api.auth), which
keeps working as it does (no slash, {username, password}). Logout revokes the refresh token it is
given (portal.api.auth.revoke_token); an access token lives out its short life.
"""

from django.conf import settings
from ninja import Field, Router, Schema

from portal.api.auth import issue_tokens, read_token, revoke_token, signed_in
from portal.api.clients import is_member, password_sign_in
from portal.api.endpoint import ApiError, check_rate
from portal.api.toolkit import ErrorOut, member, text
from portal.audit.log import client_ip

router = Router(tags=["Tokens (seed 004)"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 429: ErrorOut}


class LoginIn(Schema):
    email: text(254, min_length=1)  # looked up in the database: no NUL or control characters
    password: str = Field(min_length=1, max_length=1024)


class UserOut(Schema):
    id: int
    email: str
    full_name: str
    is_verified: bool


class Tokens(Schema):
    access: str
    refresh: str


class LoginOut(Schema):
    user: UserOut
    tokens: Tokens


class RefreshIn(Schema):
    refresh: str = Field(min_length=1, max_length=2000)


class AccessOut(Schema):
    access: str


class MessageOut(Schema):
    message: str


@router.post("/api/v1/auth/login/", response={200: LoginOut, **ERRORS}, auth=None, summary="Sign in for tokens")
def login(request, payload: LoginIn):
    user = password_sign_in(request, payload.email, payload.password, two_factor="use an API key instead")
    tokens = issue_tokens(user.pk)
    signed_in(request, user, "seed 004 tokens")
    return {
        "user": {
            "id": user.pk,
            "email": user.email,
            "full_name": user.name,
            "is_verified": True,
        },  # password_sign_in admits confirmed emails only
        "tokens": {"access": tokens["access_token"], "refresh": tokens["refresh_token"]},
    }


@router.post(
    "/api/v1/auth/token/refresh/", response={200: AccessOut, **ERRORS}, auth=None, summary="A new access token"
)
def refresh(request, payload: RefreshIn):
    check_rate("api-refresh-ip", client_ip(request) or "unknown", settings.FIELDWATCH_LOGIN_RATE)
    user_id = read_token(payload.refresh, "refresh")
    if not is_member(user_id):
        raise ApiError(401, "invalid_token", "The token's user is no longer a member.")
    return {"access": issue_tokens(user_id)["access_token"]}


@router.post(
    "/api/v1/auth/logout/", response={200: MessageOut, **ERRORS}, auth=member(), summary="Revoke a refresh token"
)
def logout(request, payload: RefreshIn):
    read_token(payload.refresh, "refresh")  # only a valid token of this tenant is worth remembering
    revoke_token(payload.refresh)
    return {"message": "Successfully logged out"}

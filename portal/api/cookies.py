"""Seed 000's cookie sign-in, for the HVAC web app that used it (tenant hosts):

    POST  /auth/login/            {"email", "password"} -> {"message": "Login successful", "user": {…}}
                                  sets the HttpOnly cookies access_token (15 minutes) and
                                  refresh_token (7 days, sent to /auth/ only), and fieldwatch_csrftoken
    POST  /auth/refresh/          a new access_token cookie from the refresh_token cookie
    POST  /auth/logout/           revokes both tokens and clears the cookies
    GET   /auth/me/               the signed-in person
    PATCH /auth/me/               {"name"}: their name (the email changes on the site, with a confirmation)
    POST  /auth/change-password/  {"old_password", "new_password"}
    POST  /auth/register/         public host: a new organisation and its owner, as the site's sign-up

The tokens are the signed tokens of portal.api.auth (seed 002's and 004's), carried in cookies;
toolkit.CookieAuth admits the access cookie on every toolkit route (seed 000's /assets/ and
/ingest/ APIs too), and checks the CSRF token on writes (why there). Refresh and logout are
driven by cookies as well, so they need the CSRF token too; login does not (there is nothing of
the person's to ride on yet), like the session login of portal.api.session. Logins are limited
per address and per email; an account with two-factor authentication is refused (a password alone
must not open it: it signs in on the site, or uses an API key), and so is an email address not
yet confirmed (the site's mandatory confirmation, which /auth/register/ must not get around). Sign-ins, sign-outs, name and
password changes are in the tenant's audit log. A password change ends every token issued before
it (the tokens carry a stamp of the password, portal.api.auth.password_stamp) and the caller gets
fresh cookies.
"""

from allauth.account import signals as account_signals
from django.conf import settings
from django.contrib.auth import password_validation, update_session_auth_hash
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from django.http import HttpResponse
from django.middleware.csrf import get_token
from ninja import Field, Router, Schema
from ninja.responses import Status
from pydantic import ConfigDict

from portal.api.auth import issue_tokens, read_token, revoke_token, signed_in
from portal.api.clients import is_member, password_sign_in
from portal.api.endpoint import ApiError, check_rate
from portal.api.tokens import LoginIn
from portal.api.toolkit import ACCESS_COOKIE, REFRESH_COOKIE, ErrorOut, audit, member, require_csrf, text
from portal.audit.log import client_ip

router = Router(tags=["Cookie sign-in (seed 000)"])
public_router = Router(tags=["Cookie sign-in (seed 000)"])  # the public host's API: register alone
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 429: ErrorOut}
REFRESH_PATH = "/auth/"  # the long-lived cookie goes to the sign-in endpoints only


class Strict(Schema):
    model_config = ConfigDict(extra="forbid")  # a field we do not take is named, not ignored


class UserOut(Schema):
    id: int
    email: str
    name: str
    role: str | None
    is_staff: bool
    date_joined: str


class LoginOut(Schema):
    message: str
    user: UserOut


class MessageOut(Schema):
    message: str


class ProfileIn(Strict):
    name: text(150)


class PasswordIn(Strict):
    old_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class RegisterIn(Strict):
    organisation: text(100, min_length=2) = Field(description="The organisation's name")
    slug: text(40) = Field("", description="Its address (acme in acme.<domain>); empty: from the name")
    email: text(254, min_length=1)
    password: str = Field(min_length=1, max_length=1024)
    name: text(150) = Field("", description="The person's name")


class RegisterOut(Schema):
    message: str
    email: str


def user_out(user) -> dict:
    from portal.tenancy.models import Membership

    membership = Membership.objects.filter(user=user, tenant=connection.tenant).first()
    return {
        "id": user.pk,
        "email": user.email,
        "name": user.name,
        "role": membership.role if membership else None,
        "is_staff": user.is_staff,
        "date_joined": user.date_joined.isoformat(),
    }


def set_token_cookies(response: HttpResponse, user_id: int, *, refresh: bool = True) -> None:
    """The HttpOnly cookies: Secure where the session cookie is (production), SameSite=Lax,
    host-only (no Domain: a cookie of acme's host is never sent to globex's)."""
    tokens = issue_tokens(user_id)
    common = {"httponly": True, "secure": settings.SESSION_COOKIE_SECURE, "samesite": "Lax"}
    response.set_cookie(ACCESS_COOKIE, tokens["access_token"], max_age=settings.API_TOKEN_SECONDS, **common)
    if refresh:
        response.set_cookie(
            REFRESH_COOKIE,
            tokens["refresh_token"],
            max_age=settings.API_REFRESH_SECONDS,
            path=REFRESH_PATH,
            **common,
        )


def clear_token_cookies(response: HttpResponse) -> None:
    response.delete_cookie(ACCESS_COOKIE, samesite="Lax")
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_PATH, samesite="Lax")


def the_person(request):
    """The signed-in person of a member() route (an API key is nobody: 400)."""
    from portal.accounts.models import User

    if request.auth.user_id is None:
        raise ApiError(400, "not_a_person", "An API key is not a person: there is no user to show or change.")
    return User.objects.get(pk=request.auth.user_id)


@router.post("/auth/login/", response={200: LoginOut, **ERRORS}, auth=None, summary="Sign in (HttpOnly cookies)")
def login(request, payload: LoginIn, response: HttpResponse):
    user = password_sign_in(request, payload.email, payload.password, two_factor="sign in on the site")
    set_token_cookies(response, user.pk)
    get_token(request)  # the fieldwatch_csrftoken cookie, whose value the client's writes send back
    signed_in(request, user, "seed 000 cookies")
    return {"message": "Login successful", "user": user_out(user)}


@router.post("/auth/refresh/", response={200: MessageOut, **ERRORS}, auth=None, summary="A new access cookie")
def refresh(request, response: HttpResponse):
    check_rate("api-refresh-ip", client_ip(request) or "unknown", settings.FIELDWATCH_LOGIN_RATE)
    raw = request.COOKIES.get(REFRESH_COOKIE, "")
    if not raw:
        raise ApiError(401, "unauthenticated", "There is no refresh_token cookie: log in at /auth/login/.")
    require_csrf(request)
    user_id = read_token(raw, "refresh")
    if not is_member(user_id):
        raise ApiError(401, "invalid_token", "The token's user is no longer a member.")
    set_token_cookies(response, user_id, refresh=False)
    return {"message": "Token refreshed"}


@router.post("/auth/logout/", response={200: MessageOut, **ERRORS}, auth=None, summary="Sign out (clears cookies)")
def logout(request, response: HttpResponse):
    tokens = {
        kind: request.COOKIES.get(name, "") for kind, name in (("access", ACCESS_COOKIE), ("refresh", REFRESH_COOKIE))
    }
    if any(tokens.values()):
        require_csrf(request)  # or any page could sign the person out
    person = None
    for kind, raw in tokens.items():
        if not raw:
            continue
        try:
            person = read_token(raw, kind)
        except ApiError:
            continue  # expired or foreign: nothing to revoke, the cookie goes all the same
        revoke_token(raw)
    clear_token_cookies(response)
    if person is not None:
        from portal.accounts.models import User

        request.user = User.objects.get(pk=person)
        audit(request, "user.signed_out", request.user, {"via": "seed 000 cookies"})
    return {"message": "Logout successful"}


@router.get("/auth/me/", response={200: UserOut, **ERRORS}, auth=member(), summary="The signed-in person")
def me(request):
    return user_out(the_person(request))


@router.patch("/auth/me/", response={200: UserOut, **ERRORS}, auth=member(), summary="Change one's name")
def update_me(request, payload: ProfileIn):
    user = the_person(request)
    if user.name != payload.name:
        changes = {"name": [user.name, payload.name]}
        user.name = payload.name
        user.save(update_fields=["name"])
        audit(request, "user.profile_changed", user, changes)
    return user_out(user)


@router.post(
    "/auth/change-password/", response={200: MessageOut, **ERRORS}, auth=member(), summary="Change one's password"
)
def change_password(request, payload: PasswordIn, response: HttpResponse):
    user = the_person(request)
    # the old password is a guess like a login's: limited the same way
    check_rate("api-password-user", str(user.pk), settings.FIELDWATCH_LOGIN_RATE)
    if not user.check_password(payload.old_password):
        raise ApiError(400, "wrong_password", "The current password is wrong.", fields={"old_password": "is wrong"})
    try:
        password_validation.validate_password(payload.new_password, user)
    except DjangoValidationError as error:
        message = " ".join(error.messages)
        raise ApiError(400, "weak_password", message, fields={"new_password": message}) from None
    user.set_password(payload.new_password)
    user.save(update_fields=["password"])
    request.user = user
    account_signals.password_changed.send(sender=user.__class__, request=request, user=user)  # the audit row
    if request.auth.kind == "session":
        update_session_auth_hash(request, user)  # this session stays; every other one ends
    elif request.auth.kind == "cookie":
        set_token_cookies(response, user.pk)  # the old tokens end with the old password
    return {"message": "Password changed"}


@router.post("/auth/register/", response={201: RegisterOut, **ERRORS}, auth=None, summary="Sign up an organisation")
@public_router.post(
    "/auth/register/", response={201: RegisterOut, **ERRORS}, auth=None, summary="Sign up an organisation"
)
def register(request, payload: RegisterIn):
    """The site's sign-up (allauth's form and flow, portal.accounts.forms.SignupForm): the person,
    their organisation (its owner), the confirmation email. As on the site, an email that has an
    account already gets the same answer (that account is told by email instead), so the answer
    never tells who has an account. Open on the public host only, while public sign-up is on."""
    from allauth.account.internal.flows.signup import complete_signup

    from portal.accounts.adapter import on_public_site
    from portal.accounts.forms import SignupForm

    if not on_public_site(request):
        raise ApiError(
            403,
            "invitation_required",
            "People join an organisation by invitation: ask one of its administrators to invite you.",
        )
    if not settings.PUBLIC_SIGNUP:
        raise ApiError(
            403, "signup_closed", "Public sign-up is turned off here: ask the operators to create your organisation."
        )
    check_rate("api-register-ip", client_ip(request) or "unknown", settings.FIELDWATCH_LOGIN_RATE)
    data = {
        "organisation": payload.organisation,
        "slug": payload.slug,
        "email": payload.email,
        "password1": payload.password,
        "password2": payload.password,
    }
    form = SignupForm(data)
    if not form.is_valid():
        names = {"password1": "password", "password2": "password", "__all__": "body"}
        fields = {names.get(name, name): " ".join(errors) for name, errors in form.errors.items()}
        message = "; ".join(f"{name}: {text}" for name, text in fields.items())
        raise ApiError(400, "invalid_request", message, fields=fields)
    user, _ = form.try_save(request)
    if user is not None:
        if payload.name:
            user.name = payload.name
            user.save(update_fields=["name"])
        complete_signup(request, user=user)  # the confirmation email; no sign-in before it is confirmed
    message = (
        "Check your email: confirm the address, then sign in; the organisation is yours "
        "and its address is shown when you sign in."
    )
    return Status(201, {"message": message, "email": form.cleaned_data["email"]})

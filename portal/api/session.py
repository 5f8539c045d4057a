"""Session sign-in for browser clients of the JSON APIs, on seed 003's paths and shapes:

    POST /api/auth/login/     {"username": "<email>", "password": "…"} -> {"success": true, "user": {…}}
    POST /api/auth/logout/    -> {"success": true, "message": "Successfully logged out"}
    GET  /api/auth/user/      -> {"success": true, "user": {…}}
    GET  /api/auth/check/     -> {"authenticated": true|false, "user": {…}|null}
    POST /api/auth/register/  -> 403: people join an organisation by invitation

Only members of this tenant sign in; the session is bound to this host like a sign-in page's
(portal.tenancy.signals). The login answer sets the csrftoken cookie: later writes send it back as
X-CSRFToken (check/ sets it too, for a client that starts there). Login itself needs no CSRF token (there is no session to ride yet), is rate-limited
per address and per username, and refuses accounts with two-factor authentication (a password
alone must not open them: they use an API key).
"""

from django.contrib.auth import login as start_session
from django.contrib.auth import logout as end_session
from django.middleware.csrf import get_token
from ninja import Field, Router, Schema

from portal.api.clients import password_sign_in
from portal.api.endpoint import ApiError
from portal.api.toolkit import member, text

router = Router(tags=["Sessions"])


class Credentials(Schema):
    # Looked up in the database: no NUL or control characters.
    username: text(254, min_length=1) = Field(description="The person's email address")
    password: str = Field(min_length=1, max_length=1024)


class UserOut(Schema):
    id: int
    username: str
    email: str
    first_name: str
    last_name: str
    is_staff: bool
    is_superuser: bool
    role: str | None = None


class UserAnswer(Schema):
    success: bool
    user: UserOut


class CheckAnswer(Schema):
    authenticated: bool
    user: UserOut | None


class Message(Schema):
    success: bool
    message: str


def user_out(user, membership) -> dict:
    first, _, last = (user.name or "").partition(" ")
    return {
        "id": user.pk,
        "username": user.email,
        "email": user.email,
        "first_name": first,
        "last_name": last,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "role": membership.role if membership else None,
    }


@router.post("/api/auth/login/", response=UserAnswer, auth=None, summary="Sign in (session cookie)")
def login(request, credentials: Credentials):
    user = password_sign_in(request, credentials.username, credentials.password, two_factor="sign in on the site")
    start_session(request, user, backend="django.contrib.auth.backends.ModelBackend")
    get_token(request)  # sets the csrftoken cookie the client's writes send back
    from portal.tenancy.models import Membership

    request.membership = Membership.objects.filter(user=user, tenant=request.tenant).first()
    return {"success": True, "user": user_out(user, request.membership)}


@router.post("/api/auth/logout/", response=Message, auth=member(), summary="Sign out")
def logout(request):
    end_session(request)
    return {"success": True, "message": "Successfully logged out"}


@router.get("/api/auth/user/", response=UserAnswer, auth=member(), summary="The signed-in person")
def current_user(request):
    if request.auth.user_id is None:
        raise ApiError(400, "not_a_person", "An API key is not a person: there is no user to show.")
    from portal.accounts.models import User

    user = User.objects.get(pk=request.auth.user_id)
    return {"success": True, "user": user_out(user, getattr(request, "membership", None) or request.auth)}


@router.get("/api/auth/check/", response=CheckAnswer, auth=None, summary="Whether this session is signed in")
def check(request):
    get_token(request)  # a browser client starts here: the csrftoken cookie for its later writes
    user, membership = getattr(request, "user", None), getattr(request, "membership", None)
    if user is None or not user.is_authenticated or membership is None:
        return {"authenticated": False, "user": None}
    return {"authenticated": True, "user": user_out(user, membership)}


@router.post("/api/auth/register/", auth=None, response={403: dict}, summary="Refused: join by invitation")
def register(request):
    raise ApiError(
        403,
        "invitation_required",
        "People join an organisation by invitation: ask one of its administrators to invite you.",
    )

"""The one JSON API toolkit: every integration API (seeds 003, 004, 000) is built with it.

django-ninja validates requests with pydantic and writes the OpenAPI document from the same
signatures, so a route's contract is stated once. How a fleet app adds its API:

1. A module `portal/<app>/api.py` with `router = Router(tags=["Outlets"])` and routes on the
   seed's exact paths (`@router.get("/api/outlets/", response=list[OutletOut], auth=member())`).
   tenant_api() finds every app's `api.router` (nothing here names an app) and mounts it at the
   root of tenant hosts, after the hand-written device routes (portal/api/urls.py).
2. `auth=member(Role.OPERATOR)` admits an API key, a signed access token (/api/v1/auth/login, as
   a Bearer header or seed 000's access_token cookie from /auth/login/) or a signed-in member's
   session (CSRF checked on writes by cookie or session), whose role is at least the one named;
   request.auth is then a Caller (who, which role). An authenticated caller with too low a role
   gets 403, nobody at all 401.
3. Errors are the project's one shape, {"error": {"code", "message", ...}} (portal/core/errors.py),
   for pydantic's validation errors (400, with `fields` {name: message}), HttpError, 404s, the
   role checks, a wrong method (405) and an oversized body (413). Raise portal.api.endpoint.ApiError
   for anything else a caller did wrong.
4. Lists: `@paginate(PageNumber)` gives seed 004's {count, next, previous, total_pages,
   current_page, results} (`page`, `page_size` at most 100); seed 003 answered plain JSON arrays,
   so its lists take `@paginate(Window)`: `limit` (default 100, at most 1000) and `offset`.

The one OpenAPI document (/api/schema/) is the hand-written device API's (portal/api/openapi.py)
with every ninja route merged in; tests/api/test_openapi.py fuzzes all of it.
"""

import functools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404, HttpResponseNotAllowed
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import path
from django.utils import timezone
from ninja import Field, NinjaAPI, Router, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.pagination import PaginationBase, paginate
from ninja.security import APIKeyCookie, APIKeyHeader, HttpBearer
from pydantic import AfterValidator, StringConstraints

from portal.api import ratelimit
from portal.api.endpoint import ApiError
from portal.api.models import KEY_PREFIX, ApiKey
from portal.core.discovery import app_modules
from portal.core.errors import json_error
from portal.tenancy.access import ROLE_DENIED
from portal.tenancy.models import ROLE_RANK, Role

__all__ = [
    "Caller",
    "ErrorOut",
    "PageNumber",
    "Router",
    "Routes",
    "Schema",
    "Window",
    "apply_changes",
    "audit",
    "filtered",
    "member",
    "moment",
    "paginate",
    "tenant_api",
    "text",
]

KEY_TOUCH_EVERY = timedelta(seconds=60)  # a key's last_used_at is written at most this often
MAX_BODY = 64 * 1024  # the integration APIs take small JSON objects; bulk data has its own endpoint
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    429: "rate_limited",
}


# --- who is calling -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """request.auth of an API route: an API key, or a member by access token or session."""

    kind: str  # "key", "token", "session" or "cookie"
    identity: str  # key id or user id: rate limits and logs
    role: str
    user_id: int | None = None

    def allows(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def member_role(user_id: int) -> str | None:
    from portal.tenancy.models import Membership

    return (
        Membership.objects.filter(user_id=user_id, tenant=connection.tenant, user__is_active=True)
        .values_list("role", flat=True)
        .first()
    )


def key_caller(raw: str) -> Caller:
    key = ApiKey.objects.for_raw(raw)
    if key is None:
        raise ApiError(401, "invalid_api_key", "The API key is not valid or was revoked.")
    now = timezone.now()
    if (
        key.last_used_at is None or now - key.last_used_at >= KEY_TOUCH_EVERY
    ):  # a write per call would double a read's cost
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return Caller("key", f"key:{key.pk}", key.role)


def token_caller(request, raw: str) -> Caller:
    from portal.api.auth import token_user

    user = token_user(raw, "access")
    role = member_role(user.pk)
    if role is None:
        raise ApiError(401, "invalid_token", "The token's user is no longer a member.")
    request.user = user  # the audit trail names the person
    return Caller("token", f"user:{user.pk}", role, user.pk)


class RoleCheck:
    """What the three ways of signing in share: the minimum role, the rate limit, the 403."""

    def __init__(self, role: str = Role.VIEWER):
        self.role = role
        super().__init__()

    def admit(self, caller: Caller) -> Caller:
        if caller.kind != "session":  # people in a browser are not throttled; programs are
            wait = ratelimit.retry_after("api", caller.identity, settings.FIELDWATCH_KEY_RATE)
            if wait is not None:
                raise ApiError(
                    429, "rate_limited", f"Too many requests; retry in {wait} s.", {"Retry-After": str(wait)}
                )
        if not caller.allows(self.role):
            raise ApiError(403, "forbidden", ROLE_DENIED.get(self.role, "Your role may not do this."))
        return caller


class ApiKeyAuth(RoleCheck, APIKeyHeader):
    """X-API-Key: fwk_… (the tenant's keys, Admin → API keys); the key's own role."""

    param_name = "X-API-Key"

    def authenticate(self, request, key):
        return self.admit(key_caller(key)) if key else None


class AccessTokenAuth(RoleCheck, HttpBearer):
    """Authorization: Bearer <access token from /api/v1/auth/login> (or Bearer fwk_… for a key)."""

    def authenticate(self, request, token):
        if not token:
            return None
        return self.admit(key_caller(token) if token.startswith(KEY_PREFIX) else token_caller(request, token))


class SessionAuth(RoleCheck, APIKeyCookie):
    """A signed-in member's browser session; writes need the CSRF token (X-CSRFToken header)."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request):
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request, key):
        user = getattr(request, "user", None)
        membership = getattr(request, "membership", None)
        if user is None or not user.is_authenticated or membership is None:
            return None
        if request.method in UNSAFE_METHODS:
            require_csrf(request)
        return self.admit(Caller("session", f"user:{user.pk}", membership.role, user.pk))


ACCESS_COOKIE, REFRESH_COOKIE = "access_token", "refresh_token"  # seed 000's names


class CookieAuth(RoleCheck, APIKeyCookie):
    """Seed 000's HttpOnly access_token cookie (set by POST /auth/login/, portal.api.cookies):
    the same signed access token as a Bearer one, carried by the browser.

    CSRF: a cookie rides along with every request the browser makes, whatever page made it, so a
    write authenticated by it needs the CSRF token, exactly as a session's write does: the value
    of the fieldwatch_csrftoken cookie (set by the login answer) sent back as X-CSRFToken,
    checked by Django's own CSRF code (csrf_refused; Origin and Referer too over HTTPS). Why not
    SameSite alone: every tenant host under the base domain is one "site", so SameSite=Lax lets
    a page on globex.<domain> post to acme.<domain> with acme's cookies; a token the other page
    cannot read stops that. Why not a double-submit cookie of our own: Django's check already is
    one (a secret in a host-only cookie echoed in a header), and session writes use it, so the
    project keeps one CSRF mechanism. Reads (GET, HEAD) need no token.
    """

    param_name = ACCESS_COOKIE

    def _get_key(self, request):
        return request.COOKIES.get(self.param_name)  # ninja's own CSRF check is replaced below

    def authenticate(self, request, key):
        if not key:
            return None
        if request.method in UNSAFE_METHODS:
            require_csrf(request)
        caller = token_caller(request, key)
        return self.admit(Caller("cookie", caller.identity, caller.role, caller.user_id))


def require_csrf(request) -> None:
    """ApiError 403 unless the request carries the CSRF token (cookie-borne credentials' writes)."""
    if csrf_refused(request):
        raise ApiError(
            403,
            "csrf_failed",
            "CSRF check failed: send the value of the CSRF cookie (fieldwatch_csrftoken) as X-CSRFToken.",
        )


def csrf_refused(request) -> bool:
    """Django's own CSRF check (token and origin), as CsrfViewMiddleware would make it."""
    middleware = CsrfViewMiddleware(lambda request: None)
    request.csrf_processing_done = False
    middleware.process_request(request)
    return middleware.process_view(request, lambda request: None, (), {}) is not None


def member(role: str = Role.VIEWER) -> list:
    """The `auth=` of a route: any of the four ways in, with at least `role`."""
    return [ApiKeyAuth(role), AccessTokenAuth(role), SessionAuth(role), CookieAuth(role)]


def audit(request, action: str, obj=None, changes: dict | None = None):
    """portal.audit.log.record() for an API call: the person (session or token) is the actor; a
    key's calls name the key."""
    from portal.audit.log import record

    caller = getattr(request, "auth", None)
    changes = dict(changes or {})
    if isinstance(caller, Caller) and caller.kind == "key":
        changes["api_key"] = caller.identity
    return record(request, action, obj, changes)


def apply_changes(instance, values: dict) -> dict:
    """Set `values` on `instance`; {field: [old, new]} as text of what changed, for the audit trail."""
    changes = {}
    for name, value in values.items():
        old = getattr(instance, name)
        if old != value:
            changes[name] = [str(old), str(value)]
            setattr(instance, name, value)
    return changes


def filtered(filterset_class, params: Schema, queryset):
    """The page's FilterSet applied to an API's validated query parameters, so a list here and on
    its page hold the same rows. What the FilterSet refuses (an unknown site, a choice it does not
    know) is a 400 naming the fields, where the page would show it beside the filter."""
    data = {key: ("true" if value is True else "false" if value is False else value) for key, value in params}
    filterset = filterset_class({k: v for k, v in data.items() if v is not None}, queryset=queryset)
    if not filterset.is_valid():
        fields = {name: " ".join(str(e) for e in errors) for name, errors in filterset.errors.items()}
        message = "; ".join(f"{name}: {text}" for name, text in fields.items())
        raise ApiError(400, "invalid_filter", message, fields=fields)
    return filterset.qs


# --- values from outside ---------------------------------------------------------------------------


def storable_text(value: str) -> str:
    """Text PostgreSQL can store and pages can show: no NUL, no unpaired surrogate, no other
    control characters than tab and newlines."""
    if any(ord(char) < 32 and char not in "\t\n\r" for char in value) or "\x7f" in value:
        raise ValueError("must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def text(max_length: int, min_length: int = 0):
    """A stripped string of bounded length that the database stores as it came."""
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        AfterValidator(storable_text),
    ]


def bounded_moment(value: datetime) -> datetime:
    """An instant between 2000 and 2100; one without an offset is read in the tenant's time zone
    (the zone the request runs in), as the pages read their date inputs. The year is checked on
    the value as written: converting year 1 or 9999 to UTC can overflow."""
    if not 2000 <= value.year < 2100:
        raise ValueError("must be between 2000 and 2100")
    return timezone.make_aware(value) if timezone.is_naive(value) else value


moment = Annotated[datetime, AfterValidator(bounded_moment)]


class ErrorBody(Schema):
    code: str
    message: str


class ErrorOut(Schema):
    """The one error shape: {"error": {"code", "message", ...}}."""

    error: ErrorBody


# --- the error shape ------------------------------------------------------------------------------


def field_name(location: tuple) -> str:
    """("query", "days") -> "days"; ("body", "payload", "name") -> "name" (the body's parameter
    name is ours, not the caller's)."""
    parts = [str(part) for part in location]
    if parts and parts[0] == "body" and len(parts) > 2:
        parts = parts[2:]
    elif parts and parts[0] in ("body", "query", "path", "header", "cookie", "form"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_error(request, exc: ValidationError):
    fields = {}
    for error in exc.errors:
        name = field_name(tuple(error.get("loc", ())))
        fields.setdefault(name, str(error.get("msg", "invalid")).removeprefix("Value error, "))
    message = "; ".join(f"{name}: {text}" for name, text in fields.items()) + "."
    return json_error(400, "invalid_request", message, fields=fields)


def http_error(request, exc: HttpError):
    if isinstance(exc, AuthenticationError):
        return json_error(
            401,
            "unauthenticated",
            "Send an API key (X-API-Key), a bearer token from /api/v1/auth/login, or sign in.",
        )
    return json_error(exc.status_code, HTTP_CODES.get(exc.status_code, "error"), str(exc))


def install_error_shape(api: NinjaAPI) -> None:
    api.add_exception_handler(ApiError, lambda request, exc: exc.response())
    api.add_exception_handler(ValidationError, validation_error)
    api.add_exception_handler(HttpError, http_error)
    api.add_exception_handler(Http404, lambda request, exc: json_error(404, "not_found", "There is no such object."))
    api.add_exception_handler(
        PermissionDenied, lambda request, exc: json_error(403, "forbidden", str(exc) or "You may not do this.")
    )


# --- pagination -----------------------------------------------------------------------------------


ERRORS = dict.fromkeys((400, 401, 403, 404, 409), ErrorOut)  # what any route may answer besides its own


class Routes:
    """A router's routes in one line each: the path, the answer's schema, a summary, and where it
    differs from the usual, the role (viewer), the status (200), pages (none) or errors (ERRORS):

        routes = Routes(router)

        @routes.get("/api/v1/devices/", list[DeviceOut], "Locks", pages=PageNumber)
        @routes.post("/api/v1/devices/", DeviceOut, "Add a lock", role=Role.ADMIN, status=201)

    which stands for `@router.get(path, response={status: out, **ERRORS}, auth=member(role),
    summary=…)` with `@paginate(pages)` under it."""

    def __init__(self, router: Router, errors: dict | None = None):
        self.router, self.errors = router, ERRORS if errors is None else errors

    def route(self, method: str, path: str, out, summary: str, role=Role.VIEWER, status=200, pages=None):
        def decorator(view):
            view = paginate(pages)(view) if pages is not None else view
            operation = self.router.api_operation(
                [method], path, response={status: out, **self.errors}, auth=member(role), summary=summary
            )
            return operation(view)

        return decorator

    def get(self, path: str, out, summary: str, **options):
        return self.route("GET", path, out, summary, **options)

    def post(self, path: str, out, summary: str, **options):
        return self.route("POST", path, out, summary, **options)

    def put(self, path: str, out, summary: str, **options):
        return self.route("PUT", path, out, summary, **options)

    def delete(self, path: str, out, summary: str, **options):
        return self.route("DELETE", path, out, summary, **options)


def page_link(request, page: int | None) -> str | None:
    if page is None:
        return None
    query = request.GET.copy()
    query["page"] = str(page)
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


class PageNumber(PaginationBase):
    """Seed 004's pages: {count, next, previous, total_pages, current_page, results}."""

    class Input(Schema):
        page: int = Field(1, ge=1, le=1_000_000)
        page_size: int = Field(20, ge=1, le=100)

    class Output(Schema):
        count: int
        next: str | None
        previous: str | None
        total_pages: int
        current_page: int
        results: list[Any]

    items_attribute = "results"

    def paginate_queryset(self, queryset, pagination: Input, request, **params):
        count = self._items_count(queryset)
        pages = max(1, math.ceil(count / pagination.page_size))
        page = pagination.page
        if page > pages and count:
            raise ApiError(404, "no_such_page", f"There are {pages} pages of {pagination.page_size}.")
        start = (page - 1) * pagination.page_size
        return {
            "count": count,
            "next": page_link(request, page + 1 if page < pages else None),
            "previous": page_link(request, page - 1 if page > 1 else None),
            "total_pages": pages,
            "current_page": page,
            "results": queryset[start : start + pagination.page_size],
        }


class Window(PaginationBase):
    """Seed 003's plain JSON arrays, bounded: `limit` rows (default 100, at most 1000) from `offset`."""

    class Input(Schema):
        limit: int = Field(100, ge=1, le=1000)
        offset: int = Field(0, ge=0, le=10_000_000)

    Output = None  # the answer stays the plain list seed 003's clients read

    def paginate_queryset(self, queryset, pagination: Input, request, **params):
        return list(queryset[pagination.offset : pagination.offset + pagination.limit])


# --- the API and its URLs -------------------------------------------------------------------------


def fleet_routers() -> list[Router]:
    """`router` of every installed app's `api` module (portal.outlets.api, portal.locks.api…)."""
    return [module.router for module in app_modules("api") if isinstance(getattr(module, "router", None), Router)]


def build_api(routers: list[Router], namespace: str = "fieldwatch") -> NinjaAPI:
    """A NinjaAPI with the error shape and these routers at the root (routes carry full paths)."""
    api = NinjaAPI(
        title="Fieldwatch integration API",
        version="1",
        urls_namespace=namespace,
        docs_url=None,  # the one document is /api/schema/ (portal/api/openapi.py)
        openapi_url=None,
    )
    install_error_shape(api)
    for router in routers:
        api.add_router("", router)
    return api


@functools.cache
def tenant_api() -> NinjaAPI:
    from portal.api.cookies import router as cookie_router
    from portal.api.session import router as session_router
    from portal.api.tokens import router as token_router

    return build_api([session_router, token_router, cookie_router, *fleet_routers()])


@functools.cache
def public_api() -> NinjaAPI:
    """The public host's few JSON routes (seed 000's /auth/register/), in the same document."""
    from portal.api.cookies import public_router

    return build_api([public_router], namespace="fieldwatch-public")


def guarded(view):
    """Ninja's view, with a JSON 405 for a wrong method and a 413 judged by Content-Length."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return json_error(400, "bad_content_length", "Content-Length is not a number.")
        if length > MAX_BODY:
            return json_error(413, "too_large", f"The body is larger than {MAX_BODY} bytes.")
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            response = json_error(405, "method_not_allowed", f"Use {allowed.replace(', ', ' or ')}.")
            response["Allow"] = allowed
        return response

    wrapped.csrf_exempt = True  # sessions are checked by SessionAuth, on writes, as ninja intends
    return wrapped


def urls(api: NinjaAPI | None = None) -> tuple[list, str]:
    """The API's URL patterns for include(): every route guarded; no docs page, no root view
    (ninja's root pattern would answer "/" on tenant hosts)."""
    api = api or tenant_api()
    patterns, app_name, _ = api.urls
    routes = [
        path(str(pattern.pattern), guarded(pattern.callback), name=pattern.name)
        for pattern in patterns
        if pattern.name != "api-root"
    ]
    return routes, app_name


def openapi_paths() -> dict:
    """The ninja routes' part of the OpenAPI document, with security schemes named as the
    hand-written part names them."""
    document = tenant_api().get_openapi_schema(path_prefix="/")
    renamed = {
        "ApiKeyAuth": "apiKey",
        "AccessTokenAuth": "accessToken",
        "SessionAuth": "session",
        "CookieAuth": "accessCookie",
    }
    for operations in document["paths"].values():
        for operation in operations.values():
            operation["security"] = [
                {renamed.get(name, name): scopes for name, scopes in entry.items()}
                for entry in operation.get("security", [])
            ]
            operation.setdefault("responses", {})
    components = document.get("components", {})
    schemes = {renamed.get(name, name): scheme for name, scheme in components.get("securitySchemes", {}).items()}
    return {"paths": document["paths"], "schemas": components.get("schemas", {}), "securitySchemes": schemes}

import copy
import logging
import time

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpResponseNotFound
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve
from django.utils import timezone
from django_tenants.middleware.main import TenantMainMiddleware

from portal.core.errors import json_error
from portal.tenancy.models import Membership

logger = logging.getLogger(__name__)

# The session remembers the tenant it was made for; a session presented on another host is void.
SESSION_TENANT_KEY = "fieldwatch_tenant"

# Paths on a tenant host that need no membership: signing in, accepting an invitation, health,
# and device endpoints (which authenticate devices themselves).
OPEN_PREFIXES = ("/accounts/", "/invitations/", "/health/", "/static/")
# Seed 000's REST API (portal/facilities/api.py, portal/devices/api.py) authenticates its callers
# itself, as the device API does: API keys and tokens have no session to send to a sign-in page.
# Its cookie sign-in (/auth/, portal/api/cookies.py) answers for itself too.
SEED_000_API_PREFIXES = ("/assets/sites/", "/assets/assets/", "/assets/devices/", "/assets/sensors/", "/auth/")
DEVICE_PREFIXES = ("/api/", "/ingest/", *SEED_000_API_PREFIXES)


HOST_CACHE_SECONDS = 10
_hosts: dict[str, tuple[float, object]] = {}


def forget_hosts(**kwargs) -> None:
    """A tenant or domain changed in this process: route afresh (other processes within seconds)."""
    _hosts.clear()


class TenantHostMiddleware(TenantMainMiddleware):
    """Route by host; an unknown host gets a clear 404 page (and /health/ still answers).

    Host → tenant is looked up at most every HOST_CACHE_SECONDS per process: a query per
    request is a measurable share of a device API call. A suspension reaches other processes
    within that time."""

    def get_tenant(self, domain_model, hostname):
        entry = _hosts.get(hostname)
        if entry is None or entry[0] < time.monotonic():
            connection.search_path_changed = True  # the look-up SETs the public search_path
            tenant = super().get_tenant(domain_model, hostname)
            entry = _hosts[hostname] = (time.monotonic() + HOST_CACHE_SECONDS, tenant)
        return copy.copy(entry[1])  # each request gets its own instance to annotate

    def process_request(self, request):
        # set_tenant() forgets which search_path the connection has, so each request would SET
        # it again (a round trip): keep the record when this request wants the one it has.
        kept, connection.search_path_changed = connection.search_path_set_schemas, False
        response = super().process_request(request)
        if (
            kept
            and not connection.search_path_changed
            and connection.search_path_set_schemas is None
            and connection._get_cursor_search_paths() == kept
        ):
            connection.search_path_set_schemas = kept
        return response

    def no_tenant_found(self, request, hostname):
        if request.path == "/health/":
            self.setup_url_routing(request, force_public=True)
            return None
        if getattr(request, "lean", False):  # a device endpoint (portal.core.lean): the JSON error shape
            return json_error(404, "unknown_host", f"No organisation is served at {hostname}.")
        html = render_to_string("errors/unknown_host.html", {"hostname": hostname, "base_domain": settings.BASE_DOMAIN})
        return HttpResponseNotFound(html)


class TenantAccessMiddleware:
    """Decide who may see a tenant at all; views decide per role what they may do.

    Steps: void a session made for another host; answer for a suspended tenant; let open and
    device paths through; send anonymous people to sign in; refuse signed-in non-members (403);
    attach request.membership for the views.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.is_public:
            return self.respond(request, tenant)
        # times on pages and in CSV are the tenant's local times; the database stays in UTC
        timezone.activate(tenant.zone)
        try:
            return self.respond(request, tenant)
        finally:
            timezone.deactivate()

    def respond(self, request, tenant):
        request.membership = None
        if tenant is None:  # an unknown host let through for /health/ only
            return self.get_response(request)
        if request.user.is_authenticated and request.session.get(SESSION_TENANT_KEY) != tenant.schema_name:
            void_session(request)
        if tenant.is_public:
            return self.get_response(request)

        path = request.path_info
        if not tenant.is_active and not path.startswith(("/health/", "/static/")):
            if path.startswith(DEVICE_PREFIXES):
                return suspended_json()
            return render(request, "errors/suspended.html", {"tenant": tenant}, status=403)

        if request.user.is_authenticated:
            request.membership = Membership.objects.filter(user=request.user, tenant=tenant).first()
        if path.startswith(OPEN_PREFIXES + DEVICE_PREFIXES) or request.membership is not None:
            return self.get_response(request)  # a member's unknown address is Django's own 404
        # Only outsiders pay for resolving the path twice (Django resolves it again): an address
        # that exists nowhere is a plain 404 for them too, not a sign-in page.
        if not resolves(request):
            return self.get_response(request)
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if request.membership is None:
            raise PermissionDenied("You are not a member of this organisation.")
        return self.get_response(request)


class DeviceTenantMiddleware(TenantAccessMiddleware):
    """TenantAccessMiddleware on the lean stack of device paths (portal.core.lean): the tenant's
    time zone while the view runs, and a suspended tenant's 403 in the JSON error shape; no
    session, no membership (devices authenticate themselves)."""

    def respond(self, request, tenant):
        request.membership = None
        if tenant is not None and not tenant.is_public and not tenant.is_active:
            return suspended_json()
        return self.get_response(request)

    def process_exception(self, request, exception):
        """The database away (or a connection it dropped): 503, which devices retry."""
        if isinstance(exception, OperationalError | InterfaceError):
            logger.error("device request to %s: database unavailable: %s", request.path, exception)
            response = json_error(503, "unavailable", "The service is briefly unavailable; send this again shortly.")
            response["Retry-After"] = "5"
            return response
        return None


def void_session(request) -> None:
    """Drop a session made for another host (or none), silently: logout() would send
    user_logged_out, and the audit log of the tenant it was replayed on would record a sign-out
    of someone who never signed in there. The session row goes; this request is anonymous."""
    request.session.flush()
    request.user = AnonymousUser()


def suspended_json():
    return json_error(403, "tenant_suspended", "This organisation is suspended.")


def resolves(request) -> bool:
    try:
        resolve(request.path_info, urlconf=getattr(request, "urlconf", None))
    except Resolver404:
        return False
    return True


def bind_session_to_tenant(request) -> None:
    """Record in the session which tenant it belongs to (called at every sign-in)."""
    tenant = getattr(request, "tenant", None)
    request.session[SESSION_TENANT_KEY] = tenant.schema_name if tenant else connection.schema_name

import copy
import time

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpResponseNotFound
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve
from django_tenants.middleware.main import TenantMainMiddleware

from portal.core.errors import json_error
from portal.tenancy.models import Membership

# The session remembers the tenant it was made for; a session presented on another host is void.
SESSION_TENANT_KEY = "fieldwatch_tenant"

# Paths on a tenant host that need no membership: signing in, accepting an invitation, health,
# and device endpoints (which authenticate devices themselves).
OPEN_PREFIXES = ("/accounts/", "/invitations/", "/health/", "/static/")
DEVICE_PREFIXES = ("/api/", "/ingest/")


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
            tenant = super().get_tenant(domain_model, hostname)
            entry = _hosts[hostname] = (time.monotonic() + HOST_CACHE_SECONDS, tenant)
        return copy.copy(entry[1])  # each request gets its own instance to annotate

    def no_tenant_found(self, request, hostname):
        if request.path == "/health/":
            self.setup_url_routing(request, force_public=True)
            return None
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
        request.membership = None
        if tenant is None:  # an unknown host let through for /health/ only
            return self.get_response(request)
        if request.user.is_authenticated and request.session.get(SESSION_TENANT_KEY) != tenant.schema_name:
            logout(request)
        if tenant.is_public:
            return self.get_response(request)

        path = request.path_info
        if not tenant.is_active and not path.startswith(("/health/", "/static/")):
            if path.startswith(DEVICE_PREFIXES):
                return json_error(403, "tenant_suspended", "This organisation is suspended.")
            return render(request, "errors/suspended.html", {"tenant": tenant}, status=403)

        if request.user.is_authenticated:
            request.membership = Membership.objects.filter(user=request.user, tenant=tenant).first()
        if path.startswith(OPEN_PREFIXES + DEVICE_PREFIXES) or not resolves(request):
            return self.get_response(request)  # an address that exists nowhere is a plain 404
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if request.membership is None:
            raise PermissionDenied("You are not a member of this organisation.")
        return self.get_response(request)


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

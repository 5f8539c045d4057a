import importlib
import importlib.util
from datetime import timedelta
from functools import cache

from django.apps import apps
from django.shortcuts import render
from django.utils import timezone

from portal.audit.models import AuditLog
from portal.tenancy.models import Invitation, Membership


@cache
def widget_providers() -> list:
    """Each app may add dashboard cards with a `dashboard.widgets(request)` function."""
    names = [f"{app.name}.dashboard" for app in apps.get_app_configs()]
    return [importlib.import_module(name).widgets for name in names if importlib.util.find_spec(name)]


def dashboard(request):
    """The tenant's front page: each fleet's cards, members and recent activity."""
    tenant = request.tenant
    week_ago = timezone.now() - timedelta(days=7)
    context = {
        "member_count": Membership.objects.filter(tenant=tenant).count(),
        "pending_invitations": Invitation.objects.pending().filter(tenant=tenant).count(),
        "changes_this_week": AuditLog.objects.filter(created_at__gte=week_ago).count(),
        "recent_activity": AuditLog.objects.all()[:10],
        "widgets": [widget for provider in widget_providers() for widget in provider(request)],
    }
    return render(request, "core/dashboard.html", context)


def public_home(request):
    """The public site: a landing page, or the signed-in person's organisations."""
    memberships = []
    if request.user.is_authenticated:
        memberships = Membership.objects.filter(user=request.user).select_related("tenant").order_by("tenant__name")
    return render(request, "core/public_home.html", {"memberships": memberships})

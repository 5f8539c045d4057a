from datetime import timedelta

from django.shortcuts import render
from django.utils import timezone

from portal.audit.models import AuditLog
from portal.tenancy.models import Invitation, Membership


def dashboard(request):
    """The tenant's front page: counts and recent activity. Later fleets add their widgets."""
    tenant = request.tenant
    week_ago = timezone.now() - timedelta(days=7)
    context = {
        "member_count": Membership.objects.filter(tenant=tenant).count(),
        "pending_invitations": Invitation.objects.pending().filter(tenant=tenant).count(),
        "changes_this_week": AuditLog.objects.filter(created_at__gte=week_ago).count(),
        "recent_activity": AuditLog.objects.all()[:10],
    }
    return render(request, "core/dashboard.html", context)


def public_home(request):
    """The public site: a landing page, or the signed-in person's organisations."""
    memberships = []
    if request.user.is_authenticated:
        memberships = Membership.objects.filter(user=request.user).select_related("tenant").order_by("tenant__name")
    return render(request, "core/public_home.html", {"memberships": memberships})

from django.shortcuts import render
from django.views.decorators.http import require_GET

from portal.core import live, overview
from portal.tenancy.models import Membership

DASHBOARD_POLL_SECONDS = 15


def dashboard(request):
    """The tenant's front page: a live fleet overview (portal.core.overview's sections, kept live
    by dashboard_live)."""
    hashes = overview.versions(request)  # before rendering: a change meanwhile shows next poll
    return render(request, "core/dashboard.html", dashboard_context(overview.render(request), hashes))


def dashboard_context(sections: list[dict], hashes: dict) -> dict:
    return {
        "sections": sections,
        # the poll hands back each section's version as shown here
        "live_versions": overview.encode(hashes),
        "poll_seconds": DASHBOARD_POLL_SECONDS,
    }


@require_GET
def dashboard_live(request):
    """The dashboard's poll: each section's version again (a few indexed queries in all, whatever
    the fleet's size); 204 while none moved, else only the sections that moved, swapped out of
    band (of a panel whose values alone moved, the rows that changed), and the polling element
    with the new versions."""
    try:
        shown = overview.decode(request.GET.get("v", ""))
    except ValueError as error:
        return live.bad_cursor(live.BadCursor(str(error)))
    current = overview.versions(request)
    moved, advanced = overview.changes(shown, current)
    if not moved and not advanced:
        return live.nothing_new()
    context = dashboard_context(overview.render(request, only=moved, advanced=advanced), current) | {"oob": True}
    return live.render(request, "core/dashboard.html#live", context)


def public_home(request):
    """The public site: a landing page, or the signed-in person's organisations."""
    memberships = []
    if request.user.is_authenticated:
        memberships = Membership.objects.filter(user=request.user).select_related("tenant").order_by("tenant__name")
    return render(request, "core/public_home.html", {"memberships": memberships})

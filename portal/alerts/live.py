"""The navigation's open-alert count, live (portal.core.live): every page carries it.

The badge's cursor is the count it shows. A poll is one indexed count: 204 while it is unchanged,
the badge again when an alert opened or closed. Every page of every member polls this, so it must
stay one query whatever the tenant's size.
"""

from django.views.decorators.http import require_GET

from portal.alerts.models import Alert
from portal.core import live


@require_GET
def nav_count(request):
    count = Alert.objects.active().count()
    # the cursor is only compared, never parsed: anything but the current count gets the badge
    if request.GET.get("count", "")[:12] == str(count):
        return live.nothing_new()
    return live.render(request, "alerts/nav_count.html", {"open_alert_count": count})

from django.utils.functional import SimpleLazyObject

from portal.alerts.models import Alert


def open_alerts(request) -> dict:
    """The navigation's open-alert count (members of a tenant only; one indexed count), lazy: only
    the navbar asks, so fragments (htmx partials, live answers) cost no query for it."""
    if getattr(request, "membership", None) is None:
        return {}
    return {"open_alert_count": SimpleLazyObject(lambda: Alert.objects.active().count())}

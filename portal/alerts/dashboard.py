from django.db.models import Count
from django.urls import reverse

from portal.alerts.models import Alert, Severity
from portal.core.overview import Section


def sections() -> list[Section]:
    """Live (portal.core.overview): the version is the open alerts' counts themselves."""
    counts = (
        (
            "alerts-counts",
            lambda: Alert.objects.active().order_by("severity").values("severity").annotate(n=Count("id")),
        ),
    )
    return [Section("alerts-cards", lambda request, pulse: pulse.probed["alerts-counts"], cards=widgets, probes=counts)]


def widgets(request) -> list[dict]:
    """The dashboard card of open alerts by severity (links filter the alerts list)."""
    counts = Alert.objects.counts_by_severity()
    total = sum(counts.values())
    url = reverse("alerts-alert-list") + "?status=active"
    parts = [f"{counts[s]} {label.lower()}" for s, label in reversed(Severity.choices) if counts[s]]
    return [
        {
            "label": "Open alerts",
            "value": total,
            "url": url,
            "alert": bool(counts[Severity.CRITICAL] or counts[Severity.HIGH]),
            "note": " · ".join(parts) if parts else "all clear",
            "testid": "open-alerts-widget",
        }
    ]

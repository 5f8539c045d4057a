from django.urls import reverse

from portal.facilities.models import Asset, Site


def widgets(request) -> list[dict]:
    """Facilities cards on the dashboard: sites, assets, and assets needing attention."""
    assets = Asset.objects.with_online()
    total = assets.count()
    if not total and not Site.objects.exists():
        return []
    faulty = assets.filter(status=Asset.Status.FAULT).count()
    offline = assets.exclude(status=Asset.Status.DECOMMISSIONED).filter(online=False).count()
    return [
        {"label": "Sites", "value": Site.objects.count(), "url": reverse("facilities-site-list")},
        {"label": "Assets", "value": total, "url": reverse("facilities-asset-list"), "note": f"{offline} without a reporting device"},
        {"label": "Assets in fault", "value": faulty, "alert": bool(faulty), "url": reverse("facilities-asset-list") + "?status=fault"},
    ]

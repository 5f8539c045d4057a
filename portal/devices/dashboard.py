"""The fleet's devices on the dashboard: online and offline (the offline ones listed), readings
in the last hour, dead letters today. A handful of indexed queries whatever the fleet's size.

Live (portal.core.overview): the cards' version moves with a device seen (new readings), the
fleet's online state, a letter refused and the minute (readings age out of the last hour); the
offline list's with the online state alone."""

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from portal.core.overview import Section, pulse
from portal.tenancy.models import Role
from telemetry import queries
from telemetry.models import DeadLetter, Device

OFFLINE_LISTED = 8  # offline devices named on the dashboard; the rest are one link away


def sections() -> list[Section]:
    return [
        Section(
            "devices-cards",
            cards_version,
            cards=widgets,
            probes=(
                ("devices-letters", lambda: DeadLetter.objects.order_by("-received_at").values("received_at")[:1]),
            ),
        ),
        Section("devices-offline", lambda request, pulse: pulse.online, panel=offline_panel),
    ]


def cards_version(request, pulse) -> str:
    newest_letter = pulse.probed["devices-letters"]
    # the last hour's count changes as readings age out of it: each minute, while any are that recent
    recent = pulse.fleet.newest_seen and pulse.now - pulse.fleet.newest_seen < timedelta(hours=1)
    minute = pulse.now.replace(second=0, microsecond=0).isoformat() if recent else ""
    return f"{pulse.online}|{pulse.fleet.newest_seen}|{newest_letter}|{pulse.today}|{minute}"


def widgets(request) -> list[dict]:
    fleet = pulse(request).fleet  # queried once for the versions and the cards
    total, online = fleet.total, fleet.online
    if not total:
        return []
    offline_url = reverse("devices-device-list") + "?status=offline"
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)  # in the tenant's zone
    letters = DeadLetter.objects.filter(received_at__gte=midnight).count()
    can_replay = request.membership is not None and request.membership.allows(Role.OPERATOR)
    return [
        {
            "label": "Devices online",
            "value": f"{online} of {total}",
            "url": offline_url if online < total else reverse("devices-device-list"),
            "alert": online < total,
            "note": f"{total - online} offline" if online < total else "all reporting",
            "testid": "devices-online-widget",
        },
        {
            "label": "Readings, last hour",
            "value": f"{queries.readings_since(timezone.now() - timedelta(hours=1)):,}",
            "url": reverse("devices-explorer-query"),
            "testid": "readings-widget",
        },
        {
            "label": "Dead letters today",
            "value": letters,
            "url": reverse("devices-deadletter-list") + f"?from={midnight:%Y-%m-%d}" if can_replay else "",
            "alert": bool(letters),
            "note": "input refused since midnight" if letters else "nothing refused since midnight",
            "testid": "dead-letters-widget",
        },
    ]


def offline_panel(request) -> dict | None:
    """The offline devices, most recently seen first (never-seen ones last)."""
    offline = Device.objects.offline()
    shown = list(offline.order_by("-last_seen", "device_id")[:OFFLINE_LISTED])
    if not shown:
        return None
    more = offline.count() - len(shown) if len(shown) == OFFLINE_LISTED else 0
    return {
        "template": "devices/dashboard_offline.html",
        "devices": shown,
        "more": more,
        "url": reverse("devices-device-list") + "?status=offline",
    }

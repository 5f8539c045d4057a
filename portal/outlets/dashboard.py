"""Outlet cards on the dashboard: usage today against yesterday, counting devices online, top outlets."""

from django.urls import reverse
from django.utils import timezone

from portal.core.overview import Section
from portal.outlets import queries, stats
from portal.outlets.models import MachineDevice, Outlet
from telemetry.models import DeviceEvent


def sections() -> list[Section]:
    """Live (portal.core.overview): the cards move with a usage event stored, an outlet or a
    binding changed, the day, and the counters' online state."""
    probes = (
        (
            "outlets-outlets",
            lambda: (f"SELECT count(*) AS n, max(updated_at) AS changed FROM {Outlet._meta.db_table}", []),
        ),
        ("outlets-events", lambda: DeviceEvent.objects.order_by("-pk").values("pk")[:1]),
        (
            "outlets-bindings",
            lambda: (f"SELECT max(id) AS made, max(deactivated_date) AS ended FROM {MachineDevice._meta.db_table}", []),
        ),
    )
    return [Section("outlets-cards", version, cards=widgets, probes=probes)]


def version(request, pulse) -> str:
    probed = [pulse.probed[name] for name in ("outlets-outlets", "outlets-events", "outlets-bindings")]
    return f"{probed}|{pulse.today}|{pulse.online}"


def widgets(request) -> list[dict]:
    if not Outlet.objects.exists():
        return []
    zone = stats.tenant_zone()
    today = stats.floor_bucket(timezone.now(), "day", zone)
    answer = stats.compute(stats.build_query("day", days=2, zone=zone))
    yesterday_count, today_count = answer.current.values[stats.TOTAL][-2:]
    delta = stats.delta_percent(today_count, yesterday_count)
    devices = queries.counting_devices()
    online = devices.online().count()
    cards = [
        {
            "label": "Usage today",
            "value": today_count,
            "url": reverse("outlets-usage") + "?granularity=hour&days=2&compare=on",
            "note": f"yesterday {yesterday_count}"
            + ("" if delta is None else f" ({'+' if delta >= 0 else ''}{delta} %)")
            + f" · counters +{answer.current.measured['counter'][stats.TOTAL][-1]}",
            "testid": "widget-usage-today",
        },
        {
            "label": "Counters online",
            "value": f"{online} / {devices.count()}",
            "url": reverse("outlets-device-list") + "?status=online",
            "testid": "widget-counters-online",
        },
    ]
    top = top_outlets(today, stats.step(today, "day", zone))
    if top:
        cards.append(
            {
                "label": "Top outlet today",
                "value": top[0][1],
                "url": reverse("outlets-outlet-detail", args=[top[0][0].pk]),
                "note": " · ".join(f"{outlet.name} {count}" for outlet, count in top[:3]),
                "testid": "widget-top-outlets",
            }
        )
    return cards


def top_outlets(start, end, limit: int = 3) -> list[tuple[Outlet, int]]:
    """The busiest outlets in [start, end) (a day: raw events, one query), busiest first."""
    counts = queries.usage_by_outlet(start, end, limit)
    outlets = Outlet.objects.in_bulk([outlet_id for outlet_id, _ in counts])
    return [(outlets[outlet_id], count) for outlet_id, count in counts if outlet_id in outlets]

"""Facilities on the dashboard: sites and assets, the assets in fault with their reason, and the
latest value of each site's key sensors (Sensor.on_dashboard). Bounded lists, a few queries.

Live (portal.core.overview): the cards and the faults move with changes people make (sites,
assets, bindings, sensors: all audited) and with the fleet's online state; the key sensors with
those and any device seen (a new reading)."""

from typing import NamedTuple

from django.db.models import Max
from django.template.defaultfilters import floatformat
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import mark_safe

from portal.audit.models import AuditLog
from portal.core.overview import Section
from portal.core.templatetags.live import fresh_badge
from portal.facilities.live import LATE_READINGS
from portal.facilities.models import Asset, Site
from portal.facilities.views import FRESH_FOR
from telemetry import queries

FAULTS_LISTED = 10
KEY_SENSORS_LISTED = 60  # over all sites: the dashboard is a summary, the asset pages have the rest


def sections() -> list[Section]:
    return [
        Section("facilities-cards", things_version, cards=widgets),
        Section("facilities-faults", things_version, panel=lambda request: faults_panel()),
        Section(
            "facilities-key-sensors",
            lambda request, pulse: str(pulse.changes),  # which sensors, their labels and units
            panel=lambda request: key_sensors_panel(),
            cursor=lambda request, pulse: pulse.fleet.newest_seen,  # a device seen: values may have moved
            updates=lambda request, since: key_sensor_updates(since),
        ),
    ]


def things_version(request, pulse) -> str:
    return f"{pulse.changes}|{pulse.online}"


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
        {
            "label": "Assets",
            "value": total,
            "url": reverse("facilities-asset-list"),
            "note": f"{offline} without a reporting device",
        },
        {
            "label": "Assets in fault",
            "value": faulty,
            "alert": bool(faulty),
            "url": reverse("facilities-asset-list") + "?status=fault",
            "testid": "faults-widget",
        },
    ]


def faults_panel() -> dict | None:
    """Assets marked in fault (who marked them and when, from the audit log) and operational
    assets whose devices have all gone silent (since when)."""
    marked = list(Asset.objects.filter(status=Asset.Status.FAULT).select_related("site")[:FAULTS_LISTED])
    silent = list(
        Asset.objects.with_online()
        .filter(status=Asset.Status.OPERATIONAL, online=False, bindings__isnull=False)
        .annotate(last_seen=Max("bindings__device__last_seen"))
        .select_related("site")
        .order_by("-last_seen", "tag")[:FAULTS_LISTED]
    )
    if not marked and not silent:
        return None
    marks = fault_marks([asset.pk for asset in marked])
    rows = [{"asset": asset, "kind": "fault", "mark": marks.get(str(asset.pk))} for asset in marked]
    rows += [{"asset": asset, "kind": "silent", "since": asset.last_seen} for asset in silent]
    return {"template": "facilities/dashboard_faults.html", "rows": rows[:FAULTS_LISTED]}


def fault_marks(asset_ids: list[int]) -> dict[str, AuditLog]:
    """{asset id: the audit entry that set its status to fault} for the newest such change of each."""
    if not asset_ids:
        return {}
    entries = (
        AuditLog.objects.filter(
            object_type="facilities.asset",
            object_id__in=[str(pk) for pk in asset_ids],
            changes__status__1=Asset.Status.FAULT,
        )
        .order_by("object_id", "-created_at")
        .distinct("object_id")
    )
    return {entry.object_id: entry for entry in entries}


class SiteHeading(NamedTuple):
    pk: int
    name: str


# The key sensors listed (bounded, by site, asset and key), their newest readings joined to them
# by telemetry (queries.with_newest_readings) in the same statement: one index probe for each
# listed sensor only. Bindings are joined on the sensor's device id directly (no join through
# telemetry_device): planning four tables costs less than the query runs.
KEY_SENSORS_SQL = """
    SELECT s.id AS pk, s.key, s.label, s.unit, s.precision, a.id AS asset_pk, a.tag,
           site.id AS site_pk, site.name AS site_name
    FROM telemetry_sensor s
    JOIN facilities_devicebinding b ON b.device_id = s.device_id
    JOIN facilities_asset a ON a.id = b.asset_id
    JOIN facilities_site site ON site.id = a.site_id
    WHERE s.on_dashboard
    ORDER BY site.name, a.tag, s.key
    LIMIT %s"""


def key_sensors() -> list[dict]:
    """The key sensors listed with their latest readings, as plain values: one query for all
    sites. Plain values and rows drawn in Python, because a poll with news re-draws up to 60 of
    them and whole models and a template per row were most of its time."""
    found = queries.with_newest_readings(
        KEY_SENSORS_SQL, [KEY_SENSORS_LISTED], sensor_column="pk", order_by="k.site_name, k.tag, k.key"
    )
    return [
        {
            "pk": pk,
            "label": label or key,
            "unit": unit,
            "precision": precision,
            "asset_pk": asset_pk,
            "tag": tag,
            "site": SiteHeading(site_pk, site_name),
            "ts": ts,
            "value": value,
        }
        for pk, key, label, unit, precision, asset_pk, tag, site_pk, site_name, ts, value in found
    ]


def key_sensor_rows(rows: list[dict], oob: bool = False) -> list[str]:
    """Each key sensor's <tr>, the same on the page and in the poll (which swaps them by id,
    out of band). Drawn in Python, with the asset link reversed once: a poll with news re-draws
    up to 60 rows, and a template include per row was most of its time."""
    # "/assets/0/" → "/assets/{pk}/": one reverse() for all rows instead of one each
    head, tail = reverse("facilities-asset-detail", args=[0]).rsplit("0", 1)
    swap = ' hx-swap-oob="true"' if oob else ""
    drawn = []
    for row in rows:
        value = row["value"]
        shown = f"{floatformat(value, row['precision'])} {escape(row['unit'])}" if value is not None else "—"
        drawn.append(
            mark_safe(  # noqa: S308 (every value from outside is escaped above and here)
                f'<tr id="key-sensor-{row["pk"]:d}" data-testid="key-sensor"{swap}>'
                f'<td><a href="{head}{row["asset_pk"]:d}{tail}">{escape(row["tag"])}</a> '
                f'<span class="small text-body-secondary">{escape(row["label"])}</span></td>'
                f'<td class="text-end font-monospace text-nowrap">{shown}</td>'
                f'<td class="text-end text-nowrap small">{fresh_badge(row["ts"], FRESH_FOR)}</td></tr>'
            )
        )
    return drawn


def key_sensors_panel() -> dict | None:
    """Each site's key sensors with their latest readings."""
    rows = key_sensors()
    if not rows:  # a hint where there are sites to follow; nothing for a fleet without any
        return {"template": "facilities/dashboard_key_sensors.html", "sites": []} if Site.objects.exists() else None
    sites: dict = {}
    for row, drawn in zip(rows, key_sensor_rows(rows), strict=True):
        sites.setdefault(row["site"], []).append(drawn)
    return {"template": "facilities/dashboard_key_sensors.html", "sites": list(sites.items())}


def key_sensor_updates(since) -> dict:
    """The rows of the key sensors that took a reading since the page's cursor (or a little
    before it: readings stamped a little behind the server's clock, as live pages allow)."""
    after = since - LATE_READINGS
    return {
        "template": "facilities/dashboard_key_sensor_rows.html",
        "rows": key_sensor_rows([row for row in key_sensors() if row["ts"] and row["ts"] > after], oob=True),
    }

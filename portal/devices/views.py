"""Pages about devices and their telemetry, shared by every kind of fleet.

Reading pages need no role check: TenantAccessMiddleware has already refused non-members, and
every role may read. The device actions (register, tokens, provisioning) are for admins. A
device of another tenant is not in this schema at all, so it is a 404 like any missing one.
"""

import csv
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import dateformat, timezone
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from portal.audit.log import record
from portal.core.charts import aggregate_chart, raw_chart
from portal.core.lists import PAGE_SIZE, Column, Echo, format_cell, list_response
from portal.devices.filters import DeviceFilter
from portal.devices.forms import BUCKET_CHOICES, RAW, ExplorerForm, local_input
from portal.tenancy.access import role_required
from portal.tenancy.models import Role
from telemetry import queries
from telemetry.models import DeadLetter, Device, Sensor, online_window

DEVICE_COLUMNS = [
    Column("device_id", "device_id"),
    Column("name", "name"),
    Column("kind", "kind"),
    Column("online", lambda device: "yes" if device.online else "no"),
    Column("last_seen", "last_seen"),
    Column("firmware", "firmware"),
    Column("mac", "mac"),
    Column("registered", lambda device: "yes" if device.assigned else "no"),
    Column("sensors", "sensor_count"),
]
EXPORT_CHUNK = 2000  # CSV lines per chunk written to the client
RECENT = 20  # events and rejected requests on a device's page
NEW_TOKEN_KEY = "fieldwatch_new_device_token"  # a token rotated on the page, until the next page shows it once


def get_device(pk: int) -> Device:
    """A device of the current tenant; another tenant's is not in this schema, so it is a 404."""
    return get_object_or_404(Device, pk=pk)


def device_list(request):
    queryset = Device.objects.annotate(sensor_count=Count("sensors")).order_by("device_id")
    filterset = DeviceFilter(request.GET, queryset=queryset)
    # "no device yet" and "none matches these filters" are different situations for a reader
    filtered = any(value for key, value in request.GET.items() if key not in ("sort", "page"))
    return list_response(request, filterset, "devices/list.html", DEVICE_COLUMNS, "devices", {"filtered": filtered})


@dataclass(frozen=True)
class SensorRow:
    sensor: Sensor
    ts: datetime | None  # of the newest reading, None if it never reported
    value: float | None
    fresh: bool  # reported within the window that counts a device as online


def device_detail(request, pk):
    device = get_device(pk)
    sensors = list(device.sensors.order_by("key"))
    latest = queries.latest_values(sensor.pk for sensor in sensors)  # one query for all sensors
    now = timezone.now()
    rows = []
    for sensor in sensors:
        ts, value = latest.get(sensor.pk, (None, None))
        rows.append(SensorRow(sensor, ts, value, ts is not None and now - ts <= online_window()))
    context = {
        "device": device,
        "sensor_rows": rows,
        "status": status_rows(device.status),
        "events": device.events.order_by("-ts", "-id")[:RECENT],
        # refused device API requests name the device by its id or, before it has one, its MAC
        "rejected": DeadLetter.objects.filter(device_ref__in=[ref for ref in (device.device_id, device.mac) if ref])
                    .order_by("-received_at", "-id")[:RECENT],
        "new_token": pop_new_token(request, device),
    }
    response = render(request, "devices/detail.html", context)
    if context["new_token"]:
        add_never_cache_headers(response)  # the raw token must not outlive this one page
    return response


STATUS_LABELS = {  # the keys the device API writes into Device.status, in the order the page lists them
    "current_count_basic": "Count basic", "current_count_standard": "Count standard", "current_count_premium": "Count premium",
    "on_time_basic": "On-time basic", "on_time_standard": "On-time standard", "on_time_premium": "On-time premium",
    "rtc_available": "RTC", "sd_card_available": "SD card", "wifi_connected": "Wi-Fi connected", "wifi_rssi": "Wi-Fi RSSI (dBm)",
    "uptime_seconds": "Uptime", "mode": "Last post mode", "device_timestamp": "Device clock", "reported_at": "Status posted",
    "heartbeat_at": "Last heartbeat",
}


def status_rows(status) -> list[tuple[str, str]]:
    """The device's latest reported status as (label, text): known keys first, in a fixed order;
    times in the portal's time zone, uptime as days and hours."""
    if not isinstance(status, dict):
        return []
    order = list(STATUS_LABELS)
    keys = sorted(status, key=lambda key: (order.index(key) if key in STATUS_LABELS else len(order), key))
    return [(STATUS_LABELS.get(key) or key.replace("_", " ").capitalize(), status_text(key, status[key])) for key in keys]


def status_text(key: str, value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "uptime_seconds" and isinstance(value, int):
        return str(timedelta(seconds=value))
    if key.endswith(("_at", "_timestamp")) and isinstance(value, str):
        try:
            return dateformat.format(timezone.localtime(datetime.fromisoformat(value)), "Y-m-d H:i:s")
        except (ValueError, TypeError, OverflowError):
            pass
    return str(value)


def pop_new_token(request, device: Device) -> str:
    """The token an admin just rotated for this device, once: it leaves the session here."""
    pending = request.session.get(NEW_TOKEN_KEY)
    if not pending or pending.get("device") != device.pk:
        return ""
    del request.session[NEW_TOKEN_KEY]
    return pending["token"]


# --- Device actions (admins) --------------------------------------------------------------------


def register(request, device: Device) -> str:
    if device.assigned_at is None:
        device.assigned_at = timezone.now()
        device.save(update_fields=["assigned_at"])
        record(request, "device.registered", device)
    return f"{device.device_id} is registered: its usage events count, earlier ones included."


def unregister(request, device: Device) -> str:
    if device.assigned_at is not None:
        device.assigned_at = None
        device.save(update_fields=["assigned_at"])
        record(request, "device.unregistered", device)
    return f"{device.device_id} is unregistered: its events are still stored but do not count until it is registered again."


def rotate_token(request, device: Device) -> str:
    raw = device.issue_token()
    device.save(update_fields=["token_hash", "token_created_at", "token_last_used_at", "provisioning_reset_at"])
    record(request, "device.token_rotated", device)  # never the token itself
    request.session[NEW_TOKEN_KEY] = {"device": device.pk, "token": raw}
    return f"{device.device_id} has a new token; the old one no longer works. Copy the token below now: it is shown only once."


def revoke_token(request, device: Device) -> str:
    device.revoke_token()
    device.save(update_fields=["token_hash", "token_created_at"])
    record(request, "device.token_revoked", device)
    return f"The token of {device.device_id} is revoked. To let it handshake again, reset its provisioning."


def reset_provisioning(request, device: Device) -> str:
    device.provisioning_reset_at = timezone.now()
    device.save(update_fields=["provisioning_reset_at"])
    record(request, "device.provisioning_reset", device)
    return f"The next handshake from {device.mac or device.device_id} gets a new token; its current token works until then."


DEVICE_ACTIONS = {
    "register": register,
    "unregister": unregister,
    "rotate-token": rotate_token,
    "revoke-token": revoke_token,
    "reset-provisioning": reset_provisioning,
}


@require_POST
@role_required(Role.ADMIN)
def device_action(request, pk, action):
    """One of DEVICE_ACTIONS on a device (the URL names it), audited; back to the device's page."""
    device = get_device(pk)
    messages.success(request, DEVICE_ACTIONS[action](request, device))
    return redirect("devices-device-detail", pk=device.pk)


# --- Telemetry explorer ---------------------------------------------------------------------


@dataclass(frozen=True)
class BucketRow:
    """One aggregate point as the table shows it, with its bounds for the raw drill-down."""

    start: datetime
    end: datetime
    avg: float
    min: float
    max: float
    last: float
    count: int
    drill_url: str = ""


def explore(data: dict, page_number) -> dict:
    """Steps: query raw readings or bucketed aggregates for the form's sensor and range; build
    the chart from all of them and a page of the table, newest first, with drill-down links."""
    sensor, bucket = data["sensor"], data["bucket"]
    # buckets start at whole multiples since the epoch in UTC (days at UTC midnight), as in SQL
    start, end = data["from"].astimezone(UTC), data["to"].astimezone(UTC)
    if bucket == RAW:
        result = queries.raw_readings([sensor.pk], start, end, limit=queries.MAX_RAW_ROWS)
        chart = raw_chart(result.rows, sensor.unit)
        rows = [(ts, value) for _, ts, value in result.rows]  # already newest first
    else:
        result = queries.aggregate([sensor.pk], start, end, bucket, limit=queries.MAX_POINTS)
        chart = aggregate_chart(result.rows, sensor.unit)
        width = queries.BUCKETS[bucket]
        rows = [BucketRow(p.bucket, p.bucket + width, p.avg, p.min, p.max, p.last, p.count) for p in reversed(result.rows)]
    page = Paginator(rows, PAGE_SIZE).get_page(page_number)
    if bucket != RAW:
        base = {"device": data["device"].pk, "sensor": sensor.pk, "bucket": RAW}
        page.object_list = [
            replace(row, drill_url="?" + urlencode({**base, "from": local_input(row.start), "to": local_input(row.end)}))
            for row in page.object_list
        ]
    return {
        "result": result,
        "chart": chart,
        "page": page,
        "rows": page.object_list,
        "raw": bucket == RAW,
        "bucket_label": "raw readings" if bucket == RAW else f"{dict(BUCKET_CHOICES)[bucket]} buckets",
        "query": form_query(data),
    }


def form_query(data: dict) -> dict:
    """The form's cleaned values as query parameters (the hidden fields of the CSV export)."""
    return {
        "device": data["device"].pk,
        "sensor": data["sensor"].pk,
        "from": local_input(data["from"]),
        "to": local_input(data["to"]),
        "bucket": data["bucket"],
    }


@require_GET
def explorer(request):
    params = request.GET
    if "device" in params and any(key not in params for key in ("from", "to", "bucket")):
        # a link with only a device and sensor (from a device page): fill in the default range
        # in the URL, so paging and reloads keep the same range instead of a moving "now"
        query = {**ExplorerForm.defaults(), **params.dict()}
        return redirect(f"{request.path}?{urlencode(query)}")
    form = ExplorerForm(params) if "device" in params else ExplorerForm()
    context = {"form": form}
    if form.is_bound and form.is_valid():
        context |= explore(form.cleaned_data, params.get("page"))
    template = "devices/explorer.html"
    # a history restore after a cache miss is an htmx request too, and needs the whole page
    if request.htmx and not request.htmx.history_restore_request:
        template += "#table" if request.htmx.target == "table" else "#explorer"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


@require_GET
def explorer_sensors(request):
    """The sensor menu for the device picked in the explorer (htmx swaps it in)."""
    form = ExplorerForm({"device": request.GET.get("device", "")})
    return render(request, "devices/explorer.html#sensor-select", {"form": form})


@require_POST
def explorer_export(request):
    """CSV of what the explorer shows, unabridged: every raw reading in range, streamed through
    a server-side cursor (memory stays flat for millions of rows), or every aggregate bucket."""
    form = ExplorerForm(request.POST)
    if not form.is_valid():
        return render(request, "devices/explorer.html", {"form": form}, status=400)
    data = form.cleaned_data
    sensor, bucket = data["sensor"], data["bucket"]
    start, end = data["from"].astimezone(UTC), data["to"].astimezone(UTC)
    if bucket == RAW:
        header = ["ts", "value"]
        rows = ((ts, value) for _, ts, value in queries.stream_raw([sensor.pk], start, end))
    else:
        header = ["bucket", "avg", "min", "max", "last", "count"]
        rows = ((p.bucket, p.avg, p.min, p.max, p.last, p.count) for p in aggregate_windows(sensor.pk, start, end, bucket))
    response = StreamingHttpResponse(csv_chunks(header, rows), content_type="text/csv; charset=utf-8")
    name = "-".join([data["device"].device_id, sensor.key, f"{start:%Y%m%dT%H%M}", f"{end:%Y%m%dT%H%M}", bucket])
    response["Content-Disposition"] = f'attachment; filename="{safe_filename(name)}.csv"'
    return response


def aggregate_windows(sensor_id: int, start: datetime, end: datetime, bucket: str):
    """Every aggregate point in [start, end), oldest first, queried MAX_POINTS buckets at a time:
    the explorer's query, uncapped, without holding a year of minutes in memory."""
    width = queries.BUCKETS[bucket]
    window = width * queries.MAX_POINTS
    cursor = queries.truncate(start, bucket)  # window edges on bucket edges: no bucket is split
    while cursor < end:
        yield from queries.aggregate([sensor_id], cursor, min(cursor + window, end), bucket).rows
        cursor += window


def csv_chunks(header: list[str], rows, chunk: int = EXPORT_CHUNK):
    """CSV text in chunks of `chunk` lines: one write per chunk rather than per row."""
    writer = csv.writer(Echo())
    yield writer.writerow(header)
    rows = iter(rows)
    while batch := list(islice(rows, chunk)):
        yield "".join(writer.writerow([format_cell(value) for value in row]) for row in batch)


def safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:150]

"""Pages about devices and their telemetry, shared by every kind of fleet.

Reading pages need no role check: TenantAccessMiddleware has already refused non-members, and
every role may read. The device actions (register, tokens, provisioning) are for operators and
up: they act on devices, not on the organisation's configuration (portal.tenancy.access). A
device of another tenant is not in this schema at all, so it is a 404 like any missing one.
"""

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from portal.audit.log import record
from portal.core import live
from portal.core.charts import aggregate_chart, raw_chart
from portal.core.editing import form_view
from portal.core.lists import PAGE_SIZE, Column, csv_lines, list_response
from portal.devices.filters import DeviceFilter
from portal.devices.forms import BUCKET_CHOICES, RAW, DeviceForm, ExplorerForm, SensorForm, local_input
from portal.tenancy.access import role_required
from portal.tenancy.models import Role
from portal.tenancy.tasks import enqueue_quietly
from telemetry import queries
from telemetry.models import DeadLetter, Device, MqttCredential, Sensor, online_window

DEVICE_COLUMNS = [
    Column("device_id", "device_id"),
    Column("name", "name"),
    Column("kind", "kind"),
    Column("online", "online"),
    Column("last_seen", "last_seen"),
    Column("firmware", "firmware"),
    Column("mac", "mac"),
    Column("registered", "assigned"),
    Column("sensors", "sensor_count"),
]
FOLLOWS_NOW = timedelta(minutes=2)  # an explorer range ending later than this before now stays live
RECENT = 20  # events and rejected requests on a device's page


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


def sensor_rows(device: Device) -> list[SensorRow]:
    """The device's sensors with their latest readings: two queries however many sensors."""
    sensors = list(device.sensors.order_by("key"))
    latest = queries.latest_values(sensor.pk for sensor in sensors)
    now = timezone.now()
    rows = []
    for sensor in sensors:
        ts, value = latest.get(sensor.pk, (None, None))
        rows.append(SensorRow(sensor, ts, value, ts is not None and now - ts <= online_window()))
    return rows


def device_cursor(device: Device, rows: list[SensorRow]) -> str:
    """The device page's live cursor: the newest of last_seen and its sensors' latest readings."""
    moments = [row.ts for row in rows if row.ts] + ([device.last_seen] if device.last_seen else [])
    return live.epoch(max(moments, default=None))


def device_detail(request, pk):
    return device_page(request, get_device(pk))


def device_page(request, device: Device, new_secret: str = "", kind: str = "token"):
    """The device's page; `new_secret` is a token just issued, shown on this one response only
    (never stored server-side: not in the session, not in the audit log)."""
    rows = sensor_rows(device)
    context = {
        "device": device,
        "sensor_rows": rows,
        "live_cursor": device_cursor(device, rows),
        "online_seconds": online_window().total_seconds(),
        "status": status_rows(device.status),
        "events": device.events.order_by("-ts", "-id")[:RECENT],
        # refused device API requests name the device by its id or, before it has one, its MAC
        "rejected": DeadLetter.objects.filter(
            device_ref__in=[ref for ref in (device.device_id, device.mac) if ref]
        ).order_by("-received_at", "-id")[:RECENT],
        "new_token": new_secret if kind != "mqtt" else "",
        "new_mqtt_secret": new_secret if kind == "mqtt" else "",
        "mqtt": MqttCredential.objects.filter(device=device).first(),
    }
    response = render(request, "devices/detail.html", context)
    if new_secret:
        add_never_cache_headers(response)  # the raw token must not outlive this one page
    return response


STATUS_LABELS = {  # the keys the device API writes into Device.status, in the order the page lists them
    "current_count_basic": "Count basic",
    "current_count_standard": "Count standard",
    "current_count_premium": "Count premium",
    "on_time_basic": "On-time basic",
    "on_time_standard": "On-time standard",
    "on_time_premium": "On-time premium",
    "rtc_available": "RTC",
    "sd_card_available": "SD card",
    "wifi_connected": "Wi-Fi connected",
    "wifi_rssi": "Wi-Fi RSSI (dBm)",
    "uptime_seconds": "Uptime",
    "mode": "Last post mode",
    "device_timestamp": "Device clock",
    "reported_at": "Status posted",
    "heartbeat_at": "Last heartbeat",
}


def status_rows(status) -> list[tuple[str, str]]:
    """The device's latest reported status as (label, text): known keys first, in a fixed order;
    times in the portal's time zone, uptime as days and hours."""
    if not isinstance(status, dict):
        return []
    order = list(STATUS_LABELS)
    keys = sorted(status, key=lambda key: (order.index(key) if key in STATUS_LABELS else len(order), key))
    return [
        (STATUS_LABELS.get(key) or key.replace("_", " ").capitalize(), status_text(key, status[key])) for key in keys
    ]


def status_text(key: str, value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "uptime_seconds" and isinstance(value, int):
        try:  # a value stored before heartbeats were bounded must not break the page
            return str(timedelta(seconds=value))
        except OverflowError:
            return f"{value} s"
    if key.endswith(("_at", "_timestamp")) and isinstance(value, str):
        try:
            return dateformat.format(timezone.localtime(datetime.fromisoformat(value)), "Y-m-d H:i:s")
        except (ValueError, TypeError, OverflowError):
            pass
    return str(value)[:200]


# --- Device actions (operators) --------------------------------------------------------------------


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
    request.new_secret = raw  # device_action shows it on the page it answers with, and nowhere else
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


def issue_mqtt(request, device: Device) -> str:
    """New MQTT credentials (or a new secret: the old one stops working); the broker learns it."""
    from portal.devices.tasks import sync_mqtt_credential

    if device.kind == Device.Kind.LOCK:  # seed 004's locks present their device key (portal.devices.receivers)
        messages.warning(
            request,
            f"{device.device_id} is a lock: its MQTT password is its device key. Rotate the key on the lock's page.",
        )
        return ""
    rotating = MqttCredential.objects.filter(device=device, revoked_at=None).exists()
    credential, raw = MqttCredential.issue(device, MqttCredential.username_for(request.tenant.slug, device.device_id))
    record(
        request, "device.mqtt_rotated" if rotating else "device.mqtt_issued", device, {"username": credential.username}
    )
    transaction.on_commit(lambda: enqueue_quietly(sync_mqtt_credential, connection.schema_name, device.pk, raw))
    request.new_secret, request.new_secret_kind = raw, "mqtt"
    return f"{device.device_id} has new MQTT credentials; copy the password below now: it is shown only once."


def revoke_mqtt(request, device: Device) -> str:
    from portal.devices.tasks import sync_mqtt_credential

    credential = get_object_or_404(MqttCredential, device=device, revoked_at=None)
    credential.revoke()
    record(request, "device.mqtt_revoked", device, {"username": credential.username})
    transaction.on_commit(lambda: enqueue_quietly(sync_mqtt_credential, connection.schema_name, device.pk))
    return f"The MQTT credentials of {device.device_id} are revoked; the broker disconnects it."


DEVICE_ACTIONS = {
    "mqtt-issue": issue_mqtt,
    "mqtt-revoke": revoke_mqtt,
    "register": register,
    "unregister": unregister,
    "rotate-token": rotate_token,
    "revoke-token": revoke_token,
    "reset-provisioning": reset_provisioning,
}


@require_POST
@role_required(Role.OPERATOR)
def device_action(request, pk, action):
    """One of DEVICE_ACTIONS on a device (the URL names it), audited; back to the device's page."""
    device = get_device(pk)
    if done := DEVICE_ACTIONS[action](request, device):
        messages.success(request, done)
    if getattr(request, "new_secret", ""):  # answered here, not after a redirect: nothing keeps it meanwhile
        return device_page(request, device, new_secret=request.new_secret, kind=getattr(request, "new_secret_kind", ""))
    return redirect("devices-device-detail", pk=device.pk)


# --- Editing a device and its sensors (operators) ---------------------------------------------


def back_url(request, default: str) -> str:
    """Where a form goes back to: `next` when it is a path on this host (the asset page that
    linked to a sensor), else `default`."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target.startswith("/") and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


@role_required(Role.OPERATOR)
def device_edit(request, pk):
    device = get_device(pk)
    back = back_url(request, reverse("devices-device-detail", args=[device.pk]))
    return form_view(
        request,
        DeviceForm,
        instance=device,
        template="includes/object_form.html",
        action="device.updated",
        success_url=back,
        context={"title": f"Edit {device.device_id}", "cancel_url": back, "next": back},
    )


@role_required(Role.OPERATOR)
def sensor_edit(request, pk, sensor_pk):
    sensor = get_object_or_404(Sensor.objects.select_related("device"), pk=sensor_pk, device_id=pk)
    back = back_url(request, reverse("devices-device-detail", args=[pk]))
    return form_view(
        request,
        SensorForm,
        instance=sensor,
        template="includes/object_form.html",
        action="sensor.updated",
        success_url=back,
        context={
            "title": f"Edit sensor {sensor.key} of {sensor.device.device_id}",
            "cancel_url": back,
            "next": back,
            "intro": "A new range applies to readings from now on (within a minute on every process); "
            "readings refused before stay in Dead letters until they are replayed.",
        },
    )


DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,100}")


@require_POST
@role_required(Role.ADMIN)
def assign_device_id(request, pk):
    """An admin assigns or renames a device's id (seed 003: the handshake says assigned only once
    an admin did): unique, audited; an unregistered device is registered by it."""
    device = get_device(pk)
    new_id = (request.POST.get("device_id") or "").strip()
    if not DEVICE_ID_PATTERN.fullmatch(new_id):
        messages.error(request, "A device id is 1–100 letters, digits, dots, dashes, underscores or colons.")
        return redirect("devices-device-detail", pk=device.pk)
    if Device.objects.filter(device_id=new_id).exclude(pk=device.pk).exists():
        messages.error(request, f"Another device is called {new_id} already.")
        return redirect("devices-device-detail", pk=device.pk)
    old_id, was_assigned = device.device_id, device.assigned
    changes = {}
    if new_id != old_id:
        changes["device_id"] = [old_id, new_id]
    if not was_assigned:
        device.assigned_at = timezone.now()
        changes["assigned"] = [False, True]
    if changes:
        device.device_id = new_id
        try:
            with transaction.atomic():
                device.save(update_fields=["device_id", "assigned_at"])
        except IntegrityError:
            messages.error(request, f"Another device took the id {new_id} at the same moment.")
            return redirect("devices-device-detail", pk=device.pk)
        record(request, "device.id_assigned", device, changes)
    messages.success(
        request, f"The device is {new_id}{'' if was_assigned else ' and registered'}; its next handshake says so."
    )
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
    follows = data["to"] >= timezone.now() - FOLLOWS_NOW  # a range up to now stays live on the page
    shown = {"precision": sensor.precision, "window": int((end - start).total_seconds()) if follows else None}
    if bucket == RAW:
        result = queries.raw_readings([sensor.pk], start, end, limit=queries.MAX_RAW_ROWS)
        chart = raw_chart(result.rows, sensor.unit, **shown)
        rows = [(ts, value) for _, ts, value in result.rows]  # already newest first
    else:
        result = queries.aggregate([sensor.pk], start, end, bucket, limit=queries.MAX_POINTS)
        width = queries.BUCKETS[bucket]
        chart = aggregate_chart(result.rows, sensor.unit, bucket_seconds=int(width.total_seconds()), **shown)
        rows = [
            BucketRow(p.bucket, p.bucket + width, p.avg, p.min, p.max, p.last, p.count) for p in reversed(result.rows)
        ]
    page = Paginator(rows, PAGE_SIZE).get_page(page_number)
    if bucket != RAW:
        base = {"device": data["device"].pk, "sensor": sensor.pk, "bucket": RAW}
        page.object_list = [
            replace(
                row, drill_url="?" + urlencode({**base, "from": local_input(row.start), "to": local_input(row.end)})
            )
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
        "live_query": {**form_query(data), "follow": "1"} if follows else None,
        "live_cursor": live.epoch(queries.latest_values([sensor.pk]).get(sensor.pk, (None,))[0]) if follows else "",
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
        rows = (
            (p.bucket, p.avg, p.min, p.max, p.last, p.count) for p in aggregate_windows(sensor.pk, start, end, bucket)
        )
    response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv; charset=utf-8")
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


def safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:150]

"""Seed 000's REST API for devices, sensors and their telemetry, on its paths:

    /assets/devices/, /assets/sensors/        list (status, site, search, page), create, retrieve, PUT, PATCH, DELETE
    GET /api/devices/{id}/sensors/            a device's sensors
    GET /ingest/latest/{device_id}/           each sensor's newest reading
    GET /ingest/history/{device_id}/          readings or buckets (from, to, interval, sensor_type); seed 000's
                                              caps: 10,000 raw rows, 2,000 buckets, with a `warning` when cut
    GET /ingest/summary/{device_id}/          count/avg/min/max/last per sensor over a range
    GET /ingest/telemetry/, /ingest/aggregates/, /ingest/readings/   the same queries across the tenant's sensors

A device's status is seed 000's: online (seen within the online window), offline, or warning (online,
but one of its sensors sent nothing within the window, or is in error: a value of it was refused as
impossible within the window). Every query goes through telemetry.queries,
as the explorer's do. Everyone reads; operators change devices and sensors (as on the pages).
"""

from datetime import datetime, timedelta

from django.db.models import Count, Exists, F, OuterRef, Q
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Field, Query
from ninja.responses import Status

from portal.api.endpoint import ApiError
from portal.api.toolkit import ErrorOut, PageNumber, Router, Schema, apply_changes, audit, member, paginate, text
from portal.devices.forms import EARLIEST, LATEST
from portal.facilities.models import DeviceBinding
from portal.tenancy.models import Role
from telemetry import queries
from telemetry.ingest import IMPOSSIBLE
from telemetry.models import DeadLetter, Device, Reading, Sensor, online_window

router = Router(tags=["Devices and telemetry (seed 000)"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut}
ID = Field(None, ge=1, le=2**63 - 1)
STATUSES = ("online", "offline", "warning")
INTERVALS = ("raw", "1m", "5m", "1h", "1d")
MAX_RAW, MAX_AGGREGATED = 10_000, 2_000  # seed 000's history caps


def with_status(devices):
    """Annotate `stale_sensor` (a sensor of the device sent nothing within the online window) and
    `sensor_error` (within that window a value of one of its sensors was refused as impossible:
    out of the sensor's range, or not a finite number; the dead letters keep them)."""
    since = timezone.now() - online_window()
    fresh = Reading.objects.filter(sensor_id=OuterRef("pk"), ts__gte=since)
    stale = Sensor.objects.filter(device=OuterRef("pk")).annotate(fresh=Exists(fresh)).filter(fresh=False)
    errors = DeadLetter.objects.filter(device_ref=OuterRef("device_id"), reason__in=IMPOSSIBLE, received_at__gte=since)
    return devices.annotate(stale_sensor=Exists(stale), sensor_error=Exists(errors))


def status_of(device) -> str:
    """Seed 000's online / offline / warning (online, but a sensor stale or in error)."""
    if not device.online:
        return "offline"
    troubled = getattr(device, "stale_sensor", False) or getattr(device, "sensor_error", False)
    return "warning" if troubled else "online"


def by_status(devices, status: str | None):
    if status == "online":
        return devices.online().filter(stale_sensor=False, sensor_error=False)
    if status == "warning":
        return devices.online().filter(Q(stale_sensor=True) | Q(sensor_error=True))
    if status == "offline":
        return devices.offline()
    return devices


# --- devices --------------------------------------------------------------------------------------


class DeviceIn(Schema):
    device_id: text(100, min_length=1)
    name: text(150) = ""
    device_type: Device.Kind = Device.Kind.GATEWAY
    asset: int | None = Field(None, ge=1, le=2**63 - 1, description="The asset the device is installed on")


class DevicePatch(Schema):
    device_id: text(100, min_length=1) | None = None
    name: text(150) | None = None
    device_type: Device.Kind | None = None
    asset: int | None = ID


class DeviceOut(Schema):
    id: int
    device_id: str
    name: str
    device_type: str = Field(alias="kind")
    mac: str | None
    firmware: str
    status: str
    asset: int | None
    site: int | None
    sensor_count: int
    last_seen: datetime | None
    created_at: datetime

    @staticmethod
    def resolve_status(device):
        return status_of(device)

    @staticmethod
    def resolve_asset(device):
        return device.asset_pk

    @staticmethod
    def resolve_site(device):
        return device.site_pk


class ListQuery(Schema):
    status: str | None = Field(None, description="online, offline or warning")
    site: int | None = ID
    search: text(100) | None = None


def devices():
    return with_status(
        Device.objects.annotate(
            asset_pk=F("binding__asset_id"), site_pk=F("binding__asset__site_id"), sensor_count=Count("sensors")
        ).order_by("device_id")
    )


def checked_status(status: str | None) -> str | None:
    if status not in (None, "", *STATUSES):
        raise ApiError(400, "invalid_request", "status: one of online, offline, warning.", fields={"status": "invalid"})
    return status or None


def install(device, asset_id: int | None) -> None:
    """Bind the device to the asset (or nowhere with null), as the asset page's install does."""
    from portal.facilities.models import Asset

    if asset_id is None:
        DeviceBinding.objects.filter(device=device).delete()
        return
    asset = Asset.objects.filter(pk=asset_id).first()
    if asset is None:
        raise ApiError(400, "invalid_request", "asset: there is no such asset.", fields={"asset": "no such asset"})
    DeviceBinding.objects.update_or_create(device=device, defaults={"asset": asset})


def unique_device_id(device_id: str, pk: int | None = None) -> None:
    if Device.objects.filter(device_id=device_id).exclude(pk=pk).exists():
        raise ApiError(409, "conflict", f"A device “{device_id}” exists already.", fields={"device_id": "taken"})


@router.get("/assets/devices/", response=list[DeviceOut], auth=member(), summary="Devices")
@paginate(PageNumber)
def device_list(request, filters: Query[ListQuery]):
    found = by_status(devices(), checked_status(filters.status))
    if filters.site:
        found = found.filter(binding__asset__site_id=filters.site)
    if filters.search:
        found = found.filter(Q(device_id__icontains=filters.search) | Q(name__icontains=filters.search))
    return found


@router.post(
    "/assets/devices/", response={201: DeviceOut, **ERRORS}, auth=member(Role.OPERATOR), summary="Register a device"
)
def device_create(request, payload: DeviceIn):
    unique_device_id(payload.device_id)
    device = Device.objects.create(
        device_id=payload.device_id, name=payload.name, kind=payload.device_type, assigned_at=timezone.now()
    )
    if payload.asset is not None:
        install(device, payload.asset)
    audit(request, "device.created", device, {"device_id": device.device_id})
    return Status(201, devices().get(pk=device.pk))


@router.get("/assets/devices/{device_pk}/", response={200: DeviceOut, **ERRORS}, auth=member(), summary="A device")
def device_detail(request, device_pk: int):
    return get_object_or_404(devices(), pk=device_pk)


def update_device(request, device_pk: int, payload: Schema, partial: bool):
    device = get_object_or_404(Device, pk=device_pk)
    values = payload.dict(exclude_unset=partial)
    asset_given = "asset" in values
    asset = values.pop("asset", None)
    if "device_type" in values:
        values["kind"] = values.pop("device_type")
    values = {k: v for k, v in values.items() if v is not None}
    if "device_id" in values:
        unique_device_id(values["device_id"], device.pk)
    changes = apply_changes(device, values)
    if changes:
        device.save()
    if asset_given:
        install(device, asset)
        changes["asset"] = asset
    if changes:
        audit(request, "device.updated", device, changes)
    return devices().get(pk=device.pk)


@router.put(
    "/assets/devices/{device_pk}/",
    response={200: DeviceOut, **ERRORS},
    auth=member(Role.OPERATOR),
    summary="Replace a device",
)
def device_put(request, device_pk: int, payload: DeviceIn):
    return update_device(request, device_pk, payload, partial=False)


@router.patch(
    "/assets/devices/{device_pk}/",
    response={200: DeviceOut, **ERRORS},
    auth=member(Role.OPERATOR),
    summary="Change a device",
)
def device_patch(request, device_pk: int, payload: DevicePatch):
    return update_device(request, device_pk, payload, partial=True)


@router.delete(
    "/assets/devices/{device_pk}/",
    response={204: None, **ERRORS},
    auth=member(Role.OPERATOR),
    summary="Delete a device",
)
def device_delete(request, device_pk: int):
    device = get_object_or_404(Device, pk=device_pk)
    if device.sensors.exists():
        raise ApiError(409, "in_use", "The device has sensors with history: delete its sensors first.")
    device.delete()
    audit(request, "device.deleted", device, {"device_id": device.device_id})
    return Status(204, None)


# --- sensors --------------------------------------------------------------------------------------

BOUNDED = Field(None, ge=-1e12, le=1e12, allow_inf_nan=False)


class SensorIn(Schema):
    device: int = Field(ge=1, le=2**63 - 1, description="The device's id")
    sensor_id: text(100, min_length=1)
    type: text(50) = ""
    unit: text(20) = ""
    label: text(150) = ""
    min_value: float | None = BOUNDED
    max_value: float | None = BOUNDED


class SensorPatch(Schema):
    type: text(50) | None = None
    unit: text(20) | None = None
    label: text(150) | None = None
    min_value: float | None = BOUNDED
    max_value: float | None = BOUNDED


class SensorOut(Schema):
    id: int
    device: int = Field(alias="device_id")
    device_id: str = Field(alias="device.device_id")
    sensor_id: str = Field(alias="key")
    type: str
    unit: str
    label: str
    min_value: float | None
    max_value: float | None
    status: str

    @staticmethod
    def resolve_status(sensor):
        return status_of(sensor.device) if sensor.device.online else "offline"


def sensors():
    return Sensor.objects.select_related("device").order_by("device__device_id", "key")


def ordered_range(sensor) -> None:
    if sensor.min_value is not None and sensor.max_value is not None and sensor.min_value > sensor.max_value:
        raise ApiError(
            400, "invalid_request", "min_value must not exceed max_value.", fields={"min_value": "above max_value"}
        )


@router.get("/assets/sensors/", response=list[SensorOut], auth=member(), summary="Sensors")
@paginate(PageNumber)
def sensor_list(request, filters: Query[ListQuery]):
    found = sensors()
    status = checked_status(filters.status)
    if status:
        found = found.filter(device__in=by_status(with_status(Device.objects.all()), status))
    if filters.site:
        found = found.filter(device__binding__asset__site_id=filters.site)
    if filters.search:
        term = filters.search
        found = found.filter(Q(key__icontains=term) | Q(label__icontains=term) | Q(type__icontains=term))
    return found


@router.post(
    "/assets/sensors/", response={201: SensorOut, **ERRORS}, auth=member(Role.OPERATOR), summary="Create a sensor"
)
def sensor_create(request, payload: SensorIn):
    device = Device.objects.filter(pk=payload.device).first()
    if device is None:
        raise ApiError(400, "invalid_request", "device: there is no such device.", fields={"device": "no such device"})
    if device.sensors.filter(key=payload.sensor_id).exists():
        raise ApiError(409, "conflict", "The device has this sensor already.", fields={"sensor_id": "taken"})
    values = payload.dict(exclude={"device", "sensor_id"})
    sensor = Sensor(device=device, key=payload.sensor_id, **values)
    ordered_range(sensor)
    sensor.save()
    audit(request, "sensor.created", sensor, {"device": device.device_id, "sensor": sensor.key})
    return Status(201, sensors().get(pk=sensor.pk))


@router.get("/assets/sensors/{sensor_pk}/", response={200: SensorOut, **ERRORS}, auth=member(), summary="A sensor")
def sensor_detail(request, sensor_pk: int):
    return get_object_or_404(sensors(), pk=sensor_pk)


def update_sensor(request, sensor_pk: int, payload: Schema, partial: bool):
    sensor = get_object_or_404(sensors(), pk=sensor_pk)
    values = payload.dict(exclude_unset=partial, exclude={"device", "sensor_id"})
    # a PATCH may send null for a text field; the column holds text (blank for none), never NULL
    nulls = sorted(name for name in ("type", "unit", "label") if name in values and values[name] is None)
    if nulls:
        raise ApiError(
            400,
            "invalid_request",
            f'{", ".join(nulls)}: send text ("" for none), not null.',
            fields=dict.fromkeys(nulls, "null"),
        )
    if not partial and (payload.device != sensor.device_id or payload.sensor_id != sensor.key):
        raise ApiError(400, "invalid_request", "A sensor stays on its device under its id; create another one instead.")
    changes = apply_changes(sensor, values)
    ordered_range(sensor)
    if changes:
        sensor.save()
        audit(request, "sensor.updated", sensor, changes)
    return sensors().get(pk=sensor.pk)


@router.put(
    "/assets/sensors/{sensor_pk}/",
    response={200: SensorOut, **ERRORS},
    auth=member(Role.OPERATOR),
    summary="Replace a sensor",
)
def sensor_put(request, sensor_pk: int, payload: SensorIn):
    return update_sensor(request, sensor_pk, payload, partial=False)


@router.patch(
    "/assets/sensors/{sensor_pk}/",
    response={200: SensorOut, **ERRORS},
    auth=member(Role.OPERATOR),
    summary="Change a sensor",
)
def sensor_patch(request, sensor_pk: int, payload: SensorPatch):
    return update_sensor(request, sensor_pk, payload, partial=True)


@router.delete(
    "/assets/sensors/{sensor_pk}/",
    response={204: None, **ERRORS},
    auth=member(Role.OPERATOR),
    summary="Delete a sensor",
)
def sensor_delete(request, sensor_pk: int):
    sensor = get_object_or_404(sensors(), pk=sensor_pk)
    if Reading.objects.filter(sensor_id=sensor.pk).exists():
        raise ApiError(409, "in_use", "The sensor has readings: its history would be lost.")
    sensor.delete()
    audit(request, "sensor.deleted", sensor, {"device": sensor.device.device_id, "sensor": sensor.key})
    return Status(204, None)


@router.get(
    "/api/devices/{device_pk}/sensors/",
    response={200: list[SensorOut], **ERRORS},
    auth=member(),
    summary="A device's sensors",
)
def device_sensors(request, device_pk: int):
    device = get_object_or_404(Device, pk=device_pk)
    return sensors().filter(device=device)


# --- telemetry: latest, history, summary ------------------------------------------------------------


class Range(Schema):
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None
    interval: str = Field("raw", description="raw, 1m, 5m, 1h or 1d")
    sensor_type: text(50) | None = None
    sensor_id: text(100) | None = None


def bounds(query: Range, default=timedelta(hours=24)) -> tuple[datetime, datetime]:
    """[from, to) of a query, the last `default` unless given; times outside 1970–2099 (or without
    an offset) are refused before any arithmetic on them could overflow."""
    for moment, name in ((query.from_, "from"), (query.to, "to")):
        if moment is not None and (moment.tzinfo is None or not EARLIEST <= moment < LATEST):
            raise ApiError(
                400,
                "invalid_request",
                f"{name}: an ISO 8601 time with its offset, 1970–2099.",
                fields={name: "invalid"},
            )
    end = query.to or timezone.now()
    start = query.from_ or max(end - default, EARLIEST)
    if end <= start:
        raise ApiError(400, "invalid_request", "to: must be after from.", fields={"to": "before from"})
    if query.interval not in INTERVALS:
        raise ApiError(400, "invalid_request", "interval: one of raw, 1m, 5m, 1h, 1d.", fields={"interval": "invalid"})
    return start, end


def device_by_id(device_id: str) -> Device:
    if "\x00" in device_id:  # PostgreSQL text cannot hold NUL: no device has such an id
        raise ApiError(404, "not_found", "There is no such device.")
    return get_object_or_404(Device, device_id=device_id[:100])


def sensors_of(device: Device, query: Range):
    found = device.sensors.all()
    if query.sensor_type:
        found = found.filter(type=query.sensor_type)
    if query.sensor_id:
        found = found.filter(key=query.sensor_id)
    return {sensor.pk: sensor for sensor in found}


class LatestReading(Schema):
    sensor_id: str
    sensor_type: str
    value: float
    unit: str
    timestamp: datetime


class LatestOut(Schema):
    device_id: str
    status: str
    readings: list[LatestReading]


@router.get(
    "/ingest/latest/{device_id}/",
    response={200: LatestOut, **ERRORS},
    auth=member(),
    summary="Each sensor's newest reading",
)
def latest(request, device_id: str):
    device = device_by_id(device_id)
    found = {s.pk: s for s in device.sensors.all()}
    values = queries.latest_values(list(found))
    readings = [
        {
            "sensor_id": found[pk].key,
            "sensor_type": found[pk].type,
            "value": value,
            "unit": found[pk].unit,
            "timestamp": ts,
        }
        for pk, (ts, value) in sorted(values.items(), key=lambda item: found[item[0]].key)
    ]
    return {
        "device_id": device.device_id,
        "status": status_of(with_status(Device.objects.filter(pk=device.pk)).get()),
        "readings": readings,
    }


class HistoryPoint(Schema):
    timestamp: datetime
    sensor_id: str
    sensor_type: str
    value: float
    unit: str
    min: float | None = None
    max: float | None = None
    count: int | None = None


class HistoryOut(Schema):
    device_id: str
    interval: str
    data: list[HistoryPoint]
    count: int
    truncated: bool
    warning: str | None


def history_points(found: dict, start: datetime, end: datetime, interval: str) -> tuple[list[dict], bool, int]:
    """Points oldest first; capped keeps the newest (seed 000: 10,000 raw, 2,000 aggregated)."""
    if interval == "raw":
        result = queries.raw_readings(list(found), start, end, limit=MAX_RAW)
        rows = [
            {
                "timestamp": ts,
                "sensor_id": found[s].key,
                "sensor_type": found[s].type,
                "value": v,
                "unit": found[s].unit,
            }
            for s, ts, v in reversed(result.rows)
        ]
        return rows, result.capped, MAX_RAW
    result = queries.aggregate(list(found), start, end, interval, limit=MAX_AGGREGATED)
    rows = [
        {
            "timestamp": p.bucket,
            "sensor_id": found[p.sensor_id].key,
            "sensor_type": found[p.sensor_id].type,
            "value": p.avg,
            "unit": found[p.sensor_id].unit,
            "min": p.min,
            "max": p.max,
            "count": p.count,
        }
        for p in result.rows
    ]
    return rows, result.capped, MAX_AGGREGATED


@router.get(
    "/ingest/history/{device_id}/", response={200: HistoryOut, **ERRORS}, auth=member(), summary="A device's history"
)
def history(request, device_id: str, query: Query[Range]):
    device = device_by_id(device_id)
    start, end = bounds(query)
    rows, capped, cap = history_points(sensors_of(device, query), start, end, query.interval)
    warning = (
        f"More than {cap:,} points in range: the newest {cap:,} are shown; narrow the range or use a wider interval."
        if capped
        else None
    )
    return {
        "device_id": device.device_id,
        "interval": query.interval,
        "data": rows,
        "count": len(rows),
        "truncated": capped,
        "warning": warning,
    }


class SensorSummary(Schema):
    sensor_id: str
    sensor_type: str
    unit: str
    count: int
    avg: float | None
    min: float | None
    max: float | None
    last: float | None
    last_timestamp: datetime | None


class SummaryOut(Schema):
    device_id: str
    status: str
    from_: datetime = Field(alias="from")
    to: datetime
    sensors: list[SensorSummary]


@router.get(
    "/ingest/summary/{device_id}/", response={200: SummaryOut, **ERRORS}, auth=member(), summary="Statistics per sensor"
)
def summary(request, device_id: str, query: Query[Range]):
    device = device_by_id(device_id)
    start, end = bounds(query)
    if end - start > timedelta(hours=MAX_AGGREGATED):
        raise ApiError(
            400,
            "invalid_request",
            f"to: a summary covers at most {MAX_AGGREGATED:,} hours.",
            fields={"to": "range too long"},
        )
    found = sensors_of(device, query)
    # hourly points of the query layer (rollups for closed hours, raw for the tail), summed up
    stats = {
        pk: {"count": 0, "avg": None, "min": None, "max": None, "last": None, "last_timestamp": None} for pk in found
    }
    latest_seen = queries.latest_values(list(found))
    for pk, result in queries.aggregate_each(list(found), start, end, "1h").items():
        points = result.rows
        if points:
            count = sum(p.count for p in points)
            stats[pk] |= {
                "count": count,
                "avg": sum(p.avg * p.count for p in points) / count,
                "min": min(p.min for p in points),
                "max": max(p.max for p in points),
                "last": points[-1].last,
            }
        if pk in latest_seen and start <= latest_seen[pk][0] < end:
            stats[pk]["last_timestamp"] = latest_seen[pk][0]
    out = [
        {"sensor_id": found[pk].key, "sensor_type": found[pk].type, "unit": found[pk].unit, **stats[pk]}
        for pk in sorted(found, key=lambda pk: found[pk].key)
    ]
    device_status = status_of(with_status(Device.objects.filter(pk=device.pk)).get())
    return {"device_id": device.device_id, "status": device_status, "from": start, "to": end, "sensors": out}


# --- telemetry across the tenant's sensors ----------------------------------------------------------


class TenantRange(Range):
    device_id: text(100) | None = None


def tenant_sensors(query: TenantRange) -> dict:
    found = Sensor.objects.select_related("device")
    if query.device_id:
        found = found.filter(device__device_id=query.device_id)
    if query.sensor_id:
        found = found.filter(key=query.sensor_id)
    if query.sensor_type:
        found = found.filter(type=query.sensor_type)
    return {sensor.pk: sensor for sensor in found[: MAX_AGGREGATED + 1]}


class TelemetryPoint(HistoryPoint):
    device_id: str


class TelemetryOut(Schema):
    interval: str
    data: list[TelemetryPoint]
    count: int
    truncated: bool
    warning: str | None


def telemetry_answer(query: TenantRange, interval: str):
    start, end = bounds(query)
    found = tenant_sensors(query)
    if len(found) > MAX_AGGREGATED:
        raise ApiError(
            400, "too_many_sensors", f"More than {MAX_AGGREGATED:,} sensors match: name a device or a sensor."
        )
    rows, capped, cap = history_points(found, start, end, interval)
    by_key = {(s.key, s.type): s for s in found.values()}
    for row in rows:
        row["device_id"] = by_key[(row["sensor_id"], row["sensor_type"])].device.device_id
    warning = f"More than {cap:,} points in range: the newest {cap:,} are shown." if capped else None
    return {"interval": interval, "data": rows, "count": len(rows), "truncated": capped, "warning": warning}


@router.get("/ingest/telemetry/", response={200: TelemetryOut, **ERRORS}, auth=member(), summary="Telemetry in a range")
def telemetry(request, query: Query[TenantRange]):
    return telemetry_answer(query, query.interval)


@router.get(
    "/ingest/aggregates/", response={200: TelemetryOut, **ERRORS}, auth=member(), summary="Hourly or daily aggregates"
)
def aggregates(request, query: Query[TenantRange]):
    interval = query.interval if query.interval in ("1h", "1d") else "1h"
    return telemetry_answer(query, interval)


class ReadingOut(Schema):
    timestamp: datetime = Field(alias="ts")
    device_id: str = Field(alias="sensor.device.device_id")
    sensor_id: str = Field(alias="sensor.key")
    value: float
    unit: str = Field(alias="sensor.unit")


@router.get("/ingest/readings/", response=list[ReadingOut], auth=member(), summary="Raw readings, newest first")
@paginate(PageNumber)
def readings(request, query: Query[TenantRange]):
    start, end = bounds(query)
    found = tenant_sensors(query)
    return (
        Reading.objects.filter(sensor_id__in=list(found), ts__gte=start, ts__lt=end)
        .select_related("sensor__device")
        .order_by("-ts", "sensor_id")
    )

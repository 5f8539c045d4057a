"""Analytics for integrations (seed 002), authenticated like the bulk upload (API key or token):

    GET /api/v1/analytics/equipment/<uuid>/history   ?period=hour|day&from=…&to=…
    GET /api/v1/analytics/sensor/<uuid>/history      same parameters, one sensor
    GET /api/v1/analytics/equipment/<uuid>/stats     totals per sensor over the range
    GET /api/v1/analytics/home-assistant/<uuid>      latest values for Home Assistant

An equipment uuid is what the bulk upload calls equip_uuid: a device id (the equipment is then
the asset the device is bound to, with the sensors of every device bound to it) or an asset's
tag. A sensor uuid is a sensor's key (sensor_uuid). Series come from telemetry.queries.aggregate
with 1h or 1d buckets: rollups for closed buckets, raw readings for the open tail.

period defaults to hour; from/to are ISO 8601 (a missing zone means UTC) or epoch seconds; the
range defaults to the last 24 hours (hour) or 30 days (day) up to now. An unknown uuid is a 404,
a bad period or range a 400, both as {"error": {"code", "message"}}.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.http import JsonResponse
from django.utils import timezone

from portal.api.auth import authenticate_client
from portal.api.endpoint import ApiError, api_endpoint, check_rate
from portal.api.ratelimit import key_rate
from portal.facilities.models import Asset
from telemetry import queries
from telemetry.bounds import storable
from telemetry.formats import FormatError, parse_timestamp
from telemetry.models import Device, Sensor

PERIODS = {"hour": ("1h", timedelta(hours=24)), "day": ("1d", timedelta(days=30))}
MAX_RANGE = timedelta(days=5 * 366)
EPOCH_PATTERN = re.compile(r"[0-9]{1,15}(\.[0-9]{1,9})?")


@dataclass(frozen=True)
class Equipment:
    uuid: str
    name: str
    sensors: list  # Sensor rows, by device id and key (as on the asset page)


@dataclass(frozen=True)
class Range:
    period: str
    bucket: str
    start: datetime
    end: datetime


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def authenticate(request) -> None:
    client = authenticate_client(request)
    check_rate("analytics", f"{client.kind}:{client.identity}", key_rate())


def find_equipment(uuid: str) -> Equipment:
    """The equipment a uuid names (device id first, then asset tag); ApiError 404 otherwise."""
    if not storable(uuid):
        raise ApiError(404, "equipment_not_found", "No such equipment in this organisation.")
    device = Device.objects.filter(device_id=uuid).select_related("binding__asset").first()
    asset = device.binding.asset if device is not None and hasattr(device, "binding") else None
    if asset is None and device is None:
        asset = Asset.objects.filter(tag=uuid).order_by("pk").first()
    if asset is not None:
        sensors = Sensor.objects.filter(device__binding__asset=asset)
        name = asset.name or (device.name if device is not None else "")
        return Equipment(uuid, name, list(sensors.select_related("device").order_by("device__device_id", "key")))
    if device is not None:  # a device on no asset is its own equipment
        return Equipment(uuid, device.name, list(device.sensors.select_related("device").order_by("key")))
    raise ApiError(404, "equipment_not_found", f"No equipment {uuid!r} in this organisation.")


def find_sensor(uuid: str) -> Sensor:
    if not storable(uuid):
        raise ApiError(404, "sensor_not_found", "No such sensor in this organisation.")
    sensor = Sensor.objects.filter(key=uuid).select_related("device").order_by("pk").first()
    if sensor is None:
        raise ApiError(404, "sensor_not_found", f"No sensor {uuid!r} in this organisation.")
    return sensor


def moment(request, name: str) -> datetime | None:
    value = request.GET.get(name, "").strip()
    if not value:
        return None
    try:
        # digits in ASCII only: "²".isdigit() is true, and float("²") raises
        return parse_timestamp(float(value) if EPOCH_PATTERN.fullmatch(value) else value)
    except FormatError:
        raise ApiError(
            400, "bad_parameter", f"{name}={value[:40]!r} is not an ISO 8601 time or epoch seconds in 1970–2100."
        ) from None


def time_range(request) -> Range:
    period = request.GET.get("period", "hour").strip() or "hour"
    if period not in PERIODS:
        raise ApiError(400, "bad_parameter", f"period={period!r}: use hour or day.")
    bucket, default_span = PERIODS[period]
    end = moment(request, "to") or timezone.now()
    start = moment(request, "from") or end - default_span
    if start >= end:
        raise ApiError(400, "bad_parameter", "from must be before to.")
    if end - start > MAX_RANGE:
        raise ApiError(400, "bad_parameter", "The range may span at most 5 years.")
    return Range(period, bucket, start, end)


def sensor_json(sensor: Sensor) -> dict:
    return {"sensor_uuid": sensor.key, "sensor_tipo": sensor.type, "unit": sensor.unit}


def point_json(point) -> dict:
    return {
        "bucket": iso(point.bucket),
        "avg": point.avg,
        "min": point.min,
        "max": point.max,
        "last": point.last,
        "count": point.count,
    }


def series(sensors: list, span: Range) -> tuple[dict[int, list], bool]:
    """{sensor id: [points]} from one aggregate query, and whether it was capped."""
    result = queries.aggregate(
        [s.pk for s in sensors], span.start, span.end, span.bucket, limit=queries.MAX_POINTS * max(len(sensors), 1)
    )
    by_sensor = {s.pk: [] for s in sensors}
    for point in result.rows:
        by_sensor[point.sensor_id].append(point)
    return by_sensor, result.capped


def range_json(span: Range) -> dict:
    return {"period": span.period, "from": iso(span.start), "to": iso(span.end)}


@api_endpoint(methods=("GET",))
def equipment_history(request, uuid):
    """{"equip_uuid", "equip_nome", "period", "from", "to", "capped",
    "sensors": [{"sensor_uuid", "sensor_tipo", "unit", "data": [{"bucket", "avg", "min", "max", "last", "count"}]}]}"""
    authenticate(request)
    equipment = find_equipment(uuid)
    span = time_range(request)
    points, capped = series(equipment.sensors, span)
    return JsonResponse(
        {
            "equip_uuid": equipment.uuid,
            "equip_nome": equipment.name,
            **range_json(span),
            "capped": capped,
            "sensors": [sensor_json(s) | {"data": [point_json(p) for p in points[s.pk]]} for s in equipment.sensors],
        }
    )


@api_endpoint(methods=("GET",))
def sensor_history(request, uuid):
    """{"sensor_uuid", "sensor_tipo", "unit", "equip_uuid", "period", "from", "to", "capped", "data": [...]}"""
    authenticate(request)
    sensor = find_sensor(uuid)
    span = time_range(request)
    points, capped = series([sensor], span)
    return JsonResponse(
        {
            **sensor_json(sensor),
            "equip_uuid": sensor.device.device_id,
            **range_json(span),
            "capped": capped,
            "data": [point_json(p) for p in points[sensor.pk]],
        }
    )


@api_endpoint(methods=("GET",))
def equipment_stats(request, uuid):
    """Totals per sensor over the range: count, avg, min, max, last value, first and last bucket.

    {"equip_uuid", "equip_nome", "period", "from", "to", "capped", "sensors": [{"sensor_uuid",
    "sensor_tipo", "unit", "count", "avg", "min", "max", "last", "first_bucket", "last_bucket"}]}
    A sensor without readings in the range has count 0 and nulls."""
    authenticate(request)
    equipment = find_equipment(uuid)
    span = time_range(request)
    points, capped = series(equipment.sensors, span)
    rows = []
    for sensor in equipment.sensors:
        mine = points[sensor.pk]
        count = sum(p.count for p in mine)
        rows.append(
            sensor_json(sensor)
            | {
                "count": count,
                "avg": sum(p.avg * p.count for p in mine) / count if count else None,
                "min": min((p.min for p in mine), default=None),
                "max": max((p.max for p in mine), default=None),
                "last": mine[-1].last if mine else None,
                "first_bucket": iso(mine[0].bucket) if mine else None,
                "last_bucket": iso(mine[-1].bucket) if mine else None,
            }
        )
    return JsonResponse(
        {
            "equip_uuid": equipment.uuid,
            "equip_nome": equipment.name,
            **range_json(span),
            "capped": capped,
            "sensors": rows,
        }
    )


RESERVED_ATTRIBUTES = {"friendly_name", "equip_uuid", "unit_of_measurement", "last_updated", "sensors"}


@api_endpoint(methods=("GET",))
def home_assistant(request, uuid):
    """Latest values of an equipment, shaped for Home Assistant's RESTful sensor:

        {"state": 4.2,                       the latest value of the first sensor (by uuid) that has one
         "attributes": {
            "friendly_name": "Freezer 1",
            "equip_uuid": "550e8400-…",
            "temperatura": 4.2, "umidade": 61.0,   one per sensor: its sensor_tipo, or its
                                                   uuid when two sensors share a type
            "unit_of_measurement": "°C",         the state sensor's unit, when it has one
            "last_updated": "2024-01-15T10:00:00Z",  the newest reading
            "sensors": [{"sensor_uuid", "sensor_tipo", "unit", "value", "timestamp"}, …]}}

    Home Assistant takes the state with a value template and the attributes from a JSON path
    (the state must stay under 255 characters: a number is):

        sensor:
          - platform: rest
            name: Freezer 1
            resource: https://acme.example.com/api/v1/analytics/home-assistant/550e8400-…
            headers:
              X-API-Key: fwk_…
            value_template: "{{ value_json.state }}"
            json_attributes_path: "$.attributes"
            json_attributes: [temperatura, umidade, last_updated]
            unit_of_measurement: "°C"
    """
    authenticate(request)
    equipment = find_equipment(uuid)
    latest = queries.latest_values(s.pk for s in equipment.sensors)
    types = [s.type for s in equipment.sensors]
    attributes = {"friendly_name": equipment.name or equipment.uuid, "equip_uuid": equipment.uuid}
    state, unit, newest, details = None, None, None, []
    for sensor in equipment.sensors:
        ts, value = latest.get(sensor.pk, (None, None))
        label = (
            sensor.type
            if sensor.type and types.count(sensor.type) == 1 and sensor.type not in RESERVED_ATTRIBUTES
            else sensor.key
        )
        attributes[label] = value
        details.append(sensor_json(sensor) | {"value": value, "timestamp": iso(ts)})
        if ts is not None:
            if state is None:
                state, unit = value, sensor.unit or None
            newest = max(newest, ts) if newest else ts
    if unit:
        attributes["unit_of_measurement"] = unit
    attributes["last_updated"] = iso(newest)
    attributes["sensors"] = details
    return JsonResponse({"state": state, "attributes": attributes})

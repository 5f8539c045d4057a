"""Payload formats devices send readings in, turned into ReadingIn values.

- SenML (RFC 8428) JSON records, as gateways publish them on the asset topic:
  [{"bn": "gw-01", "bt": 1764000000}, {"n": "temp", "u": "Cel", "v": 21.5}, ...]
- the plain object: {"device": "gw-01", "ts": "...", "readings": [{"sensor", "value", "unit", "type"}]}
- on a sensor topic, {"value", "unit", "timestamp"} or a bare number.

A payload that cannot be read raises FormatError with a reason code; the caller keeps it as a
dead letter. Readings with bad values are still returned: ingest() rejects them one by one.
"""

import json
import math
from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime

from telemetry.ingest import ReadingIn

# RFC 8428 4.5.3: times below 2**28 are relative to now (seconds), not absolute.
SENML_RELATIVE_LIMIT = 2**28


class FormatError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def decode_json(payload: bytes | str):
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError) as error:
        raise FormatError("malformed_json", f"not valid JSON: {error}") from None


def parse_timestamp(value, now: datetime | None = None) -> datetime | None:
    """ISO 8601 text (a missing zone means UTC) or epoch seconds (milliseconds above 1e12).

    None when absent; FormatError when present but unreadable."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise FormatError("invalid_timestamp", f"timestamp {value!r} is not a time")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise FormatError("invalid_timestamp", f"timestamp {value!r} is not a time")
        seconds = value / 1000 if value > 1e12 else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise FormatError("invalid_timestamp", f"timestamp {value!r} is out of range") from None
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
        if parsed is None:
            raise FormatError("invalid_timestamp", f"timestamp {value!r} is not ISO 8601")
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise FormatError("invalid_timestamp", f"timestamp {value!r} is not a time")


def require(mapping: dict, key: str, where: str):
    value = mapping.get(key)
    if value is None or value == "":
        raise FormatError("missing_field", f"{where} has no {key!r}")
    return value


def parse_senml(records, *, raw: str = "", topic: str = "", now: datetime) -> list[ReadingIn]:
    """RFC 8428 records: base name/time/unit carry over to the records after them."""
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not records:
        raise FormatError("unknown_format", "SenML must be a non-empty array of records")
    readings, base_name, base_time, base_unit = [], "", 0.0, ""
    for record in records:
        if not isinstance(record, dict):
            raise FormatError("unknown_format", "every SenML record must be an object")
        base_name = record.get("bn", base_name)
        base_time = record.get("bt", base_time)
        base_unit = record.get("bu", base_unit)
        if "n" not in record and not any(k in record for k in ("v", "vb", "vs")):
            continue  # a record that only sets base fields
        # the base name names the device, the record's name its sensor; without a base name the
        # full name carries both ("gw-01:temp" or "gw-01/temp")
        device, sensor = str(base_name).rstrip(":/"), str(record.get("n", ""))
        if not device:
            device, _, sensor = sensor.replace("/", ":").rpartition(":")
        if not device or not sensor:
            raise FormatError("missing_field", "a SenML record has no base name (device) or name (sensor)")
        offset = record.get("t", 0)
        if isinstance(base_time, bool) or isinstance(offset, bool) or not isinstance(base_time, (int, float)) or not isinstance(offset, (int, float)):
            raise FormatError("invalid_timestamp", "SenML times must be numbers")
        when = base_time + offset
        ts = now if when == 0 else (datetime.fromtimestamp(now.timestamp() + when, tz=UTC) if abs(when) < SENML_RELATIVE_LIMIT else parse_timestamp(when))
        value = record.get("v", record.get("vb", record.get("vs")))
        readings.append(ReadingIn(device, sensor, ts, value, unit=str(record.get("u", base_unit) or ""), raw=raw, topic=topic))
    if not readings:
        raise FormatError("missing_field", "the SenML pack holds no values")
    return readings


def parse_plain(message: dict, *, raw: str = "", topic: str = "", now: datetime) -> list[ReadingIn]:
    device = str(require(message, "device", "the message"))
    ts = parse_timestamp(message.get("ts"), now) or now
    items = message.get("readings")
    if not isinstance(items, list) or not items:
        raise FormatError("missing_field", "the message has no 'readings' list")
    readings = []
    for item in items:
        if not isinstance(item, dict):
            raise FormatError("unknown_format", "every reading must be an object")
        sensor = str(require(item, "sensor", "a reading"))
        if "value" not in item:
            raise FormatError("missing_field", f"reading {sensor!r} has no 'value'")
        when = parse_timestamp(item.get("ts"), now) or ts
        readings.append(ReadingIn(device, sensor, when, item["value"], unit=str(item.get("unit") or ""),
                                  type=str(item.get("type") or ""), raw=raw, topic=topic))
    return readings


def parse_asset_payload(payload: bytes | str, *, topic: str = "", now: datetime) -> list[ReadingIn]:
    """The asset topic's payload: SenML (an array, or an object with "bn") or the plain object."""
    raw = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    message = decode_json(payload)
    if isinstance(message, list) or (isinstance(message, dict) and ("bn" in message or "n" in message)):
        return parse_senml(message, raw=raw, topic=topic, now=now)
    if isinstance(message, dict):
        return parse_plain(message, raw=raw, topic=topic, now=now)
    raise FormatError("unknown_format", "expected SenML records or an object with 'device' and 'readings'")


def parse_sensor_payload(payload: bytes | str, device: str, sensor: str, *, topic: str = "", now: datetime) -> ReadingIn:
    """The sensor topic's payload: {"value", "unit", "timestamp"} or a bare number."""
    raw = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    message = decode_json(payload)
    if isinstance(message, dict):
        if "value" not in message:
            raise FormatError("missing_field", "the message has no 'value'")
        ts = parse_timestamp(message.get("timestamp", message.get("ts")), now) or now
        return ReadingIn(device, sensor, ts, message["value"], unit=str(message.get("unit") or ""), raw=raw, topic=topic)
    if isinstance(message, (int, float)) and not isinstance(message, bool):
        return ReadingIn(device, sensor, now, message, raw=raw, topic=topic)
    raise FormatError("unknown_format", "expected an object with 'value' or a bare number")

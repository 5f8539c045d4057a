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

import orjson
from django.utils.dateparse import parse_datetime

from telemetry.bounds import OutOfBounds, nested_deeper_than, utc_moment
from telemetry.ingest import ReadingIn

# RFC 8428 4.5.3: times below 2**28 are relative to now (seconds), not absolute.
SENML_RELATIVE_LIMIT = 2**28


class FormatError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def decode_json(payload: bytes | str, max_depth: int | None = None):
    """The one JSON parser of every entry (device API, webhook, tokens, bridge).

    orjson (3× the standard parser's speed at bridge rates); what it refuses but the standard
    parser reads (NaN, integers past 64 bits, UTF-16) goes to the standard parser, so a NaN
    still reaches ingest() and is rejected there as not finite, with the others.

    Nesting is bounded: orjson refuses more than 1024 levels, the standard parser's RecursionError
    is caught, and with `max_depth` (HTTP bodies) anything deeper is refused too. The walk that
    checks it runs only when the payload holds more brackets than `max_depth`. The bridge passes
    none: its SenML packs hold hundreds of records, and it would walk each of them at bridge rates.
    """
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as error:
            raise FormatError("malformed_json", f"not valid JSON: {error}") from None
        except RecursionError:
            raise FormatError("malformed_json", "not valid JSON: nested too deeply") from None
    if max_depth is not None and brackets(payload) > max_depth and nested_deeper_than(value, max_depth):
        raise FormatError("malformed_json", f"not valid JSON here: nested deeper than {max_depth} levels")
    return value


def brackets(payload: bytes | str) -> int:
    opening = (b"[", b"{") if isinstance(payload, bytes) else ("[", "{")
    return payload.count(opening[0]) + payload.count(opening[1])


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
            return utc_moment(datetime.fromtimestamp(seconds, tz=UTC))
        except (OverflowError, OSError, ValueError):
            raise FormatError("invalid_timestamp", f"timestamp {value!r} is out of range (1970–2100)") from None
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
        if parsed is None:
            raise FormatError("invalid_timestamp", f"timestamp {value!r} is not ISO 8601")
        try:
            return utc_moment(parsed)
        except OutOfBounds as error:
            raise FormatError("invalid_timestamp", f"timestamp {value!r}: {error}") from None
    raise FormatError("invalid_timestamp", f"timestamp {value!r} is not a time")


def require(mapping: dict, key: str, where: str):
    value = mapping.get(key)
    if value is None or value == "":
        raise FormatError("missing_field", f"{where} has no {key!r}")
    return value


def parse_senml(records, *, raw: str = "", topic: str = "", now: datetime) -> list[ReadingIn]:
    """RFC 8428 records: base name/time/unit carry over to the records after them.

    The bridge's hottest loop (a SenML pack of 100 readings per message): what depends only on
    the base fields is worked out when they change, not per record, and the usual types are
    checked by identity first."""
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not records:
        raise FormatError("unknown_format", "SenML must be a non-empty array of records")
    readings, base_name, base_time, base_unit = [], "", 0.0, ""
    append, from_epoch, now_epoch = readings.append, datetime.fromtimestamp, now.timestamp()
    device = ""
    for record in records:
        if type(record) is not dict and not isinstance(record, dict):
            raise FormatError("unknown_format", "every SenML record must be an object")
        if "bn" in record:
            base_name = record["bn"]
            device = str(base_name).rstrip(":/")
        if "bt" in record:
            base_time = record["bt"]
        if "bu" in record:
            base_unit = record["bu"]
        if "v" in record:
            value = record["v"]
        elif "n" in record or "vb" in record or "vs" in record:
            value = record.get("vb", record.get("vs"))
        else:
            continue  # a record that only sets base fields
        # the base name names the device, the record's name its sensor; without a base name the
        # full name carries both ("gw-01:temp" or "gw-01/temp")
        sensor = record.get("n", "")
        if type(sensor) is not str:
            sensor = str(sensor)
        record_device = device
        if not record_device:
            record_device, _, sensor = sensor.replace("/", ":").rpartition(":")
        if not record_device or not sensor:
            raise FormatError("missing_field", "a SenML record has no base name (device) or name (sensor)")
        offset = record.get("t", 0)
        if not (type(base_time) in NUMBER_TYPES and type(offset) in NUMBER_TYPES):
            raise FormatError("invalid_timestamp", "SenML times must be numbers")
        when = base_time + offset
        if when == 0:
            ts = now
        elif -SENML_RELATIVE_LIMIT < when < SENML_RELATIVE_LIMIT:
            ts = from_epoch(now_epoch + when, UTC)
        else:
            try:
                ts = from_epoch(when / 1000 if when > 1e12 else when, UTC)
            except (OverflowError, OSError, ValueError):
                ts = parse_timestamp(when)  # not finite, or out of range: it raises saying which
        unit = record.get("u", base_unit)
        if type(unit) is not str:
            unit = str(unit or "")
        append(ReadingIn(record_device, sensor, ts, value, unit, "", raw, topic))
    if not readings:
        raise FormatError("missing_field", "the SenML pack holds no values")
    return readings


NUMBER_TYPES = frozenset({int, float})  # exactly: a bool (an int subclass) is not a time


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
        readings.append(
            ReadingIn(
                device,
                sensor,
                when,
                item["value"],
                unit=str(item.get("unit") or ""),
                type=str(item.get("type") or ""),
                raw=raw,
                topic=topic,
            )
        )
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


def parse_sensor_payload(
    payload: bytes | str, device: str, sensor: str, *, topic: str = "", now: datetime
) -> ReadingIn:
    """The sensor topic's payload: {"value", "unit", "timestamp"} or a bare number."""
    raw = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    message = decode_json(payload)
    if isinstance(message, dict):
        if "value" not in message:
            raise FormatError("missing_field", "the message has no 'value'")
        ts = parse_timestamp(message.get("timestamp", message.get("ts")), now) or now
        return ReadingIn(
            device, sensor, ts, message["value"], unit=str(message.get("unit") or ""), raw=raw, topic=topic
        )
    if isinstance(message, (int, float)) and not isinstance(message, bool):
        return ReadingIn(device, sensor, now, message, raw=raw, topic=topic)
    raise FormatError("unknown_format", "expected an object with 'value' or a bare number")

from datetime import UTC, datetime, timedelta

import pytest

from telemetry.formats import (
    FormatError,
    parse_asset_payload,
    parse_sensor_payload,
    parse_timestamp,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_senml_records_with_base_name_and_time():
    payload = (
        b'[{"bn":"F8033201","bt":1763640000,"bu":"Cel"},{"n":"temp","v":21.5},{"n":"rh","u":"%RH","v":40,"t":-60}]'
    )
    readings = parse_asset_payload(payload, topic="t", now=NOW)
    assert [(r.device, r.sensor, r.value, r.unit) for r in readings] == [
        ("F8033201", "temp", 21.5, "Cel"),
        ("F8033201", "rh", 40, "%RH"),
    ]
    assert readings[0].ts == datetime.fromtimestamp(1763640000, tz=UTC)
    assert readings[1].ts == readings[0].ts - timedelta(seconds=60)
    assert readings[0].raw == payload.decode()


def test_senml_relative_times_and_names_without_base():
    readings = parse_asset_payload(b'[{"n":"gw-9:temp","v":1,"t":-30}]', now=NOW)
    assert (readings[0].device, readings[0].sensor, readings[0].ts) == ("gw-9", "temp", NOW - timedelta(seconds=30))


def test_plain_json_object():
    payload = b'{"device":"gw-1","ts":"2026-11-20T11:00:00Z","readings":[{"sensor":"temp","value":3.5,"unit":"C","type":"temperature"},{"sensor":"door","value":1,"ts":1763636400000}]}'
    readings = parse_asset_payload(payload, now=NOW)
    assert readings[0].ts == datetime(2026, 11, 20, 11, tzinfo=UTC) and readings[0].type == "temperature"
    assert readings[1].ts == datetime.fromtimestamp(1763636400, tz=UTC)


def test_sensor_topic_payloads():
    reading = parse_sensor_payload(
        b'{"value": 23.5, "unit": "C", "timestamp": "2026-11-20T10:30:00+01:00"}', "esp32", "temp_001", now=NOW
    )
    assert (reading.value, reading.unit, reading.ts) == (23.5, "C", datetime(2026, 11, 20, 9, 30, tzinfo=UTC))
    bare = parse_sensor_payload(b"17.25", "esp32", "temp_001", now=NOW)
    assert (bare.value, bare.ts) == (17.25, NOW)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'"text"', "unknown_format"),
        (b"[]", "unknown_format"),
        (b'{"readings":[{"sensor":"t","value":1}]}', "missing_field"),
        (b'{"device":"d","readings":[{"value":1}]}', "missing_field"),
        (b'{"device":"d","readings":[{"sensor":"t"}]}', "missing_field"),
        (b'{"device":"d","ts":"yesterday","readings":[{"sensor":"t","value":1}]}', "invalid_timestamp"),
        (b'[{"bn":"d","bt":"x"},{"n":"t","v":1}]', "invalid_timestamp"),
        (b'[{"v":1}]', "missing_field"),
    ],
)
def test_unreadable_payloads_raise_with_a_reason(payload, reason):
    with pytest.raises(FormatError) as error:
        parse_asset_payload(payload, now=NOW)
    assert error.value.reason == reason


def test_timestamps():
    assert parse_timestamp("2026-11-20T12:00:00") == NOW  # no zone: UTC
    assert parse_timestamp(1763640000) == parse_timestamp(1763640000000)
    assert parse_timestamp(None) is None
    for bad in (True, float("nan"), "noon", 1e30):
        with pytest.raises(FormatError):
            parse_timestamp(bad)


def test_a_time_with_an_offset_is_the_same_instant_in_utc():
    # Python reads offsets up to ±23:59, PostgreSQL stores up to ±15:59, real zones stay within
    # ±14:00 (issue 11: refused beyond it; found by the OpenAPI fuzz: a 500 on stats?to=…+18:03)
    moment = parse_timestamp("2026-11-20T23:30:00+14:00")
    assert moment.utcoffset() == timedelta(0) and moment == datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    assert parse_timestamp("2026-11-20T13:30:00+01:30") == NOW
    with pytest.raises(FormatError, match="±14:00"):
        parse_timestamp("4332-08-02T17:12:10+18:03")


def test_a_time_outside_1970_to_2100_is_refused():
    for value in ("9999-12-31T23:59:00-12:00", "0001-01-01T00:00:00Z", 253402300799):
        with pytest.raises(FormatError, match="1970"):
            parse_timestamp(value)

from datetime import timedelta

import pytest
from telemetry_builders import NOW, reading

from telemetry.ingest import ingest
from telemetry.models import (
    DeadLetter,
    Device,
    DirtyHour,
    Reading,
    Sensor,
    TelemetrySettings,
)


def test_readings_are_written_and_devices_sensors_created_on_first_sight(in_acme):
    result = ingest([reading(value=21.5), reading(sensor="rh", value=40, unit="%", minutes=1)], source="mqtt", now=NOW)
    assert (result.written, result.duplicates, result.rejected) == (2, 0, 0)
    device = Device.objects.get(device_id="gw-1")
    assert device.last_seen == NOW - timedelta(minutes=1)  # the newest reading
    assert set(device.sensors.values_list("key", "unit")) == {("temp", "°C"), ("rh", "%")}
    assert Reading.objects.count() == 2
    assert DirtyHour.objects.count() == 2  # one hour of each sensor


def test_the_same_sensor_and_time_twice_gives_one_row_counted_as_duplicate(in_acme):
    first = ingest([reading(value=1)], source="mqtt", now=NOW)
    again = ingest([reading(value=2), reading(value=3, minutes=2)], source="mqtt", now=NOW)
    assert first.written == 1
    assert (again.written, again.duplicates) == (1, 1)
    within = ingest([reading(value=5, minutes=3), reading(value=6, minutes=3)], source="mqtt", now=NOW)
    assert (within.written, within.duplicates) == (1, 1)
    assert Reading.objects.count() == 3
    assert Reading.objects.get(ts=NOW - timedelta(minutes=10)).value == 1  # the first one stays


def test_one_timestamp_in_two_offsets_is_one_reading(in_acme):
    from datetime import timezone as tz

    ts = NOW - timedelta(minutes=10)
    same_instant = ts.astimezone(tz(timedelta(hours=5, minutes=30)))
    result = ingest([reading(value=1), reading(value=2, ts=same_instant)], source="mqtt", now=NOW)
    assert (result.written, result.duplicates) == (1, 1)


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"value": float("nan")}, "not_finite"),
        ({"value": float("inf")}, "not_finite"),
        ({"value": "hot"}, "invalid_value"),
        ({"value": True}, "invalid_value"),
        ({"minutes": -10}, "future_timestamp"),
        ({"minutes": 60 * 24 * 200}, "too_old"),
        ({"value": 500}, "out_of_range"),
        ({"value": -100}, "out_of_range"),
        ({"unit": "°F"}, "unit_mismatch"),
        ({"ts": None}, "invalid_timestamp"),
    ],
)
def test_each_rejection_lands_in_dead_letter_with_its_reason(in_acme, changes, reason):
    ingest([reading(value=20)], source="mqtt", now=NOW)
    Sensor.objects.update(min_value=-40, max_value=120)
    from telemetry.ingest import sensor_cache

    sensor_cache.clear()
    result = ingest([reading(**{"value": 21, "minutes": 5, "raw": '{"original": true}', **changes})], source="mqtt", now=NOW)
    assert (result.written, result.rejected) == (0, 1)
    letter = DeadLetter.objects.get()
    assert letter.reason == reason
    assert letter.payload == '{"original": true}'
    assert letter.source == "mqtt"


def test_unknown_sensor_is_rejected_when_auto_create_is_off(in_acme):
    settings = TelemetrySettings.current()
    settings.auto_create_sensors = False
    settings.save()
    result = ingest([reading(device="never-seen")], source="http", now=NOW)
    assert result.rejected == 1
    assert DeadLetter.objects.get().reason == "unknown_sensor"
    assert not Device.objects.filter(device_id="never-seen").exists()


def test_a_bad_reading_does_not_lose_the_good_ones(in_acme):
    result = ingest([reading(value=1), reading(value=float("nan"), minutes=1), reading(value=3, minutes=2)], source="mqtt", now=NOW)
    assert (result.written, result.rejected) == (2, 1)


def test_a_conflicting_batch_falls_back_and_still_writes_the_new_rows(in_acme):
    ingest([reading(minutes=m) for m in range(0, 10, 2)], source="mqtt", now=NOW)
    result = ingest([reading(minutes=m) for m in range(10)], source="mqtt", now=NOW)
    assert (result.written, result.duplicates) == (5, 5)
    assert Reading.objects.count() == 10

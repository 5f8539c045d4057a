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
    result = ingest(
        [reading(**{"value": 21, "minutes": 5, "raw": '{"original": true}', **changes})], source="mqtt", now=NOW
    )
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
    result = ingest(
        [reading(value=1), reading(value=float("nan"), minutes=1), reading(value=3, minutes=2)], source="mqtt", now=NOW
    )
    assert (result.written, result.rejected) == (2, 1)


def test_a_conflicting_batch_falls_back_and_still_writes_the_new_rows(in_acme):
    ingest([reading(minutes=m) for m in range(0, 10, 2)], source="mqtt", now=NOW)
    result = ingest([reading(minutes=m) for m in range(10)], source="mqtt", now=NOW)
    assert (result.written, result.duplicates) == (5, 5)
    assert Reading.objects.count() == 10


def dirty_hours() -> set[tuple[str, int]]:
    """(sensor key, hours before NOW's hour) of every dirty hour."""
    hour = NOW.replace(minute=0)
    return {
        (key, int((hour - bucket).total_seconds()) // 3600)
        for key, bucket in DirtyHour.objects.values_list("sensor__key", "bucket")
    }


def test_a_batch_marks_every_hour_of_its_span_for_its_sensors(in_acme):
    # 2 sensors, 10:00 and 12:25: the database marks the span's 3 hours of both (6 rows: cheap)
    ingest(
        [reading(sensor="temp", value=1, minutes=150), reading(sensor="rh", value=2, unit="%", minutes=5)],
        source="mqtt",
        now=NOW,
    )
    assert dirty_hours() == {(key, hours) for key in ("temp", "rh") for hours in (0, 1, 2)}


def test_a_batch_spread_thin_marks_only_the_hours_it_touched(in_acme):
    # 3 sensors, each a reading now and one three weeks ago: the span would be 3 × 505 hours
    batch = [
        reading(sensor=key, value=1, unit="", minutes=minutes)
        for key in ("a", "b", "c")
        for minutes in (0, 3 * 7 * 1440)
    ]
    result = ingest(batch, source="mqtt", now=NOW)
    assert result.written == 6
    assert dirty_hours() == {(key, hours) for key in ("a", "b", "c") for hours in (0, 3 * 7 * 24)}


def test_rollups_of_a_batch_with_offsets_and_conflicts_match_the_raw_readings(in_acme):
    from datetime import timezone as tz

    from telemetry.models import HourlyRollup
    from telemetry.rollups import roll_up

    ingest([reading(value=5, minutes=61)], source="mqtt", now=NOW)  # stored already: the fallback path
    plus_two = tz(timedelta(hours=2))
    batch = [reading(value=float(n), minutes=n * 7) for n in range(1, 20)]
    batch.append(reading(value=7.5, ts=(NOW - timedelta(minutes=200)).astimezone(plus_two)))
    ingest(batch, source="mqtt", now=NOW)
    roll_up()
    assert not DirtyHour.objects.exists()
    raw: dict = {}
    for ts, value in Reading.objects.values_list("ts", "value"):
        raw.setdefault(ts.replace(minute=0, second=0, microsecond=0), []).append(value)
    rolled = {row.bucket: (row.count, row.sum) for row in HourlyRollup.objects.all()}
    assert rolled == {hour: (len(values), sum(values)) for hour, values in raw.items()}


@pytest.mark.parametrize(
    "bounds, value, unit, reason",
    [
        ((-40, 120), 120.0, "°C", None),  # the bounds are allowed
        ((-40, 120), -40.0, "", None),
        ((-40, 120), 120.01, "°C", "out_of_range"),
        ((-40, 120), -40.01, "°C", "out_of_range"),
        ((None, None), 1.7976931348623157e308, "°C", None),  # no range: any finite float
        ((None, None), float("inf"), "°C", "not_finite"),
        ((None, None), float("-inf"), "°C", "not_finite"),
        ((None, None), float("nan"), "°C", "not_finite"),
        ((None, 10), float("-inf"), "°C", "not_finite"),
        ((None, None), 20.5, "°F", "unit_mismatch"),
    ],
)
def test_float_readings_take_the_inline_checks_with_the_same_verdicts(in_acme, bounds, value, unit, reason):
    """Floats in UTC are checked inline in the hot loop; the verdicts are the full checks'."""
    from telemetry.ingest import sensor_cache

    ingest([reading(value=20.0)], source="mqtt", now=NOW)
    Sensor.objects.update(min_value=bounds[0], max_value=bounds[1])
    sensor_cache.clear()
    result = ingest([reading(value=value, unit=unit, minutes=5)], source="mqtt", now=NOW)
    assert (result.written, result.rejected) == ((1, 0) if reason is None else (0, 1))
    assert list(DeadLetter.objects.values_list("reason", flat=True)) == ([] if reason is None else [reason])
    Sensor.objects.update(enabled=False)
    sensor_cache.clear()
    assert ingest([reading(value=21.0, minutes=4)], source="mqtt", now=NOW).reasons == {"sensor_disabled": 1}

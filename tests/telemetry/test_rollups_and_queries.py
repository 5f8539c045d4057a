import random
from datetime import timedelta

from telemetry_builders import NOW, reading

from telemetry.ingest import ingest
from telemetry.models import DailyRollup, HourlyRollup, Reading, Sensor
from telemetry.queries import aggregate, latest_values, raw_readings
from telemetry.rollups import roll_up


def history(hours=30, per_hour=12, sensor="temp", seed=1):
    rng = random.Random(seed)
    return [reading(sensor=sensor, value=round(rng.uniform(-5, 30), 2), minutes=m) for m in range(1, hours * 60, 60 // per_hour)]


def rollup_rows():
    return sorted(HourlyRollup.objects.values_list("sensor_id", "bucket", "count", "sum", "min", "max", "last_value", "last_ts")), sorted(
        DailyRollup.objects.values_list("sensor_id", "bucket", "count", "sum", "min", "max", "last_value", "last_ts")
    )


def raw_buckets(bucket_of):
    """The reference: every aggregate computed in Python straight from raw readings."""
    groups = {}
    for r in Reading.objects.order_by("ts"):
        groups.setdefault((r.sensor_id, bucket_of(r.ts)), []).append(r.value)
    return {key: (round(sum(v) / len(v), 9), min(v), max(v), v[-1], len(v)) for key, v in groups.items()}


def as_dict(points):
    return {(p.sensor_id, p.bucket): (round(p.avg, 9), p.min, p.max, p.last, p.count) for p in points}


def test_rollup_twice_gives_the_same_rows(in_acme):
    ingest(history(), source="mqtt", now=NOW)
    assert roll_up() > 0
    first = rollup_rows()
    assert roll_up() == 0
    from telemetry.models import DirtyHour

    sensor_id = Sensor.objects.get().pk
    DirtyHour.objects.bulk_create([DirtyHour(sensor_id=sensor_id, bucket=b) for _, b, *_ in first[0]])  # force a full recompute
    roll_up()
    assert rollup_rows() == first
    assert sum(row[2] for row in first[0]) == Reading.objects.count() == sum(row[2] for row in first[1])


def test_a_late_reading_updates_the_bucket_it_falls_in(in_acme):
    ingest(history(), source="mqtt", now=NOW)
    roll_up()
    old_hour = (NOW - timedelta(hours=20)).replace(minute=0, second=0, microsecond=0)
    before = HourlyRollup.objects.get(bucket=old_hour)
    ingest([reading(value=99.0, ts=old_hour + timedelta(minutes=59, seconds=59))], source="mqtt", now=NOW)
    roll_up()
    after = HourlyRollup.objects.get(bucket=old_hour)
    assert after.count == before.count + 1
    assert after.max == 99.0 and after.last_value == 99.0
    day = DailyRollup.objects.get(bucket=old_hour.replace(hour=0))
    assert day.max == 99.0


def test_hourly_and_daily_aggregates_mixing_rollups_and_tail_equal_raw(in_acme):
    ingest(history(hours=50), source="mqtt", now=NOW)
    roll_up()
    # fresh readings after the rollup: in the open tail and a late one in a closed hour
    ingest([reading(value=77, minutes=0), reading(value=-3, ts=NOW - timedelta(hours=30, minutes=1, seconds=7))], source="mqtt", now=NOW)
    start, end = NOW - timedelta(days=3), NOW + timedelta(minutes=1)
    hourly = aggregate(Sensor.objects.values_list("pk", flat=True), start, end, "1h", now=NOW)
    assert as_dict(hourly.rows) == raw_buckets(lambda ts: ts.replace(minute=0, second=0, microsecond=0))
    daily = aggregate(Sensor.objects.values_list("pk", flat=True), start, end, "1d", now=NOW)
    assert as_dict(daily.rows) == raw_buckets(lambda ts: ts.replace(hour=0, minute=0, second=0, microsecond=0))
    five = aggregate(Sensor.objects.values_list("pk", flat=True), start, end, "5m", now=NOW)
    assert as_dict(five.rows) == raw_buckets(lambda ts: ts.replace(minute=ts.minute - ts.minute % 5, second=0, microsecond=0))


def test_combined_aggregate_across_sensors(in_acme):
    ingest(history(sensor="a", seed=1) + history(sensor="b", seed=2), source="mqtt", now=NOW)
    roll_up()
    points = aggregate(Sensor.objects.values_list("pk", flat=True), NOW - timedelta(days=2), NOW, "1h", combine=True, now=NOW).rows
    assert all(p.sensor_id is None for p in points)
    assert sum(p.count for p in points) == Reading.objects.count()


def test_results_are_capped_with_a_note(in_acme):
    ingest(history(hours=10, per_hour=60), source="mqtt", now=NOW)
    sensor_ids = list(Sensor.objects.values_list("pk", flat=True))
    result = raw_readings(sensor_ids, NOW - timedelta(days=1), NOW, limit=100)
    assert result.capped and len(result.rows) == 100
    assert result.rows[0][1] == NOW - timedelta(minutes=1)  # the latest are kept
    points = aggregate(sensor_ids, NOW - timedelta(days=1), NOW, "1m", now=NOW, limit=50)
    assert points.capped and len(points.rows) == 50
    assert not aggregate(sensor_ids, NOW - timedelta(days=1), NOW, "1h", now=NOW).capped


def test_latest_values(in_acme):
    ingest(history(sensor="a") + history(sensor="b"), source="mqtt", now=NOW)
    latest = latest_values(Sensor.objects.values_list("pk", flat=True))
    assert {ts for ts, _ in latest.values()} == {NOW - timedelta(minutes=1)}

import random
from datetime import timedelta

from telemetry_builders import NOW, reading

from telemetry.ingest import ingest
from telemetry.models import DailyRollup, HourlyRollup, Reading, Sensor
from telemetry.queries import aggregate, latest_values, raw_readings
from telemetry.rollups import roll_up


def history(hours=30, per_hour=12, sensor="temp", seed=1):
    rng = random.Random(seed)
    return [
        reading(sensor=sensor, value=round(rng.uniform(-5, 30), 2), minutes=m)
        for m in range(1, hours * 60, 60 // per_hour)
    ]


def rollup_rows():
    return sorted(
        HourlyRollup.objects.values_list("sensor_id", "bucket", "count", "sum", "min", "max", "last_value", "last_ts")
    ), sorted(
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
    DirtyHour.objects.bulk_create(
        [DirtyHour(sensor_id=sensor_id, bucket=b) for _, b, *_ in first[0]]
    )  # force a full recompute
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
    ingest(
        [reading(value=77, minutes=0), reading(value=-3, ts=NOW - timedelta(hours=30, minutes=1, seconds=7))],
        source="mqtt",
        now=NOW,
    )
    start, end = NOW - timedelta(days=3), NOW + timedelta(minutes=1)
    hourly = aggregate(Sensor.objects.values_list("pk", flat=True), start, end, "1h", now=NOW)
    assert as_dict(hourly.rows) == raw_buckets(lambda ts: ts.replace(minute=0, second=0, microsecond=0))
    daily = aggregate(Sensor.objects.values_list("pk", flat=True), start, end, "1d", now=NOW)
    assert as_dict(daily.rows) == raw_buckets(lambda ts: ts.replace(hour=0, minute=0, second=0, microsecond=0))
    five = aggregate(Sensor.objects.values_list("pk", flat=True), start, end, "5m", now=NOW)
    assert as_dict(five.rows) == raw_buckets(
        lambda ts: ts.replace(minute=ts.minute - ts.minute % 5, second=0, microsecond=0)
    )


def test_combined_aggregate_across_sensors(in_acme):
    ingest(history(sensor="a", seed=1) + history(sensor="b", seed=2), source="mqtt", now=NOW)
    roll_up()
    points = aggregate(
        Sensor.objects.values_list("pk", flat=True), NOW - timedelta(days=2), NOW, "1h", combine=True, now=NOW
    ).rows
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


def test_each_sensors_series_in_one_query_equals_its_own_query(in_acme, django_assert_num_queries):
    from telemetry.queries import aggregate_each, raw_readings_each

    ingest(history(hours=40) + history(hours=20, sensor="rh", seed=2), source="mqtt", now=NOW)
    roll_up()
    ingest(history(hours=3, per_hour=5, seed=3), source="mqtt", now=NOW)  # a raw tail on top of the rollups
    ids = list(Sensor.objects.order_by("key").values_list("pk", flat=True)) + [10**9]  # and a sensor with no data
    start, end = NOW - timedelta(hours=48), NOW + timedelta(hours=1)
    for bucket, limit in (("1h", 2000), ("1h", 7), ("1d", 2000), ("5m", 50)):
        with django_assert_num_queries(2 if bucket in ("1h", "1d") else 1):
            each = aggregate_each(ids, start, end, bucket, now=NOW, limit=limit)
        for sensor_id in ids:
            alone = aggregate([sensor_id], start, end, bucket, now=NOW, limit=limit)
            # the same points (a rollup's sum and the raw one may differ in the last bit: avg is rounded)
            assert as_dict(each[sensor_id].rows) == as_dict(alone.rows), (bucket, limit)
            assert [p.bucket for p in each[sensor_id].rows] == [p.bucket for p in alone.rows]
            assert each[sensor_id].capped == alone.capped
    assert aggregate_each(ids, start, end, "1h", now=NOW, limit=7)[ids[0]].capped
    for limit in (10_000, 5):
        each = raw_readings_each(ids, start, end, limit=limit)
        for sensor_id in ids:
            alone = raw_readings([sensor_id], start, end, limit=limit)
            assert (each[sensor_id].rows, each[sensor_id].capped) == (alone.rows, alone.capped)


def test_points_load_as_utc_datetimes_and_floats_and_the_query_log_shows_runnable_sql(in_acme):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ingest(history(hours=30), source="mqtt", now=NOW)
    roll_up()
    ids = list(Sensor.objects.values_list("pk", flat=True))
    with CaptureQueriesContext(connection) as log:
        points = aggregate(ids, NOW - timedelta(days=2), NOW, "1h", now=NOW).rows
    assert points and all(p.bucket.utcoffset() == timedelta(0) for p in points)
    assert all(isinstance(v, float) for p in points for v in (p.avg, p.min, p.max, p.last))
    assert all(type(p.count) is int and p.sensor_id == ids[0] for p in points)
    # the logged SQL has its parameters in (a binary, server-bound cursor would log $1 placeholders)
    logged = log.captured_queries[-1]["sql"]
    with connection.cursor() as cursor:
        cursor.execute(logged)
        assert len(cursor.fetchall()) == len(points)


def test_todays_daily_point_reads_its_rolled_up_hours_and_only_the_open_hour_raw(in_acme):
    ingest(history(hours=30), source="mqtt", now=NOW)
    roll_up()
    ingest([reading(value=55.5, minutes=0)], source="mqtt", now=NOW)  # the open hour
    sensor_ids = list(Sensor.objects.values_list("pk", flat=True))
    day = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    today = raw_buckets(lambda ts: ts.replace(hour=0, minute=0, second=0, microsecond=0))[(sensor_ids[0], day)]
    # the raw readings of today's closed hours go (as a purge would take them): the point is unchanged,
    # so it was made of those hours' rollups, and the open hour's raw reading is in it
    Reading.objects.filter(ts__gte=day, ts__lt=NOW.replace(minute=0, second=0, microsecond=0)).delete()
    for combine in (False, True):
        (point,) = aggregate(sensor_ids, day, NOW, "1d", now=NOW, combine=combine).rows
        assert (round(point.avg, 9), point.min, point.max, point.last, point.count) == today
        assert point.last == 55.5


def test_points_come_in_the_same_order_whether_or_not_the_cap_could_bite(in_acme):
    ingest(history(sensor="a", seed=1) + history(sensor="b", seed=2, hours=20), source="mqtt", now=NOW)
    roll_up()
    ingest([reading(sensor="a", value=1.5, minutes=0)], source="mqtt", now=NOW)  # a raw tail
    ids = list(Sensor.objects.values_list("pk", flat=True))
    start, end = NOW - timedelta(days=2), NOW + timedelta(minutes=1)
    for bucket, combine in (("1h", False), ("1h", True), ("1d", False), ("5m", False)):
        free = aggregate(ids, start, end, bucket, now=NOW, combine=combine)  # the cap cannot bite: no SQL sort
        assert not free.capped and free.rows
        # a limit below the possible points (sensors × buckets) but above the actual: the ORDER BY … LIMIT query
        tight = aggregate(ids, start, end, bucket, now=NOW, combine=combine, limit=len(free.rows))
        assert not tight.capped and tight.rows == free.rows, (bucket, combine)
        assert [p.bucket for p in free.rows] == sorted(p.bucket for p in free.rows)

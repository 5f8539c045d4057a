"""Sensor groups: a set of sensors' combined aggregates rolled up too (telemetry.models.SensorGroup),
held equal to the combination worked out here from the raw readings."""

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from telemetry_builders import BUCKET_SECONDS, NOW, reading

from telemetry.ingest import ingest
from telemetry.models import GroupDailyRollup, GroupHourlyRollup, Reading, Sensor, SensorGroup
from telemetry.queries import aggregate
from telemetry.rollups import roll_up

START, END = NOW - timedelta(days=3), NOW + timedelta(hours=1)


def readings(sensors=("a", "b", "c"), hours=50, seed=1):
    """Sensors reporting at instants of their own (some shared, so "last" ties happen too)."""
    rng = random.Random(seed)
    return [
        reading(sensor=sensor, value=round(rng.uniform(-5, 30), 1), minutes=minute)
        for sensor in sensors
        for minute in sorted(rng.sample(range(1, hours * 60), hours * 3))
    ]


def combined(sensor_ids, bucket: str) -> list[tuple]:
    """The sensors together per bucket, from the raw readings: count, avg, min, max and the newest
    reading's value (the larger on a tie)."""
    step = BUCKET_SECONDS[bucket]
    first = int(START.timestamp()) // step * step
    after = math.ceil(END.timestamp() / step) * step
    groups: dict[int, list] = {}
    for ts, value in Reading.objects.filter(sensor_id__in=sensor_ids).values_list("ts", "value"):
        if first <= ts.timestamp() < after:
            groups.setdefault(int(ts.timestamp()) // step * step, []).append((ts, value))
    return [
        (
            datetime.fromtimestamp(epoch, UTC),
            len(got),
            pytest.approx(sum(v for _, v in got) / len(got)),
            min(v for _, v in got),
            max(v for _, v in got),
            max(got)[1],
        )
        for epoch, got in sorted(groups.items())
    ]


def points(sensor_ids, bucket: str) -> tuple[list[tuple], str]:
    """aggregate(combine=True) as tuples, and the SQL it ran."""
    with CaptureQueriesContext(connection) as queries:
        rows = aggregate(sensor_ids, START, END, bucket, combine=True, now=NOW).rows
    sql = " ".join(query["sql"] for query in queries.captured_queries)
    return [(p.bucket, p.count, p.avg, p.min, p.max, p.last) for p in rows], sql


def group_rows():
    """Both tables' rows, sums rounded (added in another order, they may differ in the last bit)."""
    fields = ("group_id", "bucket", "count", "sum", "min", "max", "last_value", "last_ts")
    return [
        sorted((*row[:3], round(row[3], 6), *row[4:]) for row in model.objects.values_list(*fields))
        for model in (GroupHourlyRollup, GroupDailyRollup)
    ]


def test_a_groups_combined_aggregates_come_from_its_rollups_and_equal_the_raw_combination(in_acme):
    ingest(readings(), source="mqtt", now=NOW)
    roll_up()
    ids = sorted(Sensor.objects.values_list("pk", flat=True))
    group = SensorGroup.define("site:1", ids)
    assert not group.ready
    for bucket in ("1h", "1d"):  # not ready yet: the members' rollups, same answer
        rows, sql = points(ids, bucket)
        assert rows == combined(ids, bucket) and "telemetry_group" not in sql
    roll_up()  # builds the group
    group.refresh_from_db()
    assert group.ready
    for bucket in ("1h", "1d"):
        rows, sql = points(list(reversed(ids)) + ids[:1], bucket)  # any order, repeats: the same set
        assert rows == combined(ids, bucket)
        assert "telemetry_group" in sql
    # a different set is not the group
    rows, sql = points(ids[:2], "1h")
    assert rows == combined(ids[:2], "1h") and "telemetry_group" not in sql


def test_late_readings_correct_the_groups_buckets_and_a_rerun_changes_nothing(in_acme):
    ingest(readings(), source="mqtt", now=NOW)
    ids = sorted(Sensor.objects.values_list("pk", flat=True))
    SensorGroup.define("site:1", ids)
    roll_up()
    built = group_rows()
    assert built[0] and built[1]
    old_hour = (NOW - timedelta(hours=30)).replace(minute=0, second=0, microsecond=0)
    ingest(
        [
            reading(sensor="b", value=99.5, ts=old_hour + timedelta(minutes=59, seconds=59)),  # newest and highest
            reading(sensor="c", value=-40.0, ts=old_hour + timedelta(minutes=1, seconds=3)),  # lowest
            reading(sensor="a", value=7.0, minutes=0),  # the open hour
        ],
        source="mqtt",
        now=NOW,
    )
    for bucket in ("1h", "1d"):  # before the rollup: the dirty hour is read raw
        assert points(ids, bucket)[0] == combined(ids, bucket)
    roll_up()
    hour = GroupHourlyRollup.objects.get(bucket=old_hour)
    assert (hour.max, hour.min, hour.last_value) == (99.5, -40.0, 99.5)
    day = GroupDailyRollup.objects.get(bucket=old_hour.replace(hour=0))
    assert (day.max, day.min) == (99.5, -40.0)
    for bucket in ("1h", "1d"):
        assert points(ids, bucket)[0] == combined(ids, bucket)
    after = group_rows()
    assert sum(row[2] for row in after[0]) == Reading.objects.count() == sum(row[2] for row in after[1])
    assert roll_up() == 0 and group_rows() == after
    # rebuilding from nothing gives the very rows the incremental runs left
    SensorGroup.define("site:1", ids[:1])
    SensorGroup.define("site:1", ids)
    assert group_rows() == [[], []]
    roll_up()
    assert group_rows() == after


def test_new_members_rebuild_the_group_and_the_same_members_keep_it(in_acme):
    ingest(readings(sensors=("a", "b", "c", "d")), source="mqtt", now=NOW)
    roll_up()
    ids = sorted(Sensor.objects.values_list("pk", flat=True))
    group = SensorGroup.define("site:1", ids[:3])
    roll_up()
    assert SensorGroup.define("site:1", reversed(ids[:3])).ready  # unchanged: kept as built
    SensorGroup.define("site:1", ids[1:])  # a sensor moved in, one out
    group.refresh_from_db()
    assert not group.ready and group_rows() == [[], []]
    rows, sql = points(ids[:3], "1h")  # the old set is no group any more
    assert rows == combined(ids[:3], "1h") and "telemetry_group" not in sql
    roll_up()
    for bucket in ("1h", "1d"):
        rows, sql = points(ids[1:], bucket)
        assert rows == combined(ids[1:], bucket) and "telemetry_group" in sql
    other = SensorGroup.define("site:2", ids[:2])
    roll_up()
    group.forget()
    assert not SensorGroup.objects.filter(pk=group.pk).exists()
    assert {row[0] for rows in group_rows() for row in rows} == {other.pk}
    assert points(ids[:2], "1h")[0] == combined(ids[:2], "1h")

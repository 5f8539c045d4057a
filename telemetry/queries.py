"""Reading telemetry back: bucketed aggregates, latest values, raw readings.

Aggregates by 1h and 1d read the rollup tables for closed buckets and raw readings only for
the open tail (the current bucket, and any bucket a late reading made dirty since the last
rollup run), so a chart is both fast and current. 1m and 5m buckets come from raw readings.

Pages are bounded as users know them: at most MAX_RAW_ROWS raw readings and MAX_POINTS
aggregate points per query; a capped result says so (`capped`) and keeps the latest rows.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.utils import timezone

MAX_RAW_ROWS = 10_000
MAX_POINTS = 2_000

BUCKETS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
ROLLUP_TABLES = {"1h": "telemetry_hourlyrollup", "1d": "telemetry_dailyrollup"}


@dataclass(frozen=True)
class Point:
    sensor_id: int | None  # None when several sensors are combined
    bucket: datetime
    avg: float
    min: float
    max: float
    last: float
    count: int


@dataclass(frozen=True)
class Result:
    rows: list
    capped: bool
    limit: int


def truncate(moment: datetime, bucket: str) -> datetime:
    if bucket == "1d":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    step = int(BUCKETS[bucket].total_seconds())
    return datetime.fromtimestamp(int(moment.timestamp()) // step * step, tz=moment.tzinfo)


def tail_start(cursor, sensor_ids: list[int], start: datetime, end: datetime, bucket: str, now: datetime) -> datetime:
    """Where the rollups stop being complete: the current bucket, or the earliest dirty hour."""
    cursor.execute(
        "SELECT min(bucket) FROM telemetry_dirtyhour WHERE sensor_id = ANY(%s) AND bucket >= %s AND bucket < %s",
        [sensor_ids, truncate(start, "1h"), end],
    )
    earliest_dirty = cursor.fetchone()[0]
    tail = truncate(now, bucket)
    if earliest_dirty is not None:
        tail = min(tail, truncate(earliest_dirty, bucket))
    return max(tail, truncate(start, bucket))


def aggregate(sensor_ids, start: datetime, end: datetime, bucket: str, *, combine: bool = False, now: datetime | None = None, limit: int = MAX_POINTS) -> Result:
    """Points of avg/min/max/last/count per bucket (per sensor, or combined across sensors).

    Buckets start at multiples of their width since the epoch (days at UTC midnight); start is
    rounded down and end up to whole buckets, so every point covers its full bucket.
    """
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    sensor_ids = list(sensor_ids)
    if not sensor_ids or start >= end:
        return Result([], False, limit)
    now = now or timezone.now()
    start = truncate(start, bucket)
    end = truncate(end - timedelta(microseconds=1), bucket) + BUCKETS[bucket]
    group = "bucket" if combine else "sensor_id, bucket"
    select_sensor = "NULL::bigint" if combine else "sensor_id"
    width = f"{int(BUCKETS[bucket].total_seconds())} seconds"
    # "Last" is the value of the newest row (on a tie, the larger value), taken as max() over
    # [epoch, value] pairs: a plain aggregate, so PostgreSQL can hash the groups. The ordered
    # array_agg(value ORDER BY ts DESC) sorted every group apart: over half the SQL time of a
    # whole site's month of hours.
    raw = f"""
        SELECT {select_sensor} AS sensor_id, date_bin(%(width)s::interval, ts, 'epoch') AS bucket,
               count(*) AS count, sum(value) AS sum, min(value) AS min, max(value) AS max,
               (max(ARRAY[date_part('epoch', ts), value]))[2] AS last_value, max(ts) AS last_ts
        FROM telemetry_reading
        WHERE sensor_id = ANY(%(sensors)s) AND ts >= %(raw_from)s AND ts < %(end)s
        GROUP BY {group}"""
    params = {"width": width, "sensors": sensor_ids, "end": end, "start": start, "limit": limit + 1}
    with connection.cursor() as cursor:
        if bucket in ROLLUP_TABLES:
            params["raw_from"] = tail_start(cursor, sensor_ids, start, end, bucket, now)
            rolled = f"""
                SELECT {select_sensor} AS sensor_id, bucket, sum(count) AS count, sum(sum) AS sum, min(min) AS min,
                       max(max) AS max, (max(ARRAY[date_part('epoch', last_ts), last_value]))[2] AS last_value,
                       max(last_ts) AS last_ts
                FROM {ROLLUP_TABLES[bucket]}
                WHERE sensor_id = ANY(%(sensors)s) AND bucket >= %(start)s AND bucket < LEAST(%(raw_from)s, %(end)s)
                GROUP BY {group}"""
            source = f"({rolled}) UNION ALL ({raw})"
        else:
            params["raw_from"] = start
            source = raw
        # Buckets come back as epoch seconds: Django's timestamptz loader parses each one in
        # Python (~5 µs), nearly half the time of a one-sensor month of hours.
        cursor.execute(
            f"""SELECT sensor_id, date_part('epoch', bucket)::bigint, sum / count, min, max, last_value, count
                FROM ({source}) AS points ORDER BY bucket DESC, sensor_id LIMIT %(limit)s""",
            params,
        )
        rows = cursor.fetchall()
    capped = len(rows) > limit
    points = [Point(sensor_id, datetime.fromtimestamp(epoch, UTC), *values) for sensor_id, epoch, *values in reversed(rows[:limit])]
    return Result(points, capped, limit)


def raw_readings(sensor_ids, start: datetime, end: datetime, *, limit: int = MAX_RAW_ROWS) -> Result:
    """Raw (sensor_id, ts, value) rows in [start, end), newest first, at most `limit`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sensor_id, ts, value FROM telemetry_reading WHERE sensor_id = ANY(%s) AND ts >= %s AND ts < %s "
            "ORDER BY ts DESC, sensor_id LIMIT %s",
            [list(sensor_ids), start, end, limit + 1],
        )
        rows = cursor.fetchall()
    return Result(rows[:limit], len(rows) > limit, limit)


def last_readings(sensor_id: int, n: int = 20) -> list[tuple[datetime, float]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT ts, value FROM telemetry_reading WHERE sensor_id = %s ORDER BY ts DESC LIMIT %s", [sensor_id, n])
        return cursor.fetchall()


def latest_values(sensor_ids) -> dict[int, tuple[datetime, float]]:
    """{sensor id: (ts, value)} of each sensor's newest reading: one index probe per sensor."""
    sensor_ids = list(sensor_ids)
    if not sensor_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT s.id, r.ts, r.value FROM unnest(%s::bigint[]) AS s(id)
               CROSS JOIN LATERAL (SELECT ts, value FROM telemetry_reading WHERE sensor_id = s.id ORDER BY ts DESC LIMIT 1) r""",
            [sensor_ids],
        )
        return {sensor_id: (ts, value) for sensor_id, ts, value in cursor.fetchall()}


def stream_raw(sensor_ids, start: datetime, end: datetime, chunk: int = 5000):
    """Every raw (sensor_id, ts, value) in range, oldest first, through a server-side cursor:
    memory stays flat however many rows there are (used by streamed CSV exports)."""
    with connection.chunked_cursor() as cursor:
        cursor.execute(
            "SELECT sensor_id, ts, value FROM telemetry_reading WHERE sensor_id = ANY(%s) AND ts >= %s AND ts < %s ORDER BY sensor_id, ts",
            [list(sensor_ids), start, end],
        )
        while batch := cursor.fetchmany(chunk):
            yield from batch

"""Reading telemetry back: bucketed aggregates, latest values, raw readings.

Aggregates by 1h and 1d read the rollup tables for closed buckets and raw readings only for
the open tail (the current bucket, and any bucket a late reading made dirty since the last
rollup run), so a chart is both fast and current. Sensors combined (combine=True) that form a
ready SensorGroup read the group's rollups: one row a bucket. 1m and 5m buckets come from raw readings.

Pages are bounded as users know them: at most MAX_RAW_ROWS raw readings and MAX_POINTS
aggregate points per query; a capped result says so (`capped`) and keeps the latest rows.
"""

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import itemgetter
from typing import NamedTuple

import psycopg
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import QuerySet
from django.utils import timezone

MAX_RAW_ROWS = 10_000
MAX_POINTS = 2_000

BUCKETS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
ROLLUP_TABLES = {"1h": "telemetry_hourlyrollup", "1d": "telemetry_dailyrollup"}
GROUP_ROLLUP_TABLES = {"1h": "telemetry_grouphourlyrollup", "1d": "telemetry_groupdailyrollup"}


class Point(NamedTuple):
    """One bucket's aggregates. A named tuple: a year of hours is 8,760 of them, and a frozen
    dataclass's __init__ cost 2 µs each (17 ms of a 20 ms budget)."""

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


def tail_start(
    cursor, sensor_ids: list[int], start: datetime, end: datetime, now: datetime, *, combine: bool = False
) -> tuple[datetime, int | None]:
    """The first hour the rollups do not hold yet (the current hour, or the earliest dirty one),
    and, combining, the ready SensorGroup of exactly these sensors if there is one: one query."""
    from telemetry.models import members_digest

    cursor.execute(
        "SELECT (SELECT min(bucket) FROM telemetry_dirtyhour WHERE sensor_id = ANY(%s) AND bucket >= %s AND bucket < %s), "
        "(SELECT min(id) FROM telemetry_sensorgroup WHERE digest = %s AND ready)",
        [sensor_ids, truncate(start, "1h"), end, members_digest(sensor_ids) if combine else None],
    )
    earliest_dirty, group = cursor.fetchone()
    tail = truncate(now, "1h")
    if earliest_dirty is not None:
        tail = min(tail, earliest_dirty)
    return max(tail, truncate(start, "1h")), group


def aggregate(
    sensor_ids,
    start: datetime,
    end: datetime,
    bucket: str,
    *,
    combine: bool = False,
    now: datetime | None = None,
    limit: int = MAX_POINTS,
) -> Result:
    """Points of avg/min/max/last/count per bucket (per sensor, or combined across sensors).

    Buckets start at multiples of their width since the epoch (days at UTC midnight); start is
    rounded down and end up to whole buckets, so every point covers its full bucket.
    """
    sensor_ids = list(sensor_ids)
    query = points_query(sensor_ids, start, end, bucket, combine=combine, now=now)
    if query is None:
        return Result([], False, limit)
    source, params = query
    select = f"SELECT sensor_id, bucket, sum / count, min, max, last_value, count FROM ({source}) AS points"
    buckets = (params["end"] - params["start"]) // BUCKETS[bucket]
    if (1 if combine else len(set(sensor_ids))) * buckets <= limit:
        # a point a bucket and sensor at most: the cap cannot bite, so no ORDER BY … LIMIT; the rows
        # come nearly in order, and Python's sort of them is cheaper than PostgreSQL's sort of all
        # of their columns (a year of hours: 3 of 8 ms of SQL time)
        with binary_cursor() as cursor:
            cursor.execute(select, params)
            rows = cursor.fetchall()
        rows.sort(key=itemgetter(1) if combine or len(set(sensor_ids)) == 1 else point_order)
        return Result(as_points(rows), False, limit)
    with binary_cursor() as cursor:
        cursor.execute(f"{select} ORDER BY bucket DESC, sensor_id LIMIT %(limit)s", params | {"limit": limit + 1})
        rows = cursor.fetchall()
    capped = len(rows) > limit
    return Result(as_points(reversed(rows[:limit])), capped, limit)


def point_order(row):
    """aggregate()'s order of several sensors' points: by bucket, then by sensor id descending
    (the capped query's order read backwards)."""
    return row[1], -row[0]


def aggregate_each(
    sensor_ids, start: datetime, end: datetime, bucket: str, *, now: datetime | None = None, limit: int = MAX_POINTS
) -> dict[int, Result]:
    """aggregate() of every sensor, in one query: {sensor id: Result}, each capped at `limit`
    points as aggregate() caps one sensor (its latest kept). A page that shows several sensors'
    charts (and a table of the same points) asks once."""
    sensor_ids = list(sensor_ids)
    results = {sensor_id: Result([], False, limit) for sensor_id in sensor_ids}
    query = points_query(sensor_ids, start, end, bucket, now=now)
    if query is None:
        return results
    source, params = query
    with binary_cursor() as cursor:
        cursor.execute(
            f"""SELECT sensor_id, bucket, avg, min, max, last_value, count FROM (
                    SELECT sensor_id, bucket, sum / count AS avg, min, max, last_value, count,
                           row_number() OVER (PARTITION BY sensor_id ORDER BY bucket DESC) AS n
                    FROM ({source}) AS points) AS ranked
                WHERE n <= %(limit)s ORDER BY sensor_id, bucket""",
            params | {"limit": limit + 1},
        )
        rows = cursor.fetchall()
    by_sensor: dict[int, list] = {}
    for row in rows:
        by_sensor.setdefault(row[0], []).append(row)
    for sensor_id, sensor_rows in by_sensor.items():
        capped = len(sensor_rows) > limit
        results[sensor_id] = Result(as_points(sensor_rows[-limit:]), capped, limit)
    return results


def as_points(rows) -> list[Point]:
    """Rows in Point's field order as Points, each made by tuple.__new__ straight (Point._make and
    Point(*row) are a Python call a row: 5 of a year of hours' milliseconds on a loaded machine)."""
    return list(map(tuple.__new__, repeat(Point), rows))


class BinaryCursor(psycopg.Cursor):
    """Results in PostgreSQL's binary format, parameters bound by the server, never prepared."""

    def execute(self, query, params=None, **kwargs):
        return super().execute(query, params, prepare=False, binary=True)


class BinaryDebugCursorWrapper(CursorDebugWrapper):
    """Django's query log for a BinaryCursor: the SQL with its parameters in, as Django logs its
    own client-side bound queries (the server-bound text has $1 placeholders)."""

    def execute(self, sql, params=None):
        with self.debug_sql(self.db.ops.compose_sql(sql, params)):
            return CursorWrapper.execute(self, sql, params)


@contextmanager
def binary_cursor():
    """A cursor for many rows of timestamps and floats: in binary they load in psycopg's C code
    (a year of hours, 8,760 rows: 18 of 58 ms were Django's text loader of timestamptz, or a
    datetime made from epoch seconds in Python). Wrapped as Django wraps its own cursors (query
    log, execute wrappers), in the tenant's schema."""
    connection.cursor().close()  # connected, with the tenant's search_path
    raw = BinaryCursor(connection.connection)
    cursor = (BinaryDebugCursorWrapper if connection.queries_logged else CursorWrapper)(raw, connection)
    with cursor:
        yield cursor


# "Last" is the value of the newest row (on a tie, the larger value), taken as max() over
# [epoch, value] pairs: a plain aggregate, so PostgreSQL can hash the groups. The ordered
# array_agg(value ORDER BY ts DESC) sorted every group apart: over half the SQL time of a whole
# site's month of hours.
RAW_COLUMNS = """count(*) AS count, sum(value) AS sum, min(value) AS min, max(value) AS max,
    (max(ARRAY[date_part('epoch', ts), value]))[2] AS last_value, max(ts) AS last_ts"""
# Rows of buckets (rollups, or raw hours) combined into wider or shared buckets, "last" alike.
COMBINED_COLUMNS = """sum(count)::bigint AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
    (max(ARRAY[date_part('epoch', last_ts), last_value]))[2] AS last_value, max(last_ts) AS last_ts"""


def points_query(sensor_ids: list, start, end, bucket: str, *, combine: bool = False, now=None):
    """(SQL, params) of the points (sensor_id, bucket, count, sum, min, max, last_value, last_ts)
    in [start, end) rounded to whole buckets, from rollups and the raw tail; None if empty.

    By hour: hourly rollups, then raw readings from the first hour they do not hold (the current
    one, or the earliest dirty one). By day: daily rollups up to that hour's day, and that day
    (and any after it) from the hourly rollups of its clean hours and raw readings of the rest:
    today's chart point reads at most the current hour raw, not the whole day."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    if not sensor_ids or start >= end:
        return None
    now = now or timezone.now()
    start = truncate(start, bucket)
    end = truncate(end - timedelta(microseconds=1), bucket) + BUCKETS[bucket]
    params = {"sensors": sensor_ids, "start": start, "end": end}
    if bucket not in ROLLUP_TABLES:
        return raw_buckets(bucket, combine, "start"), params
    with connection.cursor() as cursor:
        hour_from, group = tail_start(cursor, sensor_ids, start, end, now, combine=combine)
    params |= {"group": group, "hour_from": hour_from, "bucket_from": min(truncate(hour_from, bucket), end)}
    closed = rollup_buckets(bucket, group, combine, "start", "bucket_from")
    if bucket == "1h":
        tail = raw_buckets("1h", combine, "hour_from")
    else:
        hours = rollup_buckets("1h", group, combine, "bucket_from", "hour_from")
        tail = f"""
            SELECT {"NULL::bigint" if combine else "sensor_id"} AS sensor_id,
                   date_bin('{BUCKETS[bucket].total_seconds():.0f} seconds'::interval, bucket, 'epoch') AS bucket,
                   {COMBINED_COLUMNS}
            FROM (({hours}) UNION ALL ({raw_buckets("1h", False, "hour_from")})) AS hours
            GROUP BY {"2" if combine else "1, 2"}"""  # by the day (the name "bucket" is the hour's here)
    return f"({closed}) UNION ALL ({tail})", params


def raw_buckets(bucket: str, combine: bool, since: str) -> str:
    """Raw readings from the parameter `since` to end, by bucket (and sensor unless combined)."""
    return f"""
        SELECT {"NULL::bigint" if combine else "sensor_id"} AS sensor_id,
               date_bin('{BUCKETS[bucket].total_seconds():.0f} seconds'::interval, ts, 'epoch') AS bucket, {RAW_COLUMNS}
        FROM telemetry_reading
        WHERE sensor_id = ANY(%(sensors)s) AND ts >= %({since})s AND ts < %(end)s
        GROUP BY {"bucket" if combine else "sensor_id, bucket"}"""


def rollup_buckets(bucket: str, group: int | None, combine: bool, since: str, until: str) -> str:
    """Rollup rows of this width in [since, until) (parameter names), before end."""
    span = f"bucket >= %({since})s AND bucket < LEAST(%({until})s, %(end)s)"
    if group is not None:
        # the group's own rollups: one row a bucket, where the members' would be one a sensor
        return f"""
            SELECT NULL::bigint AS sensor_id, bucket, count, sum, min, max, last_value, last_ts
            FROM {GROUP_ROLLUP_TABLES[bucket]} WHERE group_id = %(group)s AND {span}"""
    if combine:
        return f"""
            SELECT NULL::bigint AS sensor_id, bucket, {COMBINED_COLUMNS}
            FROM {ROLLUP_TABLES[bucket]} WHERE sensor_id = ANY(%(sensors)s) AND {span} GROUP BY bucket"""
    # a rollup row of a sensor is that sensor's point already: nothing to group (a year of hours
    # spent 30 of its 60 ms in a GROUP BY of groups of one)
    return f"""
        SELECT sensor_id, bucket, count, sum, min, max, last_value, last_ts
        FROM {ROLLUP_TABLES[bucket]} WHERE sensor_id = ANY(%(sensors)s) AND {span}"""


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


def raw_readings_each(sensor_ids, start: datetime, end: datetime, *, limit: int = MAX_RAW_ROWS) -> dict[int, Result]:
    """raw_readings() of every sensor in one query (each sensor's newest `limit` by its index)."""
    sensor_ids = list(sensor_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT s.id, r.ts, r.value FROM unnest(%s::bigint[]) AS s(id)
               CROSS JOIN LATERAL (SELECT ts, value FROM telemetry_reading WHERE sensor_id = s.id AND ts >= %s AND ts < %s
                                   ORDER BY ts DESC LIMIT %s) AS r""",
            [sensor_ids, start, end, limit + 1],
        )
        rows = cursor.fetchall()
    by_sensor: dict[int, list] = {sensor_id: [] for sensor_id in sensor_ids}
    for row in rows:
        by_sensor[row[0]].append(row)
    return {sensor_id: Result(got[:limit], len(got) > limit, limit) for sensor_id, got in by_sensor.items()}


def readings_by_sensor(sensor_ids, start: datetime, end: datetime, *, limit: int) -> dict[int, list]:
    """{sensor id: [(ts, value), …]} of the raw readings in [start, end], newest `limit` at most.
    Used by the alert engine to read a committed batch back, so it is lean: the sensor ids travel
    as one string (a list parameter is dumped element by element), times come as epoch seconds (a
    float loads several times faster than a timestamptz through Django's time-zone loader), and
    each distinct instant becomes one datetime."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sensor_id, date_part('epoch', ts), value FROM telemetry_reading "
            "WHERE sensor_id = ANY(string_to_array(%s, ',')::bigint[]) AND ts >= %s AND ts <= %s "
            "ORDER BY ts DESC LIMIT %s",
            [",".join(map(str, sensor_ids)), start, end, limit],
        )
        rows = cursor.fetchall()
    instants, found = {}, {}
    for sensor_id, epoch, value in rows:
        ts = instants.get(epoch)
        if ts is None:
            ts = instants[epoch] = datetime.fromtimestamp(epoch, UTC)
        found.setdefault(sensor_id, []).append((ts, value))
    return found


def last_readings(sensor_id: int, n: int = 20) -> list[tuple[datetime, float]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ts, value FROM telemetry_reading WHERE sensor_id = %s ORDER BY ts DESC LIMIT %s", [sensor_id, n]
        )
        return cursor.fetchall()


# a sensor's newest reading, by the primary key's (sensor_id, ts) order: one index probe
NEWEST_READING = "SELECT ts, value FROM telemetry_reading WHERE sensor_id = {sensor} ORDER BY ts DESC LIMIT 1"


def latest_values(sensors) -> dict[int, tuple[datetime, float]]:
    """{sensor id: (ts, value)} of each sensor's newest reading: one index probe per sensor.

    sensors: sensor ids, or a queryset of Sensor, which becomes a subquery: finding the sensors
    and their latest readings is then one round trip (a live poll's whole cost when nothing is new).
    """
    if isinstance(sensors, QuerySet):
        subquery, params = sensors.order_by().values("pk").query.sql_with_params()
        source, params = f"({subquery}) AS s(id)", list(params)
    else:
        ids = list(sensors)
        if not ids:
            return {}
        source, params = "unnest(%s::bigint[]) AS s(id)", [ids]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT s.id, r.ts, r.value FROM {source} CROSS JOIN LATERAL ({NEWEST_READING.format(sensor='s.id')}) r",
            params,
        )
        return {sensor_id: (ts, value) for sensor_id, ts, value in cursor.fetchall()}


def with_newest_readings(rows_sql: str, params, sensor_column: str, order_by: str) -> list[tuple]:
    """Each row of `rows_sql` (a caller's query naming a sensor id in `sensor_column`), its
    columns followed by that sensor's newest reading's ts and value (None, None before the first),
    in `order_by` order: one statement, one index probe per row. The caller limits its rows first,
    so the probes are for the rows it shows only."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT k.*, r.ts, r.value FROM ({rows_sql}) k"
            f" LEFT JOIN LATERAL ({NEWEST_READING.format(sensor=f'k.{sensor_column}')}) r ON true ORDER BY {order_by}",
            params,
        )
        return cursor.fetchall()


def device_newest(device_pk: int) -> tuple[bool, datetime | None]:
    """(whether the device exists, the newest of its last_seen and its sensors' latest readings)
    in one query: one index probe per sensor (a device page's poll when nothing is new)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT GREATEST(d.last_seen, (SELECT max(r.ts) FROM telemetry_sensor s CROSS JOIN LATERAL
                   (SELECT ts FROM telemetry_reading WHERE sensor_id = s.id ORDER BY ts DESC LIMIT 1) r
                   WHERE s.device_id = d.id))
               FROM telemetry_device d WHERE d.id = %s""",
            [device_pk],
        )
        row = cursor.fetchone()
    return (False, None) if row is None else (True, row[0])


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


def latest_values_before(sensor_ids, before: datetime) -> dict[int, tuple[datetime, float]]:
    """{sensor id: (ts, value)} of each sensor's newest reading strictly before `before`."""
    sensor_ids = list(sensor_ids)
    if not sensor_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT s.id, r.ts, r.value FROM unnest(%s::bigint[]) AS s(id)
               CROSS JOIN LATERAL (SELECT ts, value FROM telemetry_reading WHERE sensor_id = s.id AND ts < %s
                                   ORDER BY ts DESC LIMIT 1) r""",
            [sensor_ids, before],
        )
        return {sensor_id: (ts, value) for sensor_id, ts, value in cursor.fetchall()}


def readings_since(moment: datetime) -> int:
    """How many readings are stamped at or after `moment` (the dashboard's last hour): the BRIN
    index on ts finds the recent blocks; the table is filled in time order."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM telemetry_reading WHERE ts >= %s", [moment])
        return cursor.fetchone()[0]


class FleetState(NamedTuple):
    """The devices' online state in one query: how many, how many online (seen within the online
    window), the newest last_seen of all and of the offline ones."""

    total: int
    online: int
    newest_seen: datetime | None
    offline_newest: datetime | None


# the fleet's state in one row (params: the online cutoff twice); portal.core.overview runs it
# among the dashboard's other probes
FLEET_STATE_SQL = """SELECT count(*) AS total, count(*) FILTER (WHERE last_seen >= %s) AS online,
    max(last_seen) AS newest_seen, max(last_seen) FILTER (WHERE NOT (last_seen >= %s)) AS offline_newest
    FROM telemetry_device"""

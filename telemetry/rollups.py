"""Hourly and daily rollups, recomputed from raw readings for the hours the ingest path marked.

Recomputing (never incrementing) is what makes it idempotent: running twice, or after a
crash half-way, gives the same rows; a late reading marks its old hour dirty again and the
next run recomputes that hour and its day. A sensor group's hours and days (SensorGroup) are
recomputed from its members' rollups in the same transaction as theirs.
"""

from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from telemetry.models import TelemetrySettings

HOURLY_SQL = """
INSERT INTO telemetry_hourlyrollup (sensor_id, bucket, count, sum, min, max, last_value, last_ts)
SELECT d.sensor_id, d.bucket, count(*), sum(r.value), min(r.value), max(r.value),
       (array_agg(r.value ORDER BY r.ts DESC))[1], max(r.ts)
FROM unnest(%s::bigint[], %s::timestamptz[]) AS d(sensor_id, bucket)
JOIN telemetry_reading r ON r.sensor_id = d.sensor_id AND r.ts >= d.bucket AND r.ts < d.bucket + interval '1 hour'
GROUP BY d.sensor_id, d.bucket
ON CONFLICT (sensor_id, bucket) DO UPDATE SET
  count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
  last_value = EXCLUDED.last_value, last_ts = EXCLUDED.last_ts
"""

DAILY_SQL = """
INSERT INTO telemetry_dailyrollup (sensor_id, bucket, count, sum, min, max, last_value, last_ts)
SELECT d.sensor_id, d.day, sum(h.count), sum(h.sum), min(h.min), max(h.max),
       (array_agg(h.last_value ORDER BY h.last_ts DESC))[1], max(h.last_ts)
FROM (SELECT DISTINCT * FROM unnest(%s::bigint[], %s::timestamptz[])) AS d(sensor_id, day)
JOIN telemetry_hourlyrollup h ON h.sensor_id = d.sensor_id AND h.bucket >= d.day AND h.bucket < d.day + interval '1 day'
GROUP BY d.sensor_id, d.day
ON CONFLICT (sensor_id, bucket) DO UPDATE SET
  count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
  last_value = EXCLUDED.last_value, last_ts = EXCLUDED.last_ts
"""

# A group's bucket from its members' rollups of that bucket; "last" as telemetry.queries combines
# sensors: the newest last value, on a tie the larger.
GROUP_SELECT = """
SELECT {group}, {bucket}, sum(h.count), sum(h.sum), min(h.min), max(h.max),
       (max(ARRAY[date_part('epoch', h.last_ts), h.last_value]))[2], max(h.last_ts)
"""
GROUP_UPSERT = """
ON CONFLICT (group_id, bucket) DO UPDATE SET
  count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
  last_value = EXCLUDED.last_value, last_ts = EXCLUDED.last_ts
"""

# The groups of the claimed sensors, locked in order: a define() or build in progress finishes
# first, and two runs touching one group recompute its buckets one after the other (each from
# what the other committed), never from a snapshot that misses the other's member rows.
LOCK_GROUPS_SQL = """
SELECT id FROM telemetry_sensorgroup
WHERE id IN (SELECT group_id FROM telemetry_sensorgroupmember WHERE sensor_id = ANY(%s))
ORDER BY id FOR UPDATE
"""

GROUP_HOURLY_SQL = (
    """
INSERT INTO telemetry_grouphourlyrollup (group_id, bucket, count, sum, min, max, last_value, last_ts)"""
    + GROUP_SELECT.format(group="d.group_id", bucket="d.bucket")
    + """
FROM (SELECT DISTINCT m.group_id, c.bucket FROM unnest(%s::bigint[], %s::timestamptz[]) AS c(sensor_id, bucket)
      JOIN telemetry_sensorgroupmember m ON m.sensor_id = c.sensor_id) AS d
JOIN telemetry_sensorgroupmember m ON m.group_id = d.group_id
JOIN telemetry_hourlyrollup h ON h.sensor_id = m.sensor_id AND h.bucket = d.bucket
GROUP BY d.group_id, d.bucket"""
    + GROUP_UPSERT
)

GROUP_DAILY_SQL = (
    """
INSERT INTO telemetry_groupdailyrollup (group_id, bucket, count, sum, min, max, last_value, last_ts)"""
    + GROUP_SELECT.format(group="d.group_id", bucket="d.day")
    + """
FROM (SELECT DISTINCT m.group_id, date_trunc('day', c.bucket, 'UTC') AS day
      FROM unnest(%s::bigint[], %s::timestamptz[]) AS c(sensor_id, bucket)
      JOIN telemetry_sensorgroupmember m ON m.sensor_id = c.sensor_id) AS d
JOIN telemetry_grouphourlyrollup h ON h.group_id = d.group_id AND h.bucket >= d.day AND h.bucket < d.day + interval '1 day'
GROUP BY d.group_id, d.day"""
    + GROUP_UPSERT
)

# A whole group at once, from all of its members' hours, then its days from its hours.
BUILD_HOURLY_SQL = (
    """
INSERT INTO telemetry_grouphourlyrollup (group_id, bucket, count, sum, min, max, last_value, last_ts)"""
    + GROUP_SELECT.format(group="%(group)s::bigint", bucket="h.bucket")
    + """
FROM telemetry_hourlyrollup h
WHERE h.sensor_id IN (SELECT sensor_id FROM telemetry_sensorgroupmember WHERE group_id = %(group)s)
GROUP BY h.bucket"""
    + GROUP_UPSERT
)
BUILD_DAILY_SQL = (
    """
INSERT INTO telemetry_groupdailyrollup (group_id, bucket, count, sum, min, max, last_value, last_ts)"""
    + GROUP_SELECT.format(group="%(group)s::bigint", bucket="date_trunc('day', h.bucket, 'UTC')")
    + """
FROM telemetry_grouphourlyrollup h WHERE h.group_id = %(group)s
GROUP BY 2"""
    + GROUP_UPSERT
)

CLAIM_SQL = """
DELETE FROM telemetry_dirtyhour WHERE (sensor_id, bucket) IN (
  SELECT sensor_id, bucket FROM telemetry_dirtyhour ORDER BY bucket LIMIT %s FOR UPDATE SKIP LOCKED
) RETURNING sensor_id, bucket
"""


def roll_up_step(limit: int = 5000) -> int:
    """Recompute up to `limit` dirty hours and their days; returns how many hours were done.

    SKIP LOCKED lets two workers share the backlog; the claim and the recompute commit together,
    so a crash leaves the hours dirty for the next run.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL, [limit])
        claimed = cursor.fetchall()
        if not claimed:
            return 0
        sensors = [sensor_id for sensor_id, _ in claimed]
        hours = [bucket for _, bucket in claimed]
        cursor.execute(HOURLY_SQL, [sensors, hours])
        days = [bucket.replace(hour=0) for bucket in hours]
        cursor.execute(DAILY_SQL, [sensors, days])
        cursor.execute(LOCK_GROUPS_SQL, [sensors])
        if cursor.fetchall():
            cursor.execute(GROUP_HOURLY_SQL, [sensors, hours])
            cursor.execute(GROUP_DAILY_SQL, [sensors, hours])
        return len(claimed)


def build_group_step() -> bool:
    """Build the rollups of one group defined since (SensorGroup.define): every hour and day of
    its members together, from their hourly rollups. False when no group waits."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM telemetry_sensorgroup WHERE NOT ready ORDER BY changed_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
        )
        row = cursor.fetchone()
        if row is None:
            return False
        cursor.execute(BUILD_HOURLY_SQL, {"group": row[0]})
        cursor.execute(BUILD_DAILY_SQL, {"group": row[0]})
        cursor.execute("UPDATE telemetry_sensorgroup SET ready = true WHERE id = %s", [row[0]])
        return True


def roll_up(limit: int = 5000) -> int:
    """Work through the whole backlog of dirty hours, then build the groups defined since."""
    total = 0
    while done := roll_up_step(limit):
        total += done
    while build_group_step():
        pass
    return total


def purge_raw_readings(batch: int = 20000) -> int:
    """Delete raw readings past the tenant's retention, in batches (rollups are kept)."""
    cutoff = timezone.now() - timedelta(days=TelemetrySettings.current().raw_retention_days)
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM telemetry_reading WHERE ctid = ANY(ARRAY("
                "SELECT ctid FROM telemetry_reading WHERE ts < %s LIMIT %s))",
                [cutoff, batch],
            )
            if cursor.rowcount == 0:
                return deleted
            deleted += cursor.rowcount

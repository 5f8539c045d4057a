"""Hourly and daily rollups, recomputed from raw readings for the hours the ingest path marked.

Recomputing (never incrementing) is what makes it idempotent: running twice, or after a
crash half-way, gives the same rows; a late reading marks its old hour dirty again and the
next run recomputes that hour and its day.
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
        return len(claimed)


def roll_up(limit: int = 5000) -> int:
    """Work through the whole backlog of dirty hours."""
    total = 0
    while done := roll_up_step(limit):
        total += done
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

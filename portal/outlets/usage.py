"""Usage rollups: treatment events per device, machine, treatment and hour / day / month, cut in
the tenant's time zone, recomputed from raw events for exactly the buckets that changed.

Steps of one run (roll_up_usage(), the Huey tenant task in portal/outlets/tasks.py):

1. Dirty hours: the (device, hour) of every event received since the cursor (the BRIN index on
   received_at makes that scan cheap; it starts RECEIVED_MARGIN early, so an event whose
   transaction committed after a run had looked is still found), plus UsageDirty marks (binding
   changes, flushes), plus for each of those the hour of the device's next event of each
   treatment: a late event changes the counter increase of the event after it.
2. Hours: delete the dirty hours' rows and insert them again from raw events. Each event counts
   for the machine its device was bound to at the event's time (a device's first binding also
   takes what it counted before: events of an unregistered device count once it is registered).
   Counter increase: counter minus the same treatment's previous counter; a counter lower than
   the one before was reset, and its whole value is the increase.
3. Days, then months: deleted and summed again from the level below, for the days and months the
   dirty hours fall in.
4. The cursor moves: statistics read rollups before `closed_before` (the hour the run started in)
   and raw events from there on (portal.outlets.stats).

A first run (no cursor yet, or the zone changed) skips steps 1-3 for one set-based pass over all
events (rebuild_all): the same rows, without tracking millions of dirty hours after a bulk import.

Recomputing, never incrementing, is what makes a rerun change nothing. Buckets: days and months
are the tenant's local ones (a DST day has 23 or 25 hours); hours are UTC hours moved by the
zone's sub-hour offset (Asia/Kolkata's hours start at :30), so a repeated local hour at a DST
change is two hours, as it was lived.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.utils import timezone

from portal.outlets.models import UsageCursor, UsageDaily, UsageDirty, UsageHourly, UsageMonthly
from telemetry.models import DeviceEvent

RECEIVED_MARGIN = timedelta(minutes=2)  # longer than any event insert's transaction
REBUILD_WORK_MEM = "256MB"  # for rebuild_all's single pass, within its transaction only
TREATMENTS = tuple(DeviceEvent.Treatment.values)
EVENTS = DeviceEvent._meta.db_table
HOURLY, DAILY, MONTHLY = (model._meta.db_table for model in (UsageHourly, UsageDaily, UsageMonthly))
BINDINGS = "outlets_machinedevice"


def tenant_zone() -> ZoneInfo:
    tenant = getattr(connection, "tenant", None)
    zone = getattr(tenant, "zone", None)
    if zone is None:
        from portal.tenancy.models import Tenant

        found = Tenant.objects.filter(schema_name=connection.schema_name).first()
        zone = found.zone if found else ZoneInfo("UTC")
    return zone


def hour_shift(zone: ZoneInfo) -> int:
    """Seconds the zone's hours start after UTC's (0 for whole-hour zones, 1800 for Kolkata)."""
    offset = datetime.now(zone).utcoffset() or timedelta(0)
    return int(offset.total_seconds()) % 3600


def hour_sql(column: str, shift: int) -> str:
    """SQL for the start of the hour `column` falls in (see hour_shift)."""
    if not shift:
        return f"date_trunc('hour', {column}, 'UTC')"
    return f"to_timestamp(floor((extract(epoch FROM {column}) + {shift}) / 3600) * 3600 - {shift})"


def floor_hour(moment: datetime, shift: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp((epoch + shift) // 3600 * 3600 - shift, UTC)


# Binding intervals: a device's first binding reaches back to its first event.
INTERVALS = f"""
intervals AS (
  SELECT device_id, machine_id,
         CASE WHEN row_number() OVER (PARTITION BY device_id ORDER BY assigned_date, id) = 1
              THEN '-infinity'::timestamptz ELSE assigned_date END AS valid_from,
         COALESCE(deactivated_date, 'infinity'::timestamptz) AS valid_to
  FROM {BINDINGS}
)"""


def increase(alias: str) -> str:
    """SQL for the counter increase of event row `alias` (its `counter` and the same treatment's
    previous counter `before`): the difference; after a reset (a lower counter) the whole counter;
    0 without both. The one definition the rollups and the statistics' raw part share."""
    return (
        f"CASE WHEN {alias}.counter IS NULL OR {alias}.before IS NULL THEN 0 "
        f"WHEN {alias}.counter >= {alias}.before THEN {alias}.counter - {alias}.before ELSE {alias}.counter END"
    )


def attributed(alias: str) -> str:
    """The join giving event `alias` its machine (i.machine_id, null when bound to none)."""
    return (
        f"LEFT JOIN intervals i ON i.device_id = {alias}.device_id "
        f"AND {alias}.ts >= i.valid_from AND {alias}.ts < i.valid_to"
    )


# The dirty hours' devices are read over one span each (first to last dirty hour), so a backfill of
# a device's whole history is one pass in time order, not a look-up per hour; the counter before
# each span comes from one index probe per device and treatment.
SPANS = """
dirty AS (SELECT DISTINCT * FROM unnest(%(devices)s::bigint[], %(hours)s::timestamptz[]) AS d(device_id, hour)),
spans AS (SELECT device_id, min(hour) AS lo, max(hour) + interval '1 hour' AS hi FROM dirty GROUP BY device_id)"""


def hours_sql(shift: int) -> str:
    return f"""
WITH {SPANS.strip()},
{INTERVALS.strip()},
counted AS (
  SELECT e.device_id, e.treatment, e.ts, e.id, e.counter, false AS earlier
  FROM spans s JOIN {EVENTS} e ON e.device_id = s.device_id AND e.ts >= s.lo AND e.ts < s.hi
  WHERE e.treatment <> ''
  UNION ALL
  SELECT s.device_id, t.treatment, p.ts, p.id, p.counter, true
  FROM spans s CROSS JOIN unnest(%(treatments)s::text[]) AS t(treatment)
  CROSS JOIN LATERAL (
    SELECT e.ts, e.id, e.counter FROM {EVENTS} e
    WHERE e.device_id = s.device_id AND e.treatment = t.treatment AND e.ts < s.lo
    ORDER BY e.ts DESC, e.id DESC LIMIT 1
  ) p
),
stepped AS (
  SELECT *, {hour_sql("ts", shift)} AS hour,
         lag(counter) OVER (PARTITION BY device_id, treatment ORDER BY ts, id) AS before
  FROM counted
)
INSERT INTO {HOURLY} (device_id, machine_id, treatment, bucket, events, counter_delta)
SELECT s.device_id, i.machine_id, s.treatment, s.hour, count(*),
       COALESCE(sum({increase("s")}), 0)
FROM stepped s JOIN dirty d ON d.device_id = s.device_id AND d.hour = s.hour {attributed("s")}
WHERE NOT s.earlier
GROUP BY s.device_id, i.machine_id, s.treatment, s.hour
"""


DELETE_SQL = """
DELETE FROM {table} r USING (SELECT DISTINCT * FROM unnest(%(devices)s::bigint[], %(buckets)s::timestamptz[])) AS d(device_id, bucket)
WHERE r.device_id = d.device_id AND r.bucket = d.bucket
"""

# days from hours, months from days: a local day's end is its local midnight + 1 day, back in UTC
SUM_SQL = """
INSERT INTO {target} (device_id, machine_id, treatment, bucket, events, counter_delta)
SELECT d.device_id, r.machine_id, r.treatment, d.bucket, sum(r.events), sum(r.counter_delta)
FROM (SELECT DISTINCT * FROM unnest(%(devices)s::bigint[], %(buckets)s::timestamptz[])) AS d(device_id, bucket)
JOIN {source} r ON r.device_id = d.device_id AND r.bucket >= d.bucket
  AND r.bucket < ((d.bucket AT TIME ZONE %(zone)s) + interval '1 {unit}') AT TIME ZONE %(zone)s
GROUP BY d.device_id, r.machine_id, r.treatment, d.bucket
"""


def received_hours(cursor, since: datetime | None, until: datetime, shift: int) -> list[tuple[int, datetime]]:
    lower = "" if since is None else "AND received_at >= %(since)s"
    cursor.execute(
        f"SELECT DISTINCT device_id, {hour_sql('ts', shift)} FROM {EVENTS} WHERE received_at < %(until)s {lower}",
        {"since": since - RECEIVED_MARGIN if since else None, "until": until},
    )
    return cursor.fetchall()


def claimed_marks(cursor) -> list[tuple[int, datetime]]:
    cursor.execute(f"DELETE FROM {UsageDirty._meta.db_table} RETURNING device_id, bucket")
    return cursor.fetchall()


def next_event_hours(cursor, pairs: list[tuple[int, datetime]], shift: int) -> list[tuple[int, datetime]]:
    """Hours whose counter increase depends on a dirty hour: those of the events that follow a
    dirty hour's last event of each treatment (inside the device's span), and of each device's
    first event of each treatment after its span."""
    cursor.execute(
        f"""
        WITH {SPANS.strip()},
        seq AS (
          SELECT e.device_id, {hour_sql("e.ts", shift)} AS hour,
                 lag({hour_sql("e.ts", shift)}) OVER (PARTITION BY e.device_id, e.treatment ORDER BY e.ts, e.id) AS before
          FROM spans s JOIN {EVENTS} e ON e.device_id = s.device_id AND e.ts >= s.lo AND e.ts < s.hi
          WHERE e.treatment <> ''
        )
        SELECT DISTINCT q.device_id, q.hour FROM seq q
        JOIN dirty d ON d.device_id = q.device_id AND d.hour = q.before
        WHERE q.hour <> q.before
        UNION
        SELECT s.device_id, {hour_sql("n.ts", shift)}
        FROM spans s CROSS JOIN unnest(%(treatments)s::text[]) AS t(treatment)
        CROSS JOIN LATERAL (
          SELECT e.ts FROM {EVENTS} e
          WHERE e.device_id = s.device_id AND e.treatment = t.treatment AND e.ts >= s.hi
          ORDER BY e.ts, e.id LIMIT 1
        ) n
        """,
        {"devices": [p[0] for p in pairs], "hours": [p[1] for p in pairs], "treatments": list(TREATMENTS)},
    )
    return cursor.fetchall()


def local_starts(cursor, pairs, unit: str, zone: str) -> list[tuple[int, datetime]]:
    cursor.execute(
        f"SELECT DISTINCT device_id, date_trunc('{unit}', bucket, %(zone)s) "
        "FROM unnest(%(devices)s::bigint[], %(buckets)s::timestamptz[]) AS d(device_id, bucket)",
        {"devices": [p[0] for p in pairs], "buckets": [p[1] for p in pairs], "zone": zone},
    )
    return cursor.fetchall()


def recompute(cursor, pairs: list[tuple[int, datetime]], zone: str, shift: int) -> None:
    """Steps 2 and 3 for these dirty (device, hour) pairs."""
    devices, hours = [p[0] for p in pairs], [p[1] for p in pairs]
    cursor.execute(DELETE_SQL.format(table=HOURLY), {"devices": devices, "buckets": hours})
    cursor.execute(hours_sql(shift), {"devices": devices, "hours": hours, "treatments": list(TREATMENTS)})
    source, below = HOURLY, pairs
    for unit, target in (("day", DAILY), ("month", MONTHLY)):
        starts = local_starts(cursor, below, unit, zone)
        params = {"devices": [p[0] for p in starts], "buckets": [p[1] for p in starts], "zone": zone}
        cursor.execute(DELETE_SQL.format(table=target), params)
        cursor.execute(SUM_SQL.format(target=target, source=source, unit=unit), params)
        source, below = target, starts


def rebuild_sql(shift: int) -> str:
    """Every hour of every device from all raw events in one pass (the first run, and a run after
    the zone changed): the same rows as hours_sql() for each hour, without the per-hour steps."""
    return f"""
WITH {INTERVALS.strip()},
stepped AS (
  SELECT e.device_id, e.treatment, e.ts, e.counter, {hour_sql("e.ts", shift)} AS hour,
         lag(e.counter) OVER (PARTITION BY e.device_id, e.treatment ORDER BY e.ts, e.id) AS before
  FROM {EVENTS} e WHERE e.treatment <> ''
)
INSERT INTO {HOURLY} (device_id, machine_id, treatment, bucket, events, counter_delta)
SELECT s.device_id, i.machine_id, s.treatment, s.hour, count(*),
       COALESCE(sum({increase("s")}), 0)
FROM stepped s {attributed("s")}
GROUP BY s.device_id, i.machine_id, s.treatment, s.hour
"""


# days from hours, months from days, all at once (rebuild_all)
SUM_ALL_SQL = """
INSERT INTO {target} (device_id, machine_id, treatment, bucket, events, counter_delta)
SELECT device_id, machine_id, treatment, date_trunc('{unit}', bucket, %(zone)s), sum(events), sum(counter_delta)
FROM {source} GROUP BY 1, 2, 3, 4
"""


def rebuild_all(cursor, zone: str, shift: int) -> int:
    """Steps 2 and 3 for every hour there is (no rollups yet, or none that count): set-based over
    the whole table instead of dirty hour by dirty hour. Returns the hourly rows made."""
    cursor.execute(f"DELETE FROM {UsageDirty._meta.db_table}")  # all of them are recomputed now
    # one sort and one aggregate over every event: in memory, not in hundreds of spilled batches
    cursor.execute(f"SET LOCAL work_mem = '{REBUILD_WORK_MEM}'")
    for table in (HOURLY, DAILY, MONTHLY):
        cursor.execute(f"DELETE FROM {table}")
    cursor.execute(rebuild_sql(shift))
    made = cursor.rowcount
    cursor.execute(SUM_ALL_SQL.format(target=DAILY, source=HOURLY, unit="day"), {"zone": zone})
    cursor.execute(SUM_ALL_SQL.format(target=MONTHLY, source=DAILY, unit="month"), {"zone": zone})
    return made


def reset_for_zone(cursor, state: UsageCursor, zone: str) -> None:
    """The tenant's time zone changed: its days and months are other buckets; start over."""
    for table in (HOURLY, DAILY, MONTHLY):
        cursor.execute(f"DELETE FROM {table}")
    state.received_before = None
    state.time_zone = zone


def roll_up_usage(batch_hours: int = 20_000) -> int:
    """One run (module docstring); returns how many (device, hour) pairs were recomputed (on a
    first run, how many hourly rows were made)."""
    zone_info = tenant_zone()
    zone, shift = zone_info.key, hour_shift(zone_info)
    done = 0
    with transaction.atomic(), connection.cursor() as cursor:
        state = UsageCursor.objects.select_for_update().get(pk=UsageCursor.current().pk)
        if state.time_zone != zone:
            reset_for_zone(cursor, state, zone)
        until = timezone.now()  # the clock that stamped received_at (store_event), not the database's
        if state.received_before is None:
            done = rebuild_all(cursor, zone, shift)
        else:
            dirty = set(received_hours(cursor, state.received_before, until, shift)) | set(claimed_marks(cursor))
            found = sorted(dirty)
            for start in range(0, len(found), batch_hours):
                dirty |= set(next_event_hours(cursor, found[start : start + batch_hours], shift))
            pairs = sorted(dirty)
            for start in range(0, len(pairs), batch_hours):
                recompute(cursor, pairs[start : start + batch_hours], zone, shift)
            done = len(pairs)
        state.received_before = until
        state.closed_before = floor_hour(until - RECEIVED_MARGIN, shift)
        state.rolled_at = timezone.now()
        state.save()
    return done


def mark_dirty(device_id: int, start: datetime | None = None, end: datetime | None = None) -> int:
    """Mark the hours of a device's events in [start, end) (all of them when open) for the next
    run: its bindings changed or some were flushed."""
    shift = hour_shift(tenant_zone())
    conditions, params = ["device_id = %(device)s"], {"device": device_id}
    if start is not None:
        conditions.append("ts >= %(start)s")
        params["start"] = start
    if end is not None:
        conditions.append("ts < %(end)s")
        params["end"] = end
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {UsageDirty._meta.db_table} (device_id, bucket) "
            f"SELECT DISTINCT device_id, {hour_sql('ts', shift)} FROM {EVENTS} WHERE {' AND '.join(conditions)} "
            "ON CONFLICT DO NOTHING",
            params,
        )
        return cursor.rowcount

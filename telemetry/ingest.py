"""The one write path for readings, whatever brought them (MQTT, HTTP bulk upload, webhook).

The caller has resolved the tenant (the connection is in its schema) and turned its payload
into ReadingIn values. ingest() does the rest in one transaction:

1. resolve (device id, sensor key) to sensors through an in-process cache, creating devices
   and sensors on first sight when the tenant allows it;
2. validate every reading; rejects go to DeadLetter with their reason, never dropped;
3. drop duplicates within the batch;
4. COPY the batch straight into the readings table; only when that hits an existing
   (sensor, ts) does it fall back to COPY into a staging table + INSERT … ON CONFLICT DO NOTHING,
   so the common case runs at plain COPY speed and dedup is still exact. Steps 2–4 run
   interleaved: each reading goes into the COPY as soon as it is checked, so PostgreSQL stores
   rows while Python checks the next ones;
5. mark the touched (sensor, hour) buckets for the rollup task and advance devices' last_seen.
"""

import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from django.db import connection, models, transaction
from django.utils import timezone

from telemetry.models import DeadLetter, Device, Sensor, TelemetrySettings

CACHE_SECONDS = 60


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~1.5 µs a reading at bridge rates
class ReadingIn:
    """One reading as a source reported it. `raw` and `topic` are kept if it is rejected."""

    device: str
    sensor: str
    ts: datetime | None
    value: object
    unit: str = ""
    type: str = ""
    raw: str = ""
    topic: str = ""


@dataclass
class IngestResult:
    written: int = 0
    duplicates: int = 0
    rejected: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, other: "IngestResult") -> None:
        self.written += other.written
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.reasons.update(other.reasons)

    def as_dict(self) -> dict:
        return {"written": self.written, "duplicates": self.duplicates, "rejected": self.rejected, "reasons": dict(self.reasons)}


@dataclass(frozen=True)
class SensorInfo:
    id: int
    device_pk: int
    unit: str
    min_value: float | None
    max_value: float | None


class Rejected(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason, self.detail = reason, detail


# --- sensor resolution ----------------------------------------------------------------------

class SensorCache:
    """(schema, device id, sensor key) -> SensorInfo, per process, entries kept CACHE_SECONDS.

    The expiry bounds how long another process's change to a sensor's unit or range goes
    unseen here; changes made in this process are dropped at once by forget().
    """

    def __init__(self):
        self._entries: dict[tuple[str, str, str], tuple[float, SensorInfo]] = {}
        self._lock = threading.Lock()

    def get(self, key):
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key, info: SensorInfo) -> None:
        with self._lock:
            if len(self._entries) > 200_000:  # bound memory on a runaway stream of new sensors
                self._entries.clear()
            self._entries[key] = (time.monotonic() + CACHE_SECONDS, info)

    def forget(self, schema: str, device_id: str, key: str) -> None:
        with self._lock:
            self._entries.pop((schema, device_id, key), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


sensor_cache = SensorCache()

RULES_SECONDS = 5
_rules: dict[str, tuple[float, TelemetrySettings]] = {}


def current_rules() -> TelemetrySettings:
    """The tenant's TelemetrySettings, read at most every RULES_SECONDS per process (a query per
    batch is measurable at ingest rates); a change saved in this process applies at once."""
    schema = current_schema()
    entry = _rules.get(schema)
    if entry is None or entry[0] < time.monotonic():
        entry = _rules[schema] = (time.monotonic() + RULES_SECONDS, TelemetrySettings.current())
    return entry[1]


def current_schema() -> str:
    return getattr(connection, "schema_name", "public")


def load_sensors(pairs: set[tuple[str, str]]) -> dict[tuple[str, str], SensorInfo]:
    """One query for every (device id, sensor key) pair."""
    if not pairs:
        return {}
    devices, keys = zip(*pairs)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT d.device_id, s.key, s.id, d.id, s.unit, s.min_value, s.max_value
            FROM {Sensor._meta.db_table} s JOIN {Device._meta.db_table} d ON d.id = s.device_id
            JOIN unnest(%s::text[], %s::text[]) AS wanted(device_id, key)
              ON wanted.device_id = d.device_id AND wanted.key = s.key
            """,
            [list(devices), list(keys)],
        )
        return {(row[0], row[1]): SensorInfo(*row[2:]) for row in cursor.fetchall()}


def create_missing(readings: list[ReadingIn], missing: set[tuple[str, str]]) -> None:
    """Create devices and sensors first seen in this batch (concurrent creators are harmless)."""
    Device.objects.bulk_create([Device(device_id=d) for d in {d for d, _ in missing}], ignore_conflicts=True)
    device_pks = dict(Device.objects.filter(device_id__in={d for d, _ in missing}).values_list("device_id", "pk"))
    first = {}
    for reading in readings:
        first.setdefault((reading.device, reading.sensor), reading)
    Sensor.objects.bulk_create(
        [
            Sensor(device_id=device_pks[d], key=k, unit=first[(d, k)].unit[:20], type=first[(d, k)].type[:50])
            for d, k in missing
        ],
        ignore_conflicts=True,
    )


def resolve_sensors(readings: list[ReadingIn], auto_create: bool) -> dict[tuple[str, str], SensorInfo]:
    schema = current_schema()
    wanted = {(r.device, r.sensor) for r in readings if r.device and r.sensor}
    found = {}
    for pair in wanted:
        info = sensor_cache.get((schema, *pair))
        if info is not None:
            found[pair] = info
    missing = wanted - found.keys()
    if missing:
        loaded = load_sensors(missing)
        if auto_create and len(loaded) < len(missing):
            create_missing(readings, missing - loaded.keys())
            loaded = load_sensors(missing)
        # remembered once committed: a rolled-back batch may have created some of these sensors
        transaction.on_commit(lambda: [sensor_cache.put((schema, *pair), info) for pair, info in loaded.items()])
        found.update(loaded)
    return found


# --- validation -----------------------------------------------------------------------------

def checked_value(reading: ReadingIn, sensor: SensorInfo | None) -> float:
    if sensor is None:
        raise Rejected("unknown_sensor", f"no sensor {reading.sensor!r} on device {reading.device!r}")
    value = reading.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Rejected("invalid_value", f"value {value!r} is not a number")
    try:
        value = float(value)
    except OverflowError:
        raise Rejected("invalid_value", "value is too large for a number") from None
    if not math.isfinite(value):
        raise Rejected("not_finite", f"value {value} is not a finite number")
    if sensor.min_value is not None and value < sensor.min_value:
        raise Rejected("out_of_range", f"{value} is below the sensor's minimum {sensor.min_value}")
    if sensor.max_value is not None and value > sensor.max_value:
        raise Rejected("out_of_range", f"{value} is above the sensor's maximum {sensor.max_value}")
    if reading.unit and sensor.unit and reading.unit != sensor.unit:
        raise Rejected("unit_mismatch", f"unit {reading.unit!r} differs from the sensor's {sensor.unit!r}")
    return value


def checked_time(reading: ReadingIn, newest: datetime, oldest: datetime) -> datetime:
    ts = reading.ts
    if ts is None or timezone.is_naive(ts):
        raise Rejected("invalid_timestamp", "timestamp missing or without a time zone")
    if ts > newest:
        raise Rejected("future_timestamp", f"{ts.isoformat()} is too far in the future")
    if ts < oldest:
        # raw data of that time is already purged; its rollup buckets could not be recomputed
        raise Rejected("too_old", f"{ts.isoformat()} is older than the raw retention period")
    return ts.astimezone(UTC)  # hour buckets and dedup keys are in UTC whatever offset was sent


# --- writing --------------------------------------------------------------------------------

def copy_rows(cursor, table: str, rows) -> int:
    """COPY rows (any iterable) into table as they come; returns how many."""
    # Binary COPY: psycopg packs each row in C and the server parses no text; both sides
    # do far less work than with isoformat() and float repr in a text buffer.
    count = 0
    with cursor.copy(f"COPY {table} (sensor_id, ts, value) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "timestamptz", "float8"])
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def write_rows(stream, rows: dict[tuple[int, datetime], float]) -> int:
    """Write the rows `stream` yields, skipping (sensor, ts) pairs already stored; returns how many were new.

    The COPY takes each row as the stream yields it: psycopg sends every 32 kB, so PostgreSQL
    stores the first rows while Python still checks the next ones. `rows` is the whole batch,
    filled by the stream; the staging fallback needs all of it.
    """
    table = "telemetry_reading"
    with connection.cursor() as cursor:
        try:
            with transaction.atomic():  # a savepoint: a conflict undoes only this attempt
                return copy_rows(cursor.cursor, table, stream)
        except psycopg.errors.UniqueViolation:
            pass
        for _ in stream:  # check the rest of the batch, should the error have cut the COPY short
            pass
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS reading_staging "
            "(sensor_id bigint, ts timestamptz, value double precision) ON COMMIT DELETE ROWS"
        )
        copy_rows(cursor.cursor, "reading_staging", ((sid, ts, value) for (sid, ts), value in rows.items()))
        cursor.execute(f"INSERT INTO {table} (sensor_id, ts, value) SELECT sensor_id, ts, value FROM reading_staging ON CONFLICT DO NOTHING")
        written = cursor.rowcount
        cursor.execute("TRUNCATE reading_staging")
        return written


def mark_dirty_hours(keys) -> None:
    """Mark the hours of (sensor id, UTC ts) pairs dirty."""
    # A batch holds few distinct instants (a device's sensors share one): truncate each once.
    # Hours travel as epoch seconds, which psycopg adapts several times faster than datetimes.
    hour_of = {ts: int(ts.timestamp()) // 3600 * 3600 for ts in {ts for _, ts in keys}}
    hours = sorted({(sid, hour_of[ts]) for sid, ts in keys})
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO telemetry_dirtyhour (sensor_id, bucket) SELECT sensor_id, to_timestamp(epoch) "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS h(sensor_id, epoch) ON CONFLICT DO NOTHING",
            [[h[0] for h in hours], [h[1] for h in hours]],
        )


def touch_devices(last_seen: dict[int, datetime]) -> None:
    pks = sorted(last_seen)  # a fixed order, so concurrent batches never deadlock on devices
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE telemetry_device d SET last_seen = v.ts FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, ts) "
            "WHERE d.id = v.id AND (d.last_seen IS NULL OR d.last_seen < v.ts)",
            [pks, [last_seen[pk] for pk in pks]],
        )


def dead_letter(reading: ReadingIn, source: str, rejected: Rejected) -> DeadLetter:
    fields = {"device": reading.device, "sensor": reading.sensor, "ts": reading.ts, "value": reading.value, "unit": reading.unit}
    payload = reading.raw or json.dumps(fields, default=str)
    return DeadLetter(source=source, topic=reading.topic[:300], payload=payload, reason=rejected.reason, detail=rejected.detail[:300])


def ingest(readings, *, source: str, auto_create: bool | None = None, now: datetime | None = None) -> IngestResult:
    """Store a batch of readings in the current tenant schema; see the module docstring."""
    readings = list(readings)
    result = IngestResult()
    if not readings:
        return result
    rules = current_rules()
    auto_create = rules.auto_create_sensors if auto_create is None else auto_create
    now = now or timezone.now()
    newest = now + timedelta(seconds=rules.future_window_seconds)
    oldest = now - timedelta(days=rules.raw_retention_days)

    with transaction.atomic():
        sensors = resolve_sensors(readings, auto_create)
        rows: dict[tuple[int, datetime], float] = {}
        last_seen: dict[int, datetime] = {}
        letters = []

        def accepted():
            """Check the readings one by one; yield each valid one new to the batch as a row."""
            for reading in readings:
                sensor = sensors.get((reading.device, reading.sensor))
                try:
                    value = checked_value(reading, sensor)
                    ts = checked_time(reading, newest, oldest)
                except Rejected as rejected:
                    letters.append(dead_letter(reading, source, rejected))
                    result.reasons[rejected.reason] += 1
                    continue
                if (sensor.id, ts) in rows:
                    result.duplicates += 1
                    continue
                rows[(sensor.id, ts)] = value
                seen = min(ts, now)
                if last_seen.get(sensor.device_pk, seen) <= seen:
                    last_seen[sensor.device_pk] = seen
                yield sensor.id, ts, value

        result.written = write_rows(accepted(), rows)
        result.duplicates += len(rows) - result.written
        if rows:
            mark_dirty_hours(rows)
            touch_devices(last_seen)
        if letters:
            DeadLetter.objects.bulk_create(letters)
        result.rejected = len(letters)
    return result


def forget_cached_sensors(sender, **kwargs):
    """A sensor changed or deleted, or a device deleted, in this process: start the cache afresh
    (rare events; other processes see the change within CACHE_SECONDS)."""
    sensor_cache.clear()


def forget_cached_rules(sender, **kwargs):
    _rules.clear()


def clear_caches() -> None:
    """Forget every cached sensor and rule (tests roll back what the caches remember)."""
    sensor_cache.clear()
    _rules.clear()


models.signals.post_save.connect(forget_cached_sensors, sender=Sensor)
models.signals.post_delete.connect(forget_cached_sensors, sender=Sensor)
models.signals.post_delete.connect(forget_cached_sensors, sender=Device)
models.signals.post_save.connect(forget_cached_rules, sender=TelemetrySettings)

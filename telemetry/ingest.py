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
5. mark the touched (sensor, hour) buckets for the rollup task, in SQL from the batch's sensors
   and time span (no per-reading work in Python), and advance devices' last_seen.

The per-reading loop is the hot path of every source (the bridge sends ~100k readings/s through
it): the usual case (a float, a UTC time) is checked first and by identity.
"""

import json
import math
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from django.db import connection, models, transaction
from django.utils import timezone

from telemetry.bounds import MAX_ID_LENGTH, clean_text, valid_id
from telemetry.deadletters import per_message
from telemetry.models import DeadLetter, Device, Sensor, TelemetrySettings
from telemetry.signals import readings_stored

CACHE_SECONDS = 60
IMPOSSIBLE = {"out_of_range", "not_finite"}  # rejections that say the sensor, not the sender, is wrong
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
        return {
            "written": self.written,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "reasons": dict(self.reasons),
        }


@dataclass(frozen=True)
class SensorInfo:
    id: int
    device_pk: int
    unit: str
    min_value: float | None
    max_value: float | None
    enabled: bool
    # the range a value passes the hot loop's one chained comparison in: the sensor's, or the
    # largest finite floats (so NaN and ±inf fail it too, and the full checks name why)
    low: float = field(init=False)
    high: float = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "low", -sys.float_info.max if self.min_value is None else self.min_value)
        object.__setattr__(self, "high", sys.float_info.max if self.max_value is None else self.max_value)


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
    devices, keys = zip(*pairs, strict=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT d.device_id, s.key, s.id, d.id, s.unit, s.min_value, s.max_value, s.enabled
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
    # ids that cannot be stored (too long, NUL, lone surrogate) name no sensor: rejected as invalid_id
    wanted = {pair for pair in wanted if valid_id(pair[0]) and valid_id(pair[1])}
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
        if not (valid_id(reading.device) and valid_id(reading.sensor)):
            raise Rejected("invalid_id", f"device and sensor ids are text of 1 to {MAX_ID_LENGTH} storable characters")
        raise Rejected("unknown_sensor", f"no sensor {reading.sensor!r} on device {reading.device!r}")
    if not sensor.enabled:
        raise Rejected("sensor_disabled", f"sensor {reading.sensor!r} of {reading.device!r} is disabled")
    value = reading.value
    if type(value) is not float:  # a float needs none of these checks: the usual case skips them
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Rejected("invalid_value", f"value {value!r} is not a number")
        try:
            value = float(value)
        except OverflowError:
            raise Rejected("invalid_value", "value is too large for a number") from None
    if not isfinite(value):
        raise Rejected("not_finite", f"value {value} is not a finite number")
    if sensor.min_value is not None and value < sensor.min_value:
        raise Rejected("out_of_range", f"{value} is below the sensor's minimum {sensor.min_value}")
    if sensor.max_value is not None and value > sensor.max_value:
        raise Rejected("out_of_range", f"{value} is above the sensor's maximum {sensor.max_value}")
    if reading.unit and sensor.unit and reading.unit != sensor.unit:
        raise Rejected("unit_mismatch", f"unit {reading.unit!r} differs from the sensor's {sensor.unit!r}")
    return value


isfinite = math.isfinite


def checked_time(reading: ReadingIn, newest: datetime, oldest: datetime) -> datetime:
    ts = reading.ts
    utc = ts is not None and ts.tzinfo is UTC  # what every parser of ours returns: no conversion
    if not utc and (ts is None or timezone.is_naive(ts)):
        raise Rejected("invalid_timestamp", "timestamp missing or without a time zone")
    if ts > newest:
        raise Rejected("future_timestamp", f"{ts.isoformat()} is too far in the future")
    if ts < oldest:
        # raw data of that time is already purged; its rollup buckets could not be recomputed
        raise Rejected("too_old", f"{ts.isoformat()} is older than the raw retention period")
    return ts if utc else ts.astimezone(UTC)  # hour buckets and dedup keys are in UTC whatever offset was sent


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
        cursor.execute(
            f"INSERT INTO {table} (sensor_id, ts, value) SELECT sensor_id, ts, value FROM reading_staging ON CONFLICT DO NOTHING"
        )
        written = cursor.rowcount
        cursor.execute("TRUNCATE reading_staging")
        return written


SPAN_SQL = """
INSERT INTO telemetry_dirtyhour (sensor_id, bucket)
SELECT s.id, h.bucket FROM unnest(%s::bigint[]) AS s(id)
CROSS JOIN generate_series(date_bin('1 hour', %s::timestamptz, 'epoch'), %s::timestamptz, interval '1 hour') AS h(bucket)
ORDER BY 1, 2
ON CONFLICT DO NOTHING
"""

EXACT_SQL = """
INSERT INTO telemetry_dirtyhour (sensor_id, bucket)
SELECT DISTINCT sensor_id, date_bin('1 hour', ts, 'epoch') FROM unnest(%s::bigint[], %s::timestamptz[]) AS r(sensor_id, ts)
ORDER BY 1, 2
ON CONFLICT DO NOTHING
"""


def mark_dirty_hours(sensor_ids: set[int], earliest: datetime, latest: datetime, rows) -> None:
    """Mark dirty every hour from `earliest` to `latest` of each of the batch's sensors.

    A batch (a bridge's fraction of a second, a bulk upload's stretch of one sensor) spans few
    hours, so the database works out the hours from three values instead of Python truncating
    every reading's time. Marking an hour a sensor has no new reading in only costs its
    recompute. A batch spread thin (many sensors over many hours) would mark far more hours
    than it touched: then the database works out the exact hours from the rows (sensor, ts).
    """
    hours = (int(latest.timestamp()) // 3600 - int(earliest.timestamp()) // 3600) + 1
    with connection.cursor() as cursor:
        if len(sensor_ids) * hours <= 2 * len(rows) + 100:
            cursor.execute(SPAN_SQL, [sorted(sensor_ids), earliest, latest])
        else:
            cursor.execute(EXACT_SQL, [[key[0] for key in rows], [key[1] for key in rows]])


def touch_devices(last_seen: dict[int, datetime]) -> None:
    pks = sorted(last_seen)  # a fixed order, so concurrent batches never deadlock on devices
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE telemetry_device d SET last_seen = v.ts FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, ts) "
            "WHERE d.id = v.id AND (d.last_seen IS NULL OR d.last_seen < v.ts)",
            [pks, [last_seen[pk] for pk in pks]],
        )


def dead_letter(reading: ReadingIn, source: str, rejected: Rejected) -> DeadLetter:
    fields = {
        "device": reading.device,
        "sensor": reading.sensor,
        "ts": reading.ts,
        "value": reading.value,
        "unit": reading.unit,
    }
    payload = clean_text(reading.raw or json.dumps(fields, default=str))
    letter = DeadLetter(
        source=source,
        topic=clean_text(reading.topic[:300]),
        payload=payload,
        reason=rejected.reason,
        detail=clean_text(rejected.detail[:300]),
    )
    letter.sender = clean_text(str(reading.device or "")[:100])  # whose allowance it counts against
    letter.device_ref = letter.sender  # the device the reading named: its status shows a sensor in error
    return letter


def ingest(
    readings, *, source: str, auto_create: bool | None = None, now: datetime | None = None, budget=None
) -> IngestResult:
    """Store a batch of readings in the current tenant schema; see the module docstring.

    Dead letters are capped (telemetry.deadletters): by `budget` (a LetterBudget the caller
    holds for one request or upload, and whose summary letter it writes at the end), or else per
    message of the batch. Every rejection is counted in the result either way."""
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
        impossible: dict[int, list] = {}

        span = []  # the earliest and latest time accepted, once the stream has run out

        def accepted():
            """Check the readings one by one; yield each valid one new to the batch as a row."""
            earliest = latest = None
            for reading in readings:
                sensor = sensors.get((reading.device, reading.sensor))
                value, ts, unit = reading.value, reading.ts, reading.unit
                # the usual reading, checked inline (two calls a reading were a fifth of the loop):
                # a float in range, a UTC time in the window, no other unit; else the full checks
                if not (
                    sensor is not None
                    and type(value) is float
                    and sensor.low <= value <= sensor.high
                    and sensor.enabled
                    and (not unit or unit == sensor.unit or not sensor.unit)
                    and ts is not None
                    and ts.tzinfo is UTC
                    and oldest <= ts <= newest
                ):
                    try:
                        value = checked_value(reading, sensor)
                        ts = checked_time(reading, newest, oldest)
                    except Rejected as rejected:
                        letters.append(dead_letter(reading, source, rejected))
                        result.reasons[rejected.reason] += 1
                        if sensor is not None and rejected.reason in IMPOSSIBLE and reading.ts and reading.ts.tzinfo:
                            impossible.setdefault(sensor.id, []).append((reading.ts, reading.value, rejected.reason))
                        continue
                key = (sensor.id, ts)
                if key in rows:
                    result.duplicates += 1
                    continue
                rows[key] = value
                if latest is None:
                    earliest = latest = ts
                elif ts > latest:
                    latest = ts
                elif ts < earliest:
                    earliest = ts
                if ts > last_seen.get(sensor.device_pk, EPOCH):
                    last_seen[sensor.device_pk] = ts
                yield key[0], ts, value
            span[:] = [earliest, latest]

        result.written = write_rows(accepted(), rows)
        result.duplicates += len(rows) - result.written
        if rows:
            mark_dirty_hours({info.id for info in sensors.values()}, *span, rows)
            touch_devices({pk: min(ts, now) for pk, ts in last_seen.items()})
        if letters:
            if budget is not None:
                budget.extend(letters)
                kept = budget.take()
            else:
                kept = per_message(letters)
            DeadLetter.objects.bulk_create(kept)
        result.rejected = len(letters)
        if readings_stored.has_listeners() and (rows or impossible):
            schema = current_schema()
            transaction.on_commit(
                lambda: readings_stored.send(sender=ingest, schema=schema, rows=rows, rejected=impossible)
            )
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

"""Milliseconds for a 30-day hourly chart: from rollups (the normal query path) vs a raw GROUP BY.

    DATABASE_URL=... DEBUG=1 .venv/bin/python bench/aggregates.py [--days 30] [--runs 7]

A fresh bench tenant gets 10 sites × 10 devices × 10 sensors = 1,000 sensors with a reading
every 4 minutes for 30 days (10.8 million rows), written in time order as the ingest path
would leave them (generated inside PostgreSQL: faster than any client COPY), then VACUUM
ANALYZE. Every loaded hour is marked dirty, as ingest() would have, and roll_up() works off
the backlog (timed). Then, each the median of several warm runs:

- one sensor, 30 days by hour: telemetry.queries.aggregate() vs the same GROUP BY on raw rows;
- a whole site (its 100 sensors combined, combine=True), the same.

The raw query computes what aggregate() returns (count, avg, min, max, last value per hour)
over the same hour-aligned range, so both answers are compared before they are timed.

Goals: from rollups under 50 ms, and at least 50× faster than the raw GROUP BY.
"""

import argparse
import math
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402

django.setup()

from common import drop_tenants  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from portal.tenancy.provisioning import create_tenant  # noqa: E402
from telemetry.models import Device, Sensor  # noqa: E402
from telemetry.queries import aggregate  # noqa: E402
from telemetry.rollups import roll_up  # noqa: E402

SLUG = "bench-aggregates"
SITES, DEVICES_PER_SITE, SENSORS_PER_DEVICE = 10, 10, 10
STEP = timedelta(minutes=4)

# One day of readings of every sensor, in time order; a daily cycle per sensor plus noise.
LOAD_DAY_SQL = """
INSERT INTO telemetry_reading (sensor_id, ts, value)
SELECT s.id, t.ts, round((20 + 5 * sin(extract(epoch FROM t.ts) / 86400 * 2 * pi() + s.id) + random())::numeric, 2)
FROM generate_series(%(day)s::timestamptz, %(day)s::timestamptz + interval '1 day' - %(step)s, %(step)s) AS t(ts)
CROSS JOIN telemetry_sensor s
WHERE t.ts <= %(now)s
ORDER BY t.ts, s.id
"""

MARK_DIRTY_SQL = """
INSERT INTO telemetry_dirtyhour (sensor_id, bucket)
SELECT s.id, h.bucket FROM telemetry_sensor s
CROSS JOIN generate_series(date_trunc('hour', %(start)s::timestamptz), %(now)s, interval '1 hour') AS h(bucket)
"""

# What aggregate() computes, straight from raw readings, "last" taken the way it takes it.
RAW_SQL = """
SELECT date_trunc('hour', ts) AS bucket, count(*), avg(value), min(value), max(value),
       (max(ARRAY[date_part('epoch', ts), value]))[2] AS last_value
FROM telemetry_reading
WHERE sensor_id = ANY(%s) AND ts >= %s AND ts < %s
GROUP BY 1
ORDER BY 1
"""


def make_sites() -> list[list[int]]:
    """The sensor ids of each site."""
    devices = Device.objects.bulk_create(
        [Device(device_id=f"site{s:02}-gw{d:02}") for s in range(SITES) for d in range(DEVICES_PER_SITE)]
    )
    Sensor.objects.bulk_create(
        [Sensor(device=device, key=f"t{n}", type="temperature", unit="°C") for device in devices for n in range(SENSORS_PER_DEVICE)]
    )
    sites = [[] for _ in range(SITES)]
    for sensor_id, device_id in Sensor.objects.order_by("id").values_list("id", "device__device_id"):
        sites[int(device_id[4:6])].append(sensor_id)
    return sites


def load(start, now, days: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SET work_mem = '256MB'")  # each day's sort stays in memory
        for n in range(days + 1):
            with transaction.atomic():
                cursor.execute(LOAD_DAY_SQL, {"day": start + timedelta(days=n), "step": STEP, "now": now})
        cursor.execute("RESET work_mem")
        cursor.execute(MARK_DIRTY_SQL, {"start": start, "now": now})
        cursor.execute("VACUUM ANALYZE telemetry_reading")
        cursor.execute("VACUUM ANALYZE telemetry_dirtyhour")
        cursor.execute("SELECT count(*) FROM telemetry_reading")
        return cursor.fetchone()[0]


def raw_points(sensor_ids, start, end) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(RAW_SQL, [sensor_ids, start, end])
        return cursor.fetchall()


def rollup_points(sensor_ids, start, end, now) -> list:
    """A sensor's chart, or a site's sensors combined into one line."""
    result = aggregate(sensor_ids, start, end, "1h", combine=len(sensor_ids) > 1, now=now)
    assert not result.capped
    return result.rows


def same_answer(raw, rolled, compare_last: bool) -> bool:
    """Same hours, counts, min, max, avg; and last value unless sensors tie on the last instant."""
    if len(raw) != len(rolled):
        return False
    for (bucket, count, avg, low, high, last), point in zip(raw, rolled, strict=True):
        if (bucket, count, low, high) != (point.bucket, point.count, point.min, point.max):
            return False
        if compare_last and last != point.last:
            return False
        if not math.isclose(avg, point.avg, rel_tol=1e-9):
            return False
    return True


def median_ms(raw_work, rollup_work, runs: int) -> tuple[float, float]:
    """Median milliseconds of each, warm, the two taking turns so both see the same machine."""
    raw_work(), rollup_work()  # warm: the pages a dashboard reads again and again are in memory
    raw_times, rollup_times = [], []
    for _ in range(runs):
        for work, times in ((raw_work, raw_times), (rollup_work, rollup_times)):
            started = time.perf_counter()
            work()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(raw_times), statistics.median(rollup_times)


def explain(sensor_ids, start, end, now) -> None:
    """EXPLAIN ANALYZE the rollup path's query, to see where a slow one spends its time."""
    connection.force_debug_cursor = True  # log the SQL with its parameters
    rollup_points(sensor_ids, start, end, now)
    connection.force_debug_cursor = False
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + connection.queries[-1]["sql"])
        print("\n".join("    " + row[0] for row in cursor.fetchall()))


def run(days: int, runs: int) -> dict[str, float]:
    now = timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)  # whole hours, like aggregate()
    start = end - timedelta(days=days)
    figures = {}
    sites = make_sites()
    print(f"{SITES} sites × {DEVICES_PER_SITE * SENSORS_PER_DEVICE} sensors, a reading every {STEP} for {days} days")

    started = time.perf_counter()
    rows = load(start.replace(hour=0), now, days)
    figures["load_s"] = time.perf_counter() - started
    print(f"  loaded {rows:,} readings and VACUUM ANALYZE in {figures['load_s']:.1f} s")

    started = time.perf_counter()
    hours = roll_up()
    figures["rollup_s"] = time.perf_counter() - started
    print(f"  roll_up(): {hours:,} dirty hours in {figures['rollup_s']:.1f} s")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE telemetry_hourlyrollup")  # as autovacuum would, after a backlog
        cursor.execute("VACUUM ANALYZE telemetry_dailyrollup")

    one_sensor, site = sites[3][:1], sites[3]
    for name, sensor_ids in (("sensor", one_sensor), ("site", site)):
        raw = raw_points(sensor_ids, start, end)
        rolled = rollup_points(sensor_ids, start, end, now)
        # a site's sensors all report at the same instants, so its "last" value is any of theirs
        assert same_answer(raw, rolled, compare_last=len(sensor_ids) == 1), f"{name}: the rollup path and the raw GROUP BY disagree"
        raw_ms, rollup_ms = median_ms(
            lambda ids=sensor_ids: raw_points(ids, start, end), lambda ids=sensor_ids: rollup_points(ids, start, end, now), runs
        )
        print(f"  {name} ({len(sensor_ids)} sensors, {len(rolled)} hourly points from {sum(p.count for p in rolled):,} readings): "
              f"rollups {rollup_ms:.1f} ms, raw GROUP BY {raw_ms:.1f} ms")
        figures[f"agg_{name}_ms"] = rollup_ms
        figures[f"raw_{name}_ms"] = raw_ms
        if rollup_ms > 50 or raw_ms / rollup_ms < 50:
            explain(sensor_ids, start, end, now)
    return figures


def drop_bench_tenant() -> None:
    drop_tenants(slug=SLUG)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per query (median)")
    args = parser.parse_args()

    settings.DEBUG = False  # no query log: measure what production runs
    call_command("migrate", verbosity=0)
    drop_bench_tenant()
    try:
        tenant = create_tenant("Bench aggregates", SLUG)
        with schema_context(tenant.schema_name):
            figures = run(args.days, args.runs)
    finally:
        drop_bench_tenant()

    print(f"figure load_10m_s {figures['load_s']:.1f} s goal -")
    print(f"figure rollup_s {figures['rollup_s']:.1f} s goal -")
    print(f"figure raw_sensor_ms {figures['raw_sensor_ms']:.1f} ms goal -")
    print(f"figure raw_site_ms {figures['raw_site_ms']:.1f} ms goal -")
    print(f"figure agg_sensor_ms {figures['agg_sensor_ms']:.1f} ms goal 50")
    print(f"figure agg_site_ms {figures['agg_site_ms']:.1f} ms goal 50")
    print(f"figure agg_sensor_speedup {figures['raw_sensor_ms'] / figures['agg_sensor_ms']:.0f} × goal 50")
    print(f"figure agg_site_speedup {figures['raw_site_ms'] / figures['agg_site_ms']:.0f} × goal 50")


if __name__ == "__main__":
    main()

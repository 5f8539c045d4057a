"""Milliseconds of the charts a person looks at: from rollups (the normal query path) vs a raw GROUP BY,
and the asset page at 10,000 assets.

    DATABASE_URL=... DEBUG=1 .venv/bin/python bench/aggregates.py [--days 30] [--history-days 335] [--runs 7]

A fresh bench tenant gets 10 sites × 10 devices × 10 sensors = 1,000 sensors with a reading
every 4 minutes for the last 30 days (10.8 million rows) and one an hour for the 335 days
before (8 million more: a year in all), written in time order as the ingest path would leave
them (generated inside PostgreSQL: faster than any client COPY), then VACUUM ANALYZE. The
last two days' hours (--backlog-days) are marked dirty, as ingest() would have, and roll_up()
works off that backlog (timed, in hours per second); the older hours are rolled up by one
set-based statement of the same definitions (roll_up() over the 721,000 hours of 30 days took
6 minutes of the bench on a loaded machine). Each site's sensors are a SensorGroup, defined
before that backlog (so roll_up() keeps the groups' hours too) and built from the history after
it (timed). Then, each the median of several warm runs:

- one sensor, 30 days by hour (context) and 1 year by hour (8,760 points);
- a whole site (its 100 sensors combined, combine=True): 30 days by hour and 1 year by day, from
  its sensors' rollups before the group is built (context) and from the group's rollups after;
- the asset page (10 sensors, 7 days by hour) with 10,000 assets in the tenant: median ms and
  its query count, through Django's full stack as bench/pages.py measures it.

Each raw query computes what aggregate() returns (count, avg, min, max, last value per bucket)
over the same aligned range, so both answers are compared before they are timed.

Goals: a site's 30 days hourly and its year daily under 50 ms and at least 50× faster than
the raw GROUP BY; one sensor's year hourly under 20 ms; the asset page under 100 ms median.
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

from common import use_bench_database

use_bench_database("aggbench")
import django

django.setup()

from common import drop_tenants, signed_in_client
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from portal.tenancy.provisioning import create_tenant
from telemetry.models import Device, Sensor, SensorGroup
from telemetry.queries import aggregate
from telemetry.rollups import build_group_step, roll_up_step

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

# The older history: one reading an hour per sensor, a day at a time.
LOAD_HOURLY_DAY_SQL = LOAD_DAY_SQL.replace("%(step)s", "interval '1 hour'")

# roll_up()'s definitions (telemetry/rollups.py), set-based over a whole range of hours.
BULK_HOURLY_SQL = """
INSERT INTO telemetry_hourlyrollup (sensor_id, bucket, count, sum, min, max, last_value, last_ts)
SELECT sensor_id, date_bin('1 hour', ts, 'epoch'), count(*), sum(value), min(value), max(value),
       (array_agg(value ORDER BY ts DESC))[1], max(ts)
FROM telemetry_reading WHERE ts >= %(start)s AND ts < %(end)s
GROUP BY 1, 2
"""
BULK_DAILY_SQL = """
INSERT INTO telemetry_dailyrollup (sensor_id, bucket, count, sum, min, max, last_value, last_ts)
SELECT sensor_id, date_bin('1 day', bucket, 'epoch'), sum(count), sum(sum), min(min), max(max),
       (array_agg(last_value ORDER BY last_ts DESC))[1], max(last_ts)
FROM telemetry_hourlyrollup WHERE bucket >= %(start)s AND bucket < %(end)s
GROUP BY 1, 2
"""

MARK_DIRTY_SQL = """
INSERT INTO telemetry_dirtyhour (sensor_id, bucket)
SELECT s.id, h.bucket FROM telemetry_sensor s
CROSS JOIN generate_series(date_trunc('hour', %(start)s::timestamptz), %(now)s, interval '1 hour') AS h(bucket)
"""

# What aggregate() computes, straight from raw readings, "last" taken the way it takes it.
RAW_SQL = """
SELECT date_bin(%s::interval, ts, 'epoch') AS bucket, count(*), avg(value), min(value), max(value),
       (max(ARRAY[date_part('epoch', ts), value]))[2] AS last_value
FROM telemetry_reading
WHERE sensor_id = ANY(%s) AND ts >= %s AND ts < %s
GROUP BY 1
ORDER BY 1
"""
WIDTHS = {"1h": "1 hour", "1d": "1 day"}


def make_sites() -> list[list[int]]:
    """The sensor ids of each site."""
    devices = Device.objects.bulk_create(
        [Device(device_id=f"site{s:02}-gw{d:02}") for s in range(SITES) for d in range(DEVICES_PER_SITE)]
    )
    Sensor.objects.bulk_create(
        [
            Sensor(device=device, key=f"t{n}", type="temperature", unit="°C")
            for device in devices
            for n in range(SENSORS_PER_DEVICE)
        ]
    )
    sites = [[] for _ in range(SITES)]
    for sensor_id, device_id in Sensor.objects.order_by("id").values_list("id", "device__device_id"):
        sites[int(device_id[4:6])].append(sensor_id)
    return sites


def load(start, now, days: int, history_days: int = 0, backlog_days: int = 2) -> int:
    """`days` days of a reading every STEP up to now, after `history_days` days of one an hour.
    Everything before the last `backlog_days` days is rolled up by the set-based statements; those
    last days are left as ingest leaves them (dirty hours) for roll_up() to work off, timed."""
    with connection.cursor() as cursor:
        cursor.execute("SET work_mem = '256MB'")  # each day's sort stays in memory
        oldest = start - timedelta(days=history_days)
        for n in range(history_days):
            with transaction.atomic():
                cursor.execute(LOAD_HOURLY_DAY_SQL, {"day": oldest + timedelta(days=n), "now": now})
        for n in range(days + 1):
            with transaction.atomic():
                cursor.execute(LOAD_DAY_SQL, {"day": start + timedelta(days=n), "step": STEP, "now": now})
        backlog = max(start, (now - timedelta(days=backlog_days)).replace(hour=0, minute=0, second=0, microsecond=0))
        cursor.execute(BULK_HOURLY_SQL, {"start": oldest, "end": backlog})
        cursor.execute(BULK_DAILY_SQL, {"start": oldest, "end": backlog})
        cursor.execute("RESET work_mem")
        cursor.execute(MARK_DIRTY_SQL, {"start": backlog, "now": now})
        cursor.execute("VACUUM ANALYZE telemetry_reading")
        cursor.execute("VACUUM ANALYZE telemetry_dirtyhour")
        cursor.execute("SELECT count(*) FROM telemetry_reading")
        return cursor.fetchone()[0]


def raw_points(sensor_ids, start, end, bucket: str = "1h") -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(RAW_SQL, [WIDTHS[bucket], sensor_ids, start, end])
        return cursor.fetchall()


def rollup_points(sensor_ids, start, end, now, bucket: str = "1h", limit: int = 9000) -> list:
    """A sensor's chart, or a site's sensors combined into one line (a year of hours: 8,760 points)."""
    result = aggregate(sensor_ids, start, end, bucket, combine=len(sensor_ids) > 1, now=now, limit=limit)
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


def explain(sensor_ids, start, end, now, bucket: str) -> None:
    """EXPLAIN ANALYZE the rollup path's query, to see where a slow one spends its time."""
    connection.force_debug_cursor = True  # log the SQL with its parameters
    rollup_points(sensor_ids, start, end, now, bucket)
    connection.force_debug_cursor = False
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + connection.queries[-1]["sql"])
        print("\n".join("    " + row[0] for row in cursor.fetchall()))


def compare(name: str, sensor_ids, start, end, now, bucket: str, runs: int, figures: dict) -> None:
    """Check the rollup path against the raw GROUP BY, then time both (median of `runs`)."""
    raw = raw_points(sensor_ids, start, end, bucket)
    rolled = rollup_points(sensor_ids, start, end, now, bucket)
    # a site's sensors all report at the same instants, so its "last" value is any of theirs
    assert same_answer(raw, rolled, compare_last=len(sensor_ids) == 1), (
        f"{name}: the rollup path and the raw GROUP BY disagree"
    )
    raw_ms, rollup_ms = median_ms(
        lambda: raw_points(sensor_ids, start, end, bucket),
        lambda: rollup_points(sensor_ids, start, end, now, bucket),
        runs,
    )
    print(
        f"  {name} ({len(sensor_ids)} sensors, {len(rolled)} points by {bucket} from {sum(p.count for p in rolled):,} "
        f"readings): rollups {rollup_ms:.1f} ms, raw GROUP BY {raw_ms:.1f} ms, {raw_ms / rollup_ms:.0f}×"
    )
    figures[f"agg_{name}_ms"], figures[f"raw_{name}_ms"] = rollup_ms, raw_ms
    if (rollup_ms > 20 or raw_ms / rollup_ms < 50) and not name.endswith("_members"):
        explain(sensor_ids, start, end, now, bucket)


def asset_page(tenant, runs: int) -> tuple[float, int, float]:
    """The asset page with 10,000 assets in the tenant (bench/pages.py's measurement): median
    wall-clock ms, queries, median CPU ms of this process."""
    import pages

    with schema_context(tenant.schema_name):
        pages.add_assets(pages.ASSETS, 0)
        pages.bind_devices()
    client = signed_in_client(tenant, pages.EMAIL)
    with schema_context(tenant.schema_name):
        url = pages.pages(client)["asset_detail"]
    return pages.measure(client, "asset_detail", url, runs)


def run(days: int, history_days: int, runs: int, backlog_days: int = 2) -> dict[str, float]:
    now = timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)  # whole hours, like aggregate()
    start = end - timedelta(days=days)
    figures = {}
    sites = make_sites()
    print(
        f"{SITES} sites × {DEVICES_PER_SITE * SENSORS_PER_DEVICE} sensors, a reading every {STEP} for {days} days "
        f"after {history_days} days of one an hour"
    )

    started = time.perf_counter()
    rows = load(start.replace(hour=0), now, days, history_days, backlog_days)
    figures["load_s"] = time.perf_counter() - started
    figures["readings"] = rows
    print(f"  loaded {rows:,} readings, rolled up the history and VACUUM ANALYZE in {figures['load_s']:.1f} s")

    # each site's sensors as a group, as its owner would define them: roll_up() keeps the groups'
    # hours in step with their members' from here on, then builds them from the history
    groups = [SensorGroup.define(f"site:{n}", sensor_ids) for n, sensor_ids in enumerate(sites)]
    started = time.perf_counter()
    hours = 0
    while done := roll_up_step():
        hours += done
    figures["rollup_s"] = time.perf_counter() - started
    figures["rollup_rate"] = hours / figures["rollup_s"]
    print(f"  roll_up(): {hours:,} dirty hours in {figures['rollup_s']:.1f} s ({figures['rollup_rate']:,.0f} hours/s)")
    vacuum("telemetry_hourlyrollup", "telemetry_dailyrollup")  # as autovacuum would, after a backlog

    day_end = end.replace(hour=0) + timedelta(days=1)
    year_start = day_end - timedelta(days=days + history_days)
    one_sensor, site = sites[3][:1], sites[3]
    compare("sensor", one_sensor, start, end, now, "1h", runs, figures)
    compare("sensor_year", one_sensor, max(year_start, end - timedelta(days=365)), end, now, "1h", runs, figures)
    # before the groups are built: a site combined from its sensors' rollups (context)
    compare("site_members", site, start, end, now, "1h", runs, figures)
    compare("site_year_members", site, year_start, day_end, now, "1d", runs, figures)

    started = time.perf_counter()
    while build_group_step():
        pass
    figures["group_build_s"] = (time.perf_counter() - started) / len(groups)
    print(f"  built {len(groups)} site groups from their sensors' rollups: {figures['group_build_s']:.2f} s each")
    vacuum("telemetry_grouphourlyrollup", "telemetry_groupdailyrollup")
    compare("site", site, start, end, now, "1h", runs, figures)
    compare("site_year", site, year_start, day_end, now, "1d", runs, figures)
    return figures


def vacuum(*tables) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--history-days", type=int, default=335, help="days of hourly readings before those")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per query (median)")
    parser.add_argument(
        "--backlog-days", type=int, default=2, help="the last days left dirty for roll_up() (timed); the rest bulk"
    )
    args = parser.parse_args()

    settings.DEBUG = False  # no query log: measure what production runs
    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    drop_bench_tenant()
    try:
        tenant = create_tenant("Bench aggregates", SLUG)
        with schema_context(tenant.schema_name):
            figures = run(args.days, args.history_days, args.runs, args.backlog_days)
        page_ms, page_queries, page_cpu = asset_page(tenant, max(args.runs, 15))
        print(f"  asset page at 10,000 assets: {page_ms:.1f} ms median ({page_cpu:.1f} ms CPU), {page_queries} queries")
    finally:
        drop_bench_tenant()

    print(f"figure readings {figures['readings']} readings goal -")
    print(f"figure load_s {figures['load_s']:.1f} s goal -")
    print(f"figure rollup_s {figures['rollup_s']:.1f} s goal -")
    print(f"figure rollup_hours_per_s {figures['rollup_rate']:.0f} hours/s goal -")
    print(f"figure group_build_s {figures['group_build_s']:.2f} s goal -")
    for name in ("sensor", "sensor_year", "site", "site_year"):
        print(f"figure raw_{name}_ms {figures[f'raw_{name}_ms']:.1f} ms goal -")
    print(f"figure agg_sensor_ms {figures['agg_sensor_ms']:.1f} ms goal -")
    print(f"figure agg_sensor_year_ms {figures['agg_sensor_year_ms']:.1f} ms goal 20")
    for name in ("site_members", "site_year_members"):
        print(f"figure agg_{name}_ms {figures[f'agg_{name}_ms']:.1f} ms goal -")
    for name in ("site", "site_year"):
        print(f"figure agg_{name}_ms {figures[f'agg_{name}_ms']:.1f} ms goal 50")
        print(f"figure agg_{name}_speedup {figures[f'raw_{name}_ms'] / figures[f'agg_{name}_ms']:.0f} × goal 50")
    print(f"figure asset_detail_ms {page_ms:.1f} ms goal 100")
    print(f"figure asset_detail_queries {page_queries} queries goal -")
    print(f"figure asset_detail_cpu_ms {page_cpu:.1f} ms goal -")


def drop_bench_tenant() -> None:
    from portal.accounts.models import User

    drop_tenants(slug=SLUG)
    User.objects.filter(email="bench-pages@example.com").delete()


if __name__ == "__main__":
    main()

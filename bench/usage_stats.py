"""Usage statistics from rollups against a direct computation from raw events, and the usage page.

    .venv/bin/python bench/usage_stats.py [--events 5000000] [--devices 200] [--days 730] [--runs 7]

A bench tenant gets `--devices` counting devices on as many machines in 20 outlets and `--events`
usage events spread evenly over `--days` (generate_series with the event table's indexes dropped
and built again after; counters reset every 5,000 events), rolled up by portal.outlets.usage (a
first run: one set-based pass) and vacuumed as autovacuum would (none of it timed). Then, side by
side:

- one outlet by day for a year, one outlet by hour for 30 days, the whole tenant by month for
  the whole range: portal.outlets.stats.compute() (rollups for closed buckets, raw events for the
  tail) against stats.direct() (the same from raw events only), median ms of `--runs`;
- the usage page (/usage/, Django's full stack, signed in) for an outlet by day over 30 and 365
  days: median ms and query count (the count must not grow with the range).

Goals (issue 12): rollups ≥ 50× faster than raw and under 100 ms each; the page under 150 ms.
The hour query's ratio stays small at this density (about 1.4 events per device-hour: as many
hourly rows as raw events); README's design notes have the figures.

`--keep` leaves the tenant for profiling and reuses it on the next `--keep` run.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after the project: bench/bridge.py must not hide the bridge package
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DEBUG", "1")

from common import drop_tenants, signed_in_client, use_bench_database

use_bench_database("usagestats")

import django

django.setup()

from datetime import timedelta

from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from portal.accounts.models import User
from portal.outlets import stats
from portal.outlets.models import Machine, MachineDevice, Outlet
from portal.outlets.usage import roll_up_usage
from portal.tenancy.provisioning import create_tenant
from telemetry.models import Device

SLUG = "bench-usage"
EMAIL = "bench-usage@example.com"
OUTLETS = 20


EVENTS = "telemetry_deviceevent"
SLICES = 20  # the events go in as this many statements, each sorted by time (a small sort each)


def without_indexes(cursor, table: str) -> list[str]:
    """Drop the table's unique and foreign-key constraints and its indexes but the primary key;
    return the statements that make them again (built once over the loaded rows, not row by row:
    the foreign key is deferred, so 5M inserts would queue 5M trigger events until commit)."""
    cursor.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('u', 'f')",
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema() AND i.tablename = %s "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname AND c.conrelid = %s::regclass)",
        [table, table],
    )
    indexes = cursor.fetchall()
    for name, _, _ in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    unique = [f'ALTER TABLE {table} ADD CONSTRAINT "{n}" {d}' for n, kind, d in constraints if kind == "u"]
    foreign = [f'ALTER TABLE {table} ADD CONSTRAINT "{n}" {d}' for n, kind, d in constraints if kind == "f"]
    return unique + [definition for _, definition in indexes] + foreign


def load(devices: int, events: int, days: int) -> None:
    """Outlets, machines, bound devices (the ORM: a few hundred rows), then the events by
    generate_series in SLICES statements with the event table's indexes dropped and built again
    after. Counters restart every 5,000 events of a device (resets, as the rollups must handle)."""
    start = timezone.now() - timedelta(days=days)
    outlets = Outlet.objects.bulk_create([Outlet(name=f"Outlet {n:02}") for n in range(OUTLETS)])
    machines = Machine.objects.bulk_create(
        [Machine(outlet=outlets[n % OUTLETS], name=f"Machine {n:03}") for n in range(devices)]
    )
    counters = Device.objects.bulk_create(
        [
            Device(device_id=f"bench-{n:03}", mac=f"02:BE:00:00:{n // 256:02X}:{n % 256:02X}", kind="counter")
            for n in range(devices)
        ]
    )
    MachineDevice.objects.bulk_create(
        [MachineDevice(machine=m, device=d, assigned_date=start) for m, d in zip(machines, counters, strict=True)]
    )
    per_device = events // devices
    step = days * 86400 / per_device  # seconds between a device's events; devices 7 s apart (200 × 7 < step)
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        rebuild = without_indexes(cursor, EVENTS)
        size = -(-per_device // SLICES)
        for first in range(1, per_device + 1, size):
            cursor.execute(
                f"""
                INSERT INTO {EVENTS} (event_id, device_id, event, treatment, counter, ts, firmware, source, received_at)
                SELECT 'b' || d.id || '-' || n, d.id, 'treatment',
                       (ARRAY['BASIC','STANDARD','PREMIUM'])[1 + (n * 7 + d.id) %% 3], n %% 5000, ts, '', 'api', ts
                FROM generate_series(%s, %s) AS n
                CROSS JOIN (SELECT id, row_number() OVER (ORDER BY id) AS k FROM telemetry_device) d
                CROSS JOIN LATERAL (SELECT %s::timestamptz + make_interval(secs => n * %s + d.k * 7) AS ts) t
                ORDER BY ts
                """,
                [first, min(per_device, first + size - 1), start, step],
            )
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for statement in rebuild:
            cursor.execute(statement)
        cursor.execute(f"ANALYZE {EVENTS}")
        cursor.execute("RESET synchronous_commit")


def median_ms(call, runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def page(client: Client, params: dict, runs: int) -> tuple[float, int]:
    def get():
        response = client.get("/usage/", params)
        assert response.status_code == 200, response.status_code

    get()
    queries = []

    def count(execute, sql, params, many, context):  # Django resets its query log per request
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        get()
    return median_ms(get, runs), len(queries)


def run(args) -> dict:
    from portal.tenancy.models import Tenant

    tenant = Tenant.objects.filter(slug=SLUG).first() if args.keep else None
    if tenant is None:
        tenant = create_tenant("Bench usage", SLUG)
        connection.set_tenant(tenant)
        began = time.perf_counter()
        load(args.devices, args.events, args.days)
        print(f"loaded {args.events:,} events in {time.perf_counter() - began:.0f} s", flush=True)
    connection.set_tenant(tenant)
    began = time.perf_counter()
    roll_up_usage()
    print(f"rolled up in {time.perf_counter() - began:.0f} s", flush=True)
    with connection.cursor() as cursor:  # what autovacuum does to the new rows within a minute or so
        for table in ("outlets_usagehourly", "outlets_usagedaily", "outlets_usagemonthly", EVENTS):
            cursor.execute(f"VACUUM ANALYZE {table}")
    outlet = Outlet.objects.order_by("pk").first()
    queries = {
        "outlet_day_year": stats.build_query("day", days=365, outlet_id=outlet.pk),
        "outlet_hour_30d": stats.build_query("hour", days=30, outlet_id=outlet.pk),
        "tenant_month_all": stats.build_query("month", days=args.days),
    }
    results = {}
    for name, query in queries.items():
        fast = median_ms(lambda q=query: stats.compute(q), args.runs)
        raw = median_ms(lambda q=query: stats.direct(q), max(1, args.runs // 3))
        same = stats.compute(query).current.values == stats.direct(query).current.values
        results[name] = (fast, raw, same)
        print(f"{name}: rollups {fast:.1f} ms, raw {raw:.1f} ms, equal {same}", flush=True)
    client = signed_in_client(tenant, EMAIL)
    for days in (30, 365):
        results[f"page_{days}"] = page(client, {"outlet": outlet.pk, "granularity": "day", "days": days}, args.runs)
        print(f"usage page, {days} days: {results[f'page_{days}'][0]:.1f} ms, {results[f'page_{days}'][1]} queries")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the bench tenant afterwards, and reuse a kept one")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    settings.DEBUG = False  # no query log: measure what production runs
    settings.ALLOWED_HOSTS = ["*"]
    if not args.keep:
        drop_tenants(slug=SLUG)
    try:
        results = run(args)
    finally:
        if not args.keep:
            drop_tenants(slug=SLUG)
            User.objects.filter(email=EMAIL).delete()
    for name in ("outlet_day_year", "outlet_hour_30d", "tenant_month_all"):
        fast, raw, same = results[name]
        print(f"figure {name}_rollup_ms {fast:.1f} ms goal 100")
        print(f"figure {name}_raw_ms {raw:.1f} ms goal -")
        print(f"figure {name}_speedup {raw / fast:.1f} x goal 50")
        print(f"figure {name}_equal {int(same)} bool goal 1")
    print(f"figure usage_page_ms {results['page_365'][0]:.1f} ms goal 150")
    print(f"figure usage_page_queries_365d {results['page_365'][1]} queries goal {results['page_30'][1]}")


if __name__ == "__main__":
    main()

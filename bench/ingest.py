"""Readings per second: the ingest path next to plain COPY, bulk_create and per-reading saves.

    DATABASE_URL=... DEBUG=1 .venv/bin/python bench/ingest.py [--readings 500000] [--rounds 3] [--batch 20000]

All methods run in one run, into one fresh bench tenant, with the same data shape: 200 sensors
(20 devices × 10), batches of `--batch` readings in time order (100 instants × 200 sensors at the
default, the bulk upload's batch; the bridge's default is 5,000), one transaction per batch. The readings table is emptied before each method. Per-reading saves run
on a smaller sample and are scaled to readings/s. The ingest path also runs on batches half of
whose readings are already stored, which takes its staging-table fallback. The methods take
turns for a few rounds and each reports its best, so a busy neighbour on the machine skews
them less.

"Plain COPY" is the fastest psycopg does (binary format): the physical limit the ratio is
measured against. Text-format COPY is printed for comparison.

DEBUG=1 only lets settings load without secrets; query logging is switched off here, as in
production, so the DEBUG cursor's bookkeeping is not measured.

Goals: the ingest path at ≥ 80% of plain COPY and ≥ 5× bulk_create.
"""

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DEBUG", "1")

from common import use_bench_database

use_bench_database("ingestbench")
import django

django.setup()

from common import drop_tenants
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from portal.api import bulk
from portal.tenancy.provisioning import create_tenant
from telemetry.ingest import ReadingIn, ingest, sensor_cache
from telemetry.models import Device, Reading, Sensor

SLUG = "bench-ingest"
DEVICES, SENSORS_PER_DEVICE = 20, 10
BATCH = bulk.BATCH  # the largest batch a caller sends: the bulk upload's


def make_sensors() -> dict[tuple[str, str], int]:
    """20 devices of 10 temperature sensors with a range, so validation checks it."""
    devices = Device.objects.bulk_create([Device(device_id=f"gw-{d:02}") for d in range(DEVICES)])
    Sensor.objects.bulk_create(
        [
            Sensor(device=device, key=f"t{s}", type="temperature", unit="°C", min_value=-40, max_value=120)
            for device in devices
            for s in range(SENSORS_PER_DEVICE)
        ]
    )
    return {(s.device.device_id, s.key): s.id for s in Sensor.objects.select_related("device")}


def make_batches(sensors, count: int, start, batch_size: int, seed: int = 1) -> list[list[ReadingIn]]:
    """`count` batches, each 25 consecutive minutes of every sensor, values with two decimals."""
    rng = random.Random(seed)
    per_batch = batch_size // len(sensors)
    batches = []
    for b in range(count):
        batch = []
        for m in range(per_batch):
            minutes = b * per_batch + m
            for device, key in sensors:
                # a datetime object per reading, as parsing each payload gives
                ts = start + timedelta(minutes=minutes)
                batch.append(
                    ReadingIn(device=device, sensor=key, ts=ts, value=round(rng.uniform(15, 30), 2), unit="°C")
                )
        batches.append(batch)
    return batches


def as_rows(batch, sensors) -> list[tuple[int, object, float]]:
    return [(sensors[(r.device, r.sensor)], r.ts.astimezone(UTC), float(r.value)) for r in batch]


def empty_tables() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE telemetry_reading, telemetry_dirtyhour")
        cursor.execute("ANALYZE telemetry_reading")


def count_readings() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM telemetry_reading")
        return cursor.fetchone()[0]


def plain_copy(rows) -> None:
    """The fastest COPY psycopg does: binary, rows packed in C."""
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        cursor.cursor.copy("COPY telemetry_reading (sensor_id, ts, value) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(["int8", "timestamptz", "float8"])
        for row in rows:
            copy.write_row(row)


def plain_text_copy(rows) -> None:
    """COPY in text format, for comparison."""
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        cursor.cursor.copy("COPY telemetry_reading (sensor_id, ts, value) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def run(readings: int, sample: int, dup_batches: int, rounds: int, batch_size: int) -> dict[str, float]:
    """Each method `rounds` times, the methods taking turns; returns each one's best readings/s.

    The best round is the one least disturbed by whatever else runs on the machine.
    """
    now = timezone.now().replace(second=0, microsecond=0)
    sensors = make_sensors()
    count = readings // batch_size
    print(f"{len(sensors)} sensors, {count} batches of {batch_size} readings per method, best of {rounds} rounds")
    batches = make_batches(sensors, count, now - timedelta(days=10), batch_size)
    row_batches = [as_rows(batch, sensors) for batch in batches]
    sample_rows = [row for batch in row_batches for row in batch][:sample]

    def ingest_batches():
        for batch in batches:
            ingest(batch, source="internal", now=now)
        return count * batch_size

    def copy_batches():
        for rows in row_batches:
            plain_copy(rows)
        return count * batch_size

    def text_copy_batches():
        for rows in row_batches:
            plain_text_copy(rows)
        return count * batch_size

    def bulk_create_batches():
        for rows in row_batches:
            Reading.objects.bulk_create(
                [Reading(sensor_id=s, ts=t, value=v) for s, t, v in rows], ignore_conflicts=True, batch_size=batch_size
            )
        return count * batch_size

    def save_one_by_one():
        for sensor_id, ts, value in sample_rows:
            Reading.objects.create(sensor_id=sensor_id, ts=ts, value=value)
        return len(sample_rows)

    def store_every_other():  # half duplicates: every other reading is stored beforehand
        for rows in row_batches[:dup_batches]:
            plain_copy(rows[::2])

    def ingest_half_duplicates():
        for batch in batches[:dup_batches]:
            result = ingest(batch, source="internal", now=now)
            assert (result.written, result.duplicates) == (batch_size // 2, batch_size // 2)
        return dup_batches * batch_size

    methods = {
        "ingest": ("ingest()", ingest_batches, None, count * batch_size),
        "copy": ("plain COPY, binary", copy_batches, None, count * batch_size),
        "text_copy": ("plain COPY, text", text_copy_batches, None, count * batch_size),
        "bulk_create": ("bulk_create(ignore_conflicts=True)", bulk_create_batches, None, count * batch_size),
        "orm_save": (f"objects.create() × {len(sample_rows)}", save_one_by_one, None, len(sample_rows)),
        "ingest_half_duplicates": (
            f"ingest(), {dup_batches} half-duplicate batches",
            ingest_half_duplicates,
            store_every_other,
            dup_batches * batch_size,
        ),
    }
    # warm the sensor cache as a running ingest process has it (and the plans, for everyone)
    ingest(batches[0][:10], source="internal", now=now)
    rates = {name: [] for name in methods}
    for round_ in range(1, rounds + 1):
        for name, (label, work, prepare, stored) in methods.items():
            empty_tables()
            if prepare:
                prepare()
            started = time.perf_counter()
            readings_done = work()
            seconds = time.perf_counter() - started
            assert count_readings() == stored, (name, count_readings(), stored)
            rates[name].append(readings_done / seconds)
            print(f"  round {round_} {label}: {seconds:.2f} s, {readings_done / seconds:,.0f} readings/s")
    for name, got in rates.items():
        print(f"  {name:>24}: best {max(got):>9,.0f}  median {statistics.median(got):>9,.0f} readings/s")
    return {name: max(got) for name, got in rates.items()}


def drop_bench_tenant() -> None:
    drop_tenants(slug=SLUG)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=500_000, help="per method (whole batches)")
    parser.add_argument("--sample", type=int, default=5_000, help="readings saved one by one")
    parser.add_argument("--dup-batches", type=int, default=10, help="half-duplicate batches for the fallback")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=BATCH, help="readings per batch (a multiple of 200)")
    args = parser.parse_args()

    settings.DEBUG = False  # no query log: measure what production runs
    call_command("migrate", verbosity=0)
    drop_bench_tenant()
    sensor_cache.clear()
    try:
        tenant = create_tenant("Bench ingest", SLUG)
        with schema_context(tenant.schema_name):
            rates = run(args.readings, args.sample, args.dup_batches, args.rounds, args.batch)
    finally:
        drop_bench_tenant()

    print(f"figure ingest_rate {rates['ingest']:.0f} readings/s goal -")
    print(f"figure copy_rate {rates['copy']:.0f} readings/s goal -")
    print(f"figure text_copy_rate {rates['text_copy']:.0f} readings/s goal -")
    print(f"figure bulk_create_rate {rates['bulk_create']:.0f} readings/s goal -")
    print(f"figure orm_save_rate {rates['orm_save']:.0f} readings/s goal -")
    print(f"figure ingest_half_duplicates_rate {rates['ingest_half_duplicates']:.0f} readings/s goal -")
    print(f"figure ingest_batch {args.batch} readings goal -")
    print(f"figure ingest_vs_copy {100 * rates['ingest'] / rates['copy']:.1f} % goal 80")
    print(f"figure ingest_vs_bulk_create {rates['ingest'] / rates['bulk_create']:.2f} × goal 5")


if __name__ == "__main__":
    main()

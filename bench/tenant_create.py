"""Seconds to create a ready tenant: cloned from the template schema vs running every migration.

    DEBUG=1 .venv/bin/python bench/tenant_create.py [--count 10]

Both ways run side by side in one run on the same database; the tenants made are dropped at
the end. The goal: under 3 s per tenant, however many migrations exist.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DEBUG", "1")

from common import use_bench_database

use_bench_database("tenantbench")
import django

django.setup()

from common import drop_tenants
from django.conf import settings
from django.core.management import call_command

from portal.tenancy.provisioning import create_tenant

PREFIX = "bench-tenant-"


def timed_creations(count: int, label: str) -> list[float]:
    seconds = []
    for n in range(count):
        started = time.monotonic()
        create_tenant(f"Bench {label} {n}", f"{PREFIX}{label}-{n}")
        seconds.append(time.monotonic() - started)
    return seconds


def drop_bench_tenants() -> None:
    drop_tenants(slug__startswith=PREFIX)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)  # the template schema must be current
    drop_bench_tenants()
    try:
        cloned = timed_creations(args.count, "clone")
        settings.TENANT_CREATION_FAKES_MIGRATIONS = False  # the textbook way: run every migration
        migrated = timed_creations(max(2, args.count // 5), "migrate")
    finally:
        settings.TENANT_CREATION_FAKES_MIGRATIONS = True
        drop_bench_tenants()

    print(
        f"cloned from template: {args.count} tenants in {sum(cloned):.2f} s "
        f"(median {statistics.median(cloned):.3f} s, max {max(cloned):.3f} s)"
    )
    print(
        f"running migrations:   {len(migrated)} tenants, median {statistics.median(migrated):.3f} s each "
        f"(grows with every tenant migration; the clone does not)"
    )
    print(f"figure tenant_create_total_10 {sum(cloned) * 10 / args.count:.2f} s goal 30")
    print(f"figure tenant_create_max {max(cloned):.3f} s goal 3")


if __name__ == "__main__":
    main()

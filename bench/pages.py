"""Median milliseconds and query counts of the assets list, an asset's page and the explorer,
small and then at 10,000 assets / 10,000,000 readings.

    DATABASE_URL=... DEBUG=1 .venv/bin/python bench/pages.py [--runs 15]

A fresh bench tenant first holds 100 assets and a few hours of readings: each page is timed and
its queries counted. Then it grows to 10,000 assets in 50 sites and 10.8 million readings
(1,000 sensors every 4 minutes for 30 days, loaded as bench/aggregates.py does, rolled up), and
the same pages are measured again. Requests go through Django's full stack (middleware, tenant
routing, session, templates) with the test client, signed in as a member.

Goals: under 100 ms median at full size, and the same query count at both sizes.
"""

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/aggregates.py's loader
os.environ.setdefault("DEBUG", "1")

import aggregates  # noqa: E402  (sets up Django)
from common import drop_tenants  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from portal.accounts.models import User  # noqa: E402
from portal.devices.forms import local_input  # noqa: E402
from portal.facilities.models import Asset, DeviceBinding, Site  # noqa: E402
from portal.tenancy.middleware import SESSION_TENANT_KEY  # noqa: E402
from portal.tenancy.models import Membership, Role, Tenant  # noqa: E402
from portal.tenancy.provisioning import create_tenant  # noqa: E402
from telemetry.models import Device  # noqa: E402
from telemetry.rollups import roll_up  # noqa: E402

SLUG = "bench-pages"
EMAIL = "bench-pages@example.com"
ASSETS, SITES = 10_000, 50


def signed_in_client(tenant) -> Client:
    user, _ = User.objects.get_or_create(email=EMAIL)
    Membership.objects.get_or_create(user=user, tenant=tenant, defaults={"role": Role.VIEWER})
    client = Client(HTTP_HOST=f"{SLUG}.{settings.BASE_DOMAIN}")
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    session = client.session
    session[SESSION_TENANT_KEY] = tenant.schema_name
    session.save()
    return client


def add_assets(count: int, first: int) -> None:
    sites = Site.objects.bulk_create([Site(name=f"Bench site {first + n}") for n in range(max(1, count * SITES // ASSETS))])
    Asset.objects.bulk_create(
        [Asset(site=sites[n % len(sites)], tag=f"A-{first + n:05}", name=f"Asset {first + n}",
               type=Asset.Type.CHILLER if n % 3 else Asset.Type.FREEZER) for n in range(count)],
        batch_size=2000,
    )


def bind_devices() -> None:
    """Each bench device on an asset: the asset page then shows its 10 sensors."""
    assets = list(Asset.objects.order_by("pk").values_list("pk", flat=True))
    DeviceBinding.objects.bulk_create(
        [DeviceBinding(device_id=device_pk, asset_id=assets[n]) for n, device_pk in enumerate(Device.objects.order_by("pk").values_list("pk", flat=True))
         if not DeviceBinding.objects.filter(device_id=device_pk).exists()]
    )


def measure(client: Client, url: str, runs: int) -> tuple[float, int]:
    client.get(url)  # warm caches, as a page in use is
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(queries)


def pages(client: Client) -> dict[str, str]:
    asset = DeviceBinding.objects.order_by("pk").values_list("asset_id", flat=True).first()
    sensor = Device.objects.order_by("pk").first().sensors.order_by("pk").first()
    return {
        "assets_list": "/assets/",
        "asset_detail": f"/assets/{asset}/?range=7d&bucket=1h",
        "explorer": f"/explorer/?device={sensor.device_id}&sensor={sensor.pk}&bucket=1h"
                    f"&from={local_input(timezone.now() - timedelta(days=30))}&to={local_input(timezone.now())}",
    }


def run(runs: int) -> dict:
    tenant = Tenant.objects.get(slug=SLUG)
    results = {}
    with schema_context(tenant.schema_name):
        aggregates.make_sites()  # 100 devices × 10 sensors
        add_assets(100, 0)
        bind_devices()
        now = timezone.now()
        aggregates.load(now - timedelta(hours=6), now, 0)
        roll_up()
    client = signed_in_client(tenant)
    with schema_context(tenant.schema_name):
        urls = pages(client)
    for name, url in urls.items():
        results[f"{name}_small"] = measure(client, url, runs)
        print(f"  small: {name} {results[f'{name}_small'][0]:.1f} ms, {results[f'{name}_small'][1]} queries")

    with schema_context(tenant.schema_name):
        add_assets(ASSETS - 100, 100)
        from telemetry.models import DirtyHour, Reading

        Reading.objects.all().delete()
        DirtyHour.objects.all().delete()
        end = timezone.now()
        started = time.perf_counter()
        rows = aggregates.load((end - timedelta(days=30)).replace(hour=0), end, 30)
        hours = roll_up()
        print(f"  grew to {Asset.objects.count():,} assets and {rows:,} readings ({hours:,} hours rolled up) in {time.perf_counter() - started:.0f} s")
    for name, url in urls.items():
        results[f"{name}_large"] = measure(client, url, runs)
        print(f"  large: {name} {results[f'{name}_large'][0]:.1f} ms, {results[f'{name}_large'][1]} queries")
    return results


def drop_bench_tenant() -> None:
    drop_tenants(slug=SLUG)
    User.objects.filter(email=EMAIL).delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    settings.DEBUG = False  # no query log: measure what production runs
    settings.ALLOWED_HOSTS = ["*"]
    drop_bench_tenant()
    try:
        create_tenant("Bench pages", SLUG)
        results = run(args.runs)
    finally:
        drop_bench_tenant()
    for name in ("assets_list", "asset_detail", "explorer"):
        ms, large_queries = results[f"{name}_large"]
        small_queries = results[f"{name}_small"][1]
        print(f"figure {name}_ms {ms:.1f} ms goal 100")
        print(f"figure {name}_queries {large_queries} queries goal {small_queries}")


if __name__ == "__main__":
    main()

"""Median milliseconds and query counts of the assets list, an asset's page, the explorer and
the dashboard, small and then at 10,000 assets / 10,000,000 readings.

    DATABASE_URL=... DEBUG=1 .venv/bin/python bench/pages.py [--runs 15] [--assets 10000] [--days 30]

(--assets 500 --days 1 --runs 3 checks the script in a minute; the figures mean something at
full size on a calm machine.)

A fresh bench tenant first holds 100 assets and a few hours of readings: each page is timed and
its queries counted. Then it grows to 10,000 assets in 50 sites and 10.8 million readings
(1,000 sensors every 4 minutes for 30 days, loaded as bench/aggregates.py does, rolled up), and
the same pages are measured again. Requests go through Django's full stack (middleware, tenant
routing, session, templates) with the test client, signed in as a member.

Also the live polls (portal.core.live) of the asset page, the device page, the dashboard and the
navigation's open-alert badge: idle (nothing new since the cursor: the 204 an open page gets
most of the time) and with something new (the asset's or device's last minute of readings; for
the dashboard, one device seen since: its device cards and the key sensors' rows that took a
reading; for the badge, a count it no longer shows).

Goals: under 100 ms median at full size for pages, under 10 ms for a poll, and the same query
count at both sizes. Each figure is the wall clock and the CPU of this process (`_cpu_ms`): on a
shared machine the wall clock holds the waits for a core, for this process and the database's,
so read it beside the load average printed with it.
"""

import argparse
import os
import re
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/aggregates.py's loader
os.environ.setdefault("DEBUG", "1")

from common import use_bench_database

use_bench_database("pagesbench", keep="--keep" in sys.argv)  # --again measures it later

import aggregates
from common import drop_tenants, signed_in_client
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from portal.accounts.models import User
from portal.core import live
from portal.devices.forms import local_input
from portal.facilities.models import Asset, DeviceBinding, Site
from portal.tenancy.models import Tenant
from portal.tenancy.provisioning import create_tenant
from telemetry import queries
from telemetry.models import Device, Sensor
from telemetry.rollups import roll_up

SLUG = "bench-pages"
EMAIL = "bench-pages@example.com"
ASSETS, SITES = 10_000, 50


def add_assets(count: int, first: int) -> None:
    sites = Site.objects.bulk_create(
        [Site(name=f"Bench site {first + n}") for n in range(max(1, count * SITES // ASSETS))]
    )
    if first == 0:
        # the dashboard's key sensors: one per bench device, as a site's supply temperatures would be
        Sensor.objects.filter(key="t0").update(on_dashboard=True)
    Asset.objects.bulk_create(
        [
            Asset(
                site=sites[n % len(sites)],
                tag=f"A-{first + n:05}",
                name=f"Asset {first + n}",
                type=Asset.Type.CHILLER if n % 3 else Asset.Type.FREEZER,
            )
            for n in range(count)
        ],
        batch_size=2000,
    )


def bind_devices() -> None:
    """Each bench device on an asset: the asset page then shows its 10 sensors."""
    assets = list(Asset.objects.order_by("pk").values_list("pk", flat=True))
    DeviceBinding.objects.bulk_create(
        [
            DeviceBinding(device_id=device_pk, asset_id=assets[n])
            for n, device_pk in enumerate(Device.objects.order_by("pk").values_list("pk", flat=True))
            if not DeviceBinding.objects.filter(device_id=device_pk).exists()
        ]
    )


def measure(client: Client, name: str, url: str, runs: int) -> tuple[float, int, float]:
    """(median wall-clock ms, queries, median CPU ms of this process): on a shared machine the
    wall clock also holds the waits for a core (the load average), the CPU time does not; the
    database's own CPU is in the wall clock only."""
    client.get(url)  # warm caches, as a page in use is
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    times, cpu, statuses, counts = [], [], [], []
    for _ in range(runs):
        queries.clear()
        with connection.execute_wrapper(count):
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        statuses.append(response.status_code)
        counts.append(len(queries))
        if name.endswith("_idle") and response.status_code == 200:
            # as the page does: ask from the new cursor (the dashboard's readings card moves each minute)
            url = live_url(response.content.decode(), url.split("?")[0])
    check_idle(name, statuses)
    usual = statistics.mode(statuses)  # the queries of the usual answer (the idle poll's 204)
    return statistics.median(times), counts[statuses.index(usual)], statistics.median(cpu)


def pages(client: Client) -> dict[str, str]:
    asset = DeviceBinding.objects.order_by("pk").values_list("asset_id", flat=True).first()
    device = Device.objects.order_by("pk").first()
    sensor = device.sensors.order_by("pk").first()
    # the dashboard's poll as a page rendered before one device reported asks it (the device
    # cards and key sensors re-rendered: portal.core.overview), and as the page rendered after
    # asks it (nothing moved: 204)
    before = live_url(client.get("/").content.decode(), "/dashboard/live/")
    Device.objects.filter(pk=device.pk).update(last_seen=timezone.now())
    dashboard = client.get("/").content.decode()
    device_poll = live_url(client.get(f"/devices/{device.pk}/").content.decode(), "/devices/")
    nav_poll = live_url(dashboard, "/alerts/count/live/")
    return {
        "dashboard": "/",
        "dashboard_poll_idle": live_url(dashboard, "/dashboard/live/"),
        "dashboard_poll_new": before,
        "assets_list": "/assets/",
        "asset_detail": f"/assets/{asset}/?range=7d&bucket=1h",
        "explorer": f"/explorer/?device={sensor.device_id}&sensor={sensor.pk}&bucket=1h"
        f"&from={local_input(timezone.now() - timedelta(days=30))}&to={local_input(timezone.now())}",
        # the asset page's live poll (portal.core.live), as the open page sends it every 5 s:
        # nothing new since its cursor (the usual answer, 204), and new readings of the last minute
        "asset_poll_idle": f"/assets/{asset}/live/?range=7d&bucket=1h&since={live.epoch(timezone.now())}",
        "asset_poll_new": f"/assets/{asset}/live/?range=7d&bucket=1h"
        f"&since={live.epoch(newest_reading(asset) - timedelta(minutes=1))}",
        # the device page's poll as its page asks it (idle), and from a minute before its newest reading
        "device_poll_idle": device_poll,
        "device_poll_new": re.sub(r"since=[0-9.]+", f"since={live.epoch(newest_device_reading(device))}", device_poll),
        # the navigation's open-alert badge, polled by every page: unchanged count (204), and a
        # count the page no longer shows (the badge again)
        "nav_alert_count_idle": nav_poll,
        "nav_alert_count_new": re.sub(r"count=[0-9]+", "count=999999", nav_poll),
    }


def live_url(page: str, prefix: str) -> str:
    """The URL a page's live element polls (the tag's hx-get), as the browser would ask it."""
    return re.search(rf'hx-get="({re.escape(prefix)}[^"]*)"', page).group(1).replace("&amp;", "&")


def newest_device_reading(device: Device):
    """A minute before the device's newest reading: its page's poll then has something new."""
    newest = max(ts for ts, _ in queries.latest_values(device.sensors.values_list("pk", flat=True)).values())
    return newest - timedelta(minutes=1)


def fleet_seen() -> None:
    """The loader writes readings in SQL, past the ingest path that keeps last_seen: the fleet
    reported half a minute ago, but for one device in ten, silent for an hour (offline)."""
    Device.objects.update(last_seen=timezone.now() - timedelta(seconds=30))
    Device.objects.filter(device_id__endswith="9").update(last_seen=timezone.now() - timedelta(hours=1))


def check_idle(name: str, statuses: list[int]) -> None:
    """An idle poll's figure is only what it says if the poll really found nothing new: every
    answer a 204 but one at most (the minute turning over moves the dashboard's readings card;
    the poll after it asks from the new cursor, idle again); any other's figure is of 200s."""
    if name.endswith("_idle"):
        assert statuses.count(204) >= len(statuses) - 1, f"{name} answered {statuses}: not an idle poll"
    else:
        assert set(statuses) == {200}, f"{name} answered {statuses}"


def newest_reading(asset_pk: int):
    sensors = Asset.objects.get(pk=asset_pk).sensors().values_list("pk", flat=True)
    return max(ts for ts, _ in queries.latest_values(sensors).values())


def run(runs: int, assets: int, days: int) -> dict:
    tenant = Tenant.objects.get(slug=SLUG)
    results = {}
    with schema_context(tenant.schema_name):
        aggregates.make_sites()  # 100 devices × 10 sensors
        add_assets(100, 0)
        bind_devices()
        now = timezone.now()
        aggregates.load(now - timedelta(hours=6), now, 0)
        roll_up()
        fleet_seen()
    client = signed_in_client(tenant, EMAIL)
    with schema_context(tenant.schema_name):
        urls = pages(client)
    for name, url in urls.items():
        results[f"{name}_small"] = measure(client, name, url, runs)
        print("  small: {} {:.1f} ms, {} queries, {:.1f} ms CPU".format(name, *results[f"{name}_small"]))

    with schema_context(tenant.schema_name):
        add_assets(assets - 100, 100)
        from telemetry.models import DirtyHour, Reading

        Reading.objects.all().delete()
        DirtyHour.objects.all().delete()
        end = timezone.now()
        started = time.perf_counter()
        rows = aggregates.load((end - timedelta(days=days)).replace(hour=0), end, days)
        hours = roll_up()
        fleet_seen()
    # entering the schema again issues SET search_path afresh: the load's transactions can leave
    # the connection on public while django-tenants still counts the tenant's path as set
    with schema_context(tenant.schema_name):
        print(
            f"  grew to {Asset.objects.count():,} assets and {rows:,} readings ({hours:,} hours rolled up) in {time.perf_counter() - started:.0f} s"
        )
        urls = pages(client)  # the same pages; the polls' cursors moved with the new readings
    for name, url in urls.items():
        results[f"{name}_large"] = measure(client, name, url, runs)
        print("  large: {} {:.1f} ms, {} queries, {:.1f} ms CPU".format(name, *results[f"{name}_large"]))
    return results


def again(runs: int) -> None:
    """Measure a kept bench tenant's pages once more (after --keep): no load, no figures lines,
    for looking into one endpoint (EXPLAIN its queries in the kept schema) and measuring again."""
    tenant = Tenant.objects.get(slug=SLUG)
    client = signed_in_client(tenant, EMAIL)
    with schema_context(tenant.schema_name):
        fleet_seen()
        print(f"  kept: {Asset.objects.count():,} assets")
        urls = pages(client)
    for name, url in urls.items():
        print("  again: {} {:.1f} ms, {} queries, {:.1f} ms CPU".format(name, *measure(client, name, url, runs)))
    print(f"load average {os.getloadavg()[0]:.2f} (1 min)")


def drop_bench_tenant() -> None:
    drop_tenants(slug=SLUG)
    User.objects.filter(email=EMAIL).delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--assets", type=int, default=ASSETS, help="assets at full size (at least 200)")
    parser.add_argument("--days", type=int, default=30, help="days of readings at full size")
    parser.add_argument("--keep", action="store_true", help="keep the bench tenant at the end")
    parser.add_argument("--again", action="store_true", help="measure the tenant a --keep run left, then drop it")
    args = parser.parse_args()
    if args.assets < 200 or args.days < 1:
        parser.error("--assets must be at least 200 and --days at least 1")
    settings.DEBUG = False  # no query log: measure what production runs
    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)  # a fresh bench database has no tables yet
    if args.again:
        try:
            return again(args.runs)
        finally:
            if not args.keep:
                drop_bench_tenant()
    drop_bench_tenant()
    try:
        create_tenant("Bench pages", SLUG)
        results = run(args.runs, args.assets, args.days)
    finally:
        if not args.keep:
            drop_bench_tenant()
    names = ["assets_list", "asset_detail", "explorer", "asset_poll_idle", "asset_poll_new"]
    names += ["device_poll_idle", "device_poll_new", "nav_alert_count_idle", "nav_alert_count_new"]
    names += ["dashboard", "dashboard_poll_idle", "dashboard_poll_new"]
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) as the figures were taken")
    print(f"figure assets {args.assets} assets goal -")
    for name in names:
        ms, large_queries, cpu = results[f"{name}_large"]
        small_queries = results[f"{name}_small"][1]
        goal = 10 if "poll" in name or "count" in name else 100
        print(f"figure {name}_ms {ms:.1f} ms goal {goal}")
        print(f"figure {name}_cpu_ms {cpu:.1f} ms goal {goal}")
        print(f"figure {name}_queries {large_queries} queries goal {small_queries}")


if __name__ == "__main__":
    main()

"""Demo data for facilities: sites, assets, devices, sensors and 30 days of history.

History goes through the one ingest path, like any reading. Values follow a daily cycle with
noise, and include a few gaps (a gateway off-line for some hours) and a few spikes: some
within the sensor's range (a door left open), some beyond it (a faulty probe), which the
ingest path rejects to the dead-letter table. Re-running adds only what is missing: readings
sit on a fixed 5-minute grid, so the ones already stored are counted as duplicates.
"""

import math
import random
from datetime import timedelta

from django.utils import timezone

from portal.facilities.models import Asset, DeviceBinding, Site
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import Device, Sensor
from telemetry.rollups import roll_up

DAYS = 30
STEP = timedelta(minutes=5)

# sensor key -> (type, unit, label, base, daily swing, noise, declared min, max)
KEY_SENSORS = {"supply_temp", "cabinet_temp", "room_temp", "air_temp"}  # on the dashboard, by site
SENSOR_KINDS = {
    "supply_temp": ("temperature", "°C", "Supply water temperature", 7.0, 1.5, 0.2, -20, 40),
    "return_temp": ("temperature", "°C", "Return water temperature", 12.0, 2.0, 0.3, -20, 40),
    "power": ("power", "kW", "Power draw", 85.0, 30.0, 4.0, 0, 400),
    "air_temp": ("temperature", "°C", "Supply air temperature", 16.0, 3.0, 0.4, -20, 50),
    "humidity": ("humidity", "%", "Relative humidity", 48.0, 8.0, 1.5, 0, 100),
    "cabinet_temp": ("temperature", "°C", "Cabinet temperature", -19.0, 1.0, 0.3, -40, 20),
    "room_temp": ("temperature", "°C", "Room temperature", 3.0, 0.8, 0.2, -30, 30),
}

# (site, address, time zone) -> [(tag, name, type, status, [(device, [sensor keys])])]
FACILITIES = {
    "acme": {
        ("Riverside Hospital", "12 River Road, Porto", "Europe/Lisbon"): [
            (
                "CHILLER-001",
                "Main chiller",
                Asset.Type.CHILLER,
                Asset.Status.OPERATIONAL,
                [("acme-gw-01", ["supply_temp", "return_temp"]), ("acme-meter-01", ["power"])],
            ),
            (
                "AHU-01",
                "Operating theatre AHU",
                Asset.Type.AHU,
                Asset.Status.OPERATIONAL,
                [("acme-gw-02", ["air_temp", "humidity"])],
            ),
            (
                "FRZ-01",
                "Pharmacy freezer",
                Asset.Type.FREEZER,
                Asset.Status.OPERATIONAL,
                [("acme-gw-03", ["cabinet_temp"])],
            ),
        ],
        ("Harbour Distribution Centre", "3 Quay Street, Leixões", "Europe/Lisbon"): [
            (
                "COLD-01",
                "Cold room 1",
                Asset.Type.COLD_ROOM,
                Asset.Status.OPERATIONAL,
                [("acme-gw-04", ["room_temp", "humidity"])],
            ),
            ("COLD-02", "Cold room 2", Asset.Type.COLD_ROOM, Asset.Status.MAINTENANCE, [("acme-gw-05", ["room_temp"])]),
            (
                "CHILLER-002",
                "Roof chiller",
                Asset.Type.CHILLER,
                Asset.Status.FAULT,
                [("acme-gw-06", ["supply_temp", "return_temp", "power"])],
            ),
        ],
    },
    "globex": {
        ("Globex Central Kitchen", "400 Market Avenue, Springfield", "America/Chicago"): [
            (
                "WALKIN-01",
                "Walk-in cooler",
                Asset.Type.COLD_ROOM,
                Asset.Status.OPERATIONAL,
                [("globex-gw-01", ["room_temp", "humidity"])],
            ),
            (
                "FRZ-A",
                "Blast freezer",
                Asset.Type.FREEZER,
                Asset.Status.OPERATIONAL,
                [("globex-gw-02", ["cabinet_temp"])],
            ),
        ],
    },
}


def seed_tenant(tenant, log) -> None:
    plan = FACILITIES.get(tenant.slug)
    if not plan:
        return
    for (site_name, address, zone), assets in plan.items():
        site, _ = Site.objects.get_or_create(name=site_name, defaults={"address": address, "time_zone": zone})
        for tag, name, kind, status, devices in assets:
            asset, _ = Asset.objects.get_or_create(
                site=site, tag=tag, defaults={"name": name, "type": kind, "status": status}
            )
            for device_id, sensor_keys in devices:
                ensure_device(asset, device_id, sensor_keys)
    result = ingest(history(tenant.slug), source="internal", auto_create=False)
    hours = roll_up()
    log(
        f"{tenant.slug}: facilities history {result.written} readings written, {result.duplicates} already there, "
        f"{result.rejected} rejected to dead letters; {hours} hours rolled up"
    )


def ensure_device(asset: Asset, device_id: str, sensor_keys: list[str]) -> None:
    device, _ = Device.objects.get_or_create(
        device_id=device_id, defaults={"name": device_id.upper(), "firmware": "2.4.1"}
    )
    DeviceBinding.objects.get_or_create(device=device, defaults={"asset": asset})
    for key in sensor_keys:
        kind, unit, label, *_, low, high = SENSOR_KINDS[key]
        Sensor.objects.get_or_create(
            device=device,
            key=key,
            defaults={
                "type": kind,
                "unit": unit,
                "label": label,
                "min_value": low,
                "max_value": high,
                "on_dashboard": key in KEY_SENSORS,
            },
        )


def history(tenant_slug: str):
    """30 days of readings on a 5-minute grid for every demo sensor of the tenant."""
    now = timezone.now()
    end = now - timedelta(seconds=now.timestamp() % STEP.total_seconds())
    start = end - timedelta(days=DAYS)
    for sensor in Sensor.objects.filter(device__device_id__startswith=f"{tenant_slug}-").select_related("device"):
        kind, unit, _, base, swing, noise, low, high = SENSOR_KINDS[sensor.key]
        rng = random.Random(f"{sensor.device.device_id}/{sensor.key}")  # noqa: S311 (demo data)
        gap_days = {rng.randrange(DAYS) for _ in range(2)}  # the gateway was off for a few hours
        ts = start
        while ts <= end:
            day = (ts - start).days
            if not (day in gap_days and 2 <= ts.hour < 7):
                phase = (ts.hour + ts.minute / 60) / 24 * 2 * math.pi
                value = base + swing * math.sin(phase - math.pi / 2) + rng.gauss(0, noise)
                roll = rng.random()
                if roll < 0.0015:
                    value = base + swing * 4  # a spike within range: door open, defrost
                elif roll < 0.0018:
                    value = high + 50  # a faulty probe: beyond the declared range
                yield ReadingIn(sensor.device.device_id, sensor.key, ts, round(value, 2), unit=unit)
            ts += STEP

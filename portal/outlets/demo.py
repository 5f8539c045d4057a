"""Demo data for the outlet fleet (globex): outlets, machines bound to counting devices, 30 days
of usage events with a daily rhythm, one device that moved to another machine ten days ago, and
two devices that only ever sent legacy posts (unregistered). Re-running adds only the time since
each device's last event, and the rollups recompute what is new.
"""

import random
from datetime import timedelta

from django.utils import timezone

from portal.outlets.models import Machine, MachineDevice, Outlet
from portal.outlets.usage import roll_up_usage
from telemetry.models import Device, DeviceEvent

DAYS = 30
OUTLETS = {
    "globex": [
        ("Globex Downtown", "1 Market Street", "Maria Costa", 6, 4, ["Bay 1", "Bay 2", "Bay 3"]),
        ("Globex Airport", "Terminal 2, Level 0", "João Silva", 4, 3, ["Bay 1", "Bay 2"]),
        ("Globex Harbour", "Pier 4", "Ana Reis", 3, 2, ["Bay 1", "Express"]),
    ]
}
LEGACY_MACS = ["02:47:4C:00:00:A1", "02:47:4C:00:00:A2"]
TREATMENTS = ["BASIC", "BASIC", "BASIC", "STANDARD", "STANDARD", "PREMIUM"]  # basic is the common one


def seed_tenant(tenant, say) -> None:
    plan = OUTLETS.get(tenant.slug)
    if not plan:
        return
    now = timezone.now()
    start = now - timedelta(days=DAYS)
    devices = []
    for n_outlet, (name, address, contact, sva, machine_count, machines) in enumerate(plan):
        outlet, _ = Outlet.objects.get_or_create(
            name=name,
            defaults={
                "address": address,
                "contact_person": contact,
                "total_sva": sva,
                "average_intage_services": round(12.5 + 4 * n_outlet, 1),
                "number_of_machines": machine_count,  # the owner's figure: not always what is on record
            },
        )
        for n_machine, machine_name in enumerate(machines):
            machine, _ = Machine.objects.get_or_create(outlet=outlet, name=machine_name)
            device, created = Device.objects.get_or_create(
                device_id=f"gx-counter-{n_outlet + 1}{n_machine + 1}",
                defaults={
                    "mac": f"02:47:4C:00:{n_outlet + 1:02X}:{n_machine + 1:02X}",
                    "kind": Device.Kind.COUNTER,
                    "firmware": "1.4.2",
                    "assigned_at": start,
                    "last_seen": now - timedelta(minutes=2),
                },
            )
            if not device.machine_bindings.exists():
                MachineDevice.bind(machine, device, at=start)
            devices.append(device)
    moved = move_one_device(plan, now)
    legacy = [
        Device.objects.get_or_create(
            mac=mac, defaults={"device_id": "dev-" + mac.replace(":", "").lower(), "kind": Device.Kind.COUNTER}
        )[0]
        for mac in LEGACY_MACS
    ]
    written = sum(history(device, start, now) for device in devices + legacy)
    roll_up_usage()
    say(
        f"  {tenant.slug}: {Outlet.objects.count()} outlets, {Machine.objects.count()} machines, {written} new usage events{moved}"
    )


def move_one_device(plan, now) -> str:
    """Ten days ago the Harbour express counter was moved to the Airport's Bay 2 (history stays)."""
    device = Device.objects.filter(device_id="gx-counter-32").first()
    target = Machine.objects.filter(outlet__name="Globex Airport", name="Bay 2").first()
    if device is None or target is None or device.machine_bindings.count() > 1:
        return ""
    old = device.machine_bindings.filter(is_active=True).first()
    if old is None or old.machine_id == target.pk:
        return ""
    spare = Device.objects.filter(device_id="gx-counter-22").first()
    at = now - timedelta(days=10)
    if spare is not None:  # Airport's own Bay 2 counter went to the Harbour express in exchange
        MachineDevice.bind(target, device, at=at)
        MachineDevice.bind(old.machine, spare, at=at + timedelta(minutes=1))
    return "; a counter moved between outlets ten days ago"


def history(device: Device, start, now) -> int:
    """Events every few minutes in opening hours (08:00–20:00 UTC), busier at midday, from the
    device's last event on (so a rerun adds only the time since); counters climb per treatment."""
    latest = DeviceEvent.objects.filter(device=device).order_by("-ts").first()
    counters = dict.fromkeys(("BASIC", "STANDARD", "PREMIUM"), 0)
    if latest is not None:
        start = latest.ts
        for treatment in counters:
            last = DeviceEvent.objects.filter(device=device, treatment=treatment).order_by("-ts").first()
            counters[treatment] = (last.counter or 0) if last else 0
    rng = random.Random(f"{device.device_id}-{start.timestamp()}")  # noqa: S311 (demo data)
    legacy = device.mac in LEGACY_MACS
    events, moment = [], start.replace(second=0, microsecond=0)
    while True:
        busy = 8 <= moment.hour < 20
        step = rng.randint(4, 12) if busy and abs(moment.hour - 13) < 3 else rng.randint(10, 40)
        moment += timedelta(minutes=step if busy else 60)
        if moment >= now:
            break
        if not (8 <= moment.hour < 20) or (legacy and rng.random() < 0.7):
            continue
        treatment = rng.choice(TREATMENTS)
        counters[treatment] += 1
        stamp = f"{moment:%Y%m%d%H%M}"
        mac = (device.mac or "").replace(":", "").lower()
        event_id = f"legacy-{mac}-{stamp}00-{treatment}" if legacy else f"{device.device_id}-{stamp}"
        events.append(
            DeviceEvent(
                event_id=event_id,
                device=device,
                treatment=treatment,
                counter=counters[treatment],
                ts=moment,
                firmware=device.firmware,
                source="legacy" if legacy else "api",
            )
        )
    DeviceEvent.objects.bulk_create(events, batch_size=2000, ignore_conflicts=True)
    return len(events)

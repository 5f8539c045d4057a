"""Locks and PIN codes for tests (imported by tests/locks and the browser and bridge tests)."""

import threading

from django.db import connection
from django_tenants.utils import schema_context
from helpers import committed

from portal.locks.models import Lock, PinCode
from telemetry.models import Device


def make_lock(lock_id="front-door", name="Front door", site=None, **fields) -> Lock:
    device = Device.objects.create(device_id=lock_id, name=name, kind=Device.Kind.LOCK)
    return Lock.objects.create(device=device, name=name, site=site, **fields)


def make_pin(lock: Lock, pin="482913", label="Cleaning service", **fields) -> PinCode:
    return PinCode.make(lock, label, pin, **fields)[0]


def remove_lock_and_traces(lock_id: str) -> None:
    """Delete a lock a test committed, with all it left behind in the schema: its readings and
    rollups (not tied to the sensor rows by a constraint), security events, alerts, and the default
    security rule its creation brought when no other lock remains."""
    from portal.alerts.models import Alert, AlertRule, SecurityEvent
    from portal.locks.alerting import SECURITY_RULE
    from telemetry.models import DailyRollup, DirtyHour, HourlyRollup, Reading, Sensor

    device = Device.objects.filter(device_id=lock_id).first()
    if device is None:
        return
    sensors = list(Sensor.objects.filter(device=device).values_list("pk", flat=True))
    for model in (Reading, HourlyRollup, DailyRollup, DirtyHour):
        model.objects.filter(sensor_id__in=sensors).delete()
    Alert.objects.filter(device_id=device.pk).delete()
    SecurityEvent.objects.filter(device=device).delete()
    device.delete()
    if not Lock.objects.exists():
        AlertRule.objects.filter(name=SECURITY_RULE).delete()


def race(schema, work, n):
    """Run `work` on n threads at once, each with a connection of its own; their results."""
    results, barrier = [], threading.Barrier(n)

    def run():
        try:
            with schema_context(schema):
                barrier.wait()
                results.append(work())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def in_acme_committed(work):
    def run():
        with schema_context("acme"):
            return work()

    return committed(run)


def own_copies(lock, n):
    """n instances of the lock, loaded before the race: one Lock shared by the racing threads would
    see the lockout the losers' failures open (each request loads its own, before deciding)."""
    copies = in_acme_committed(lambda: [Lock.objects.select_related("device").get(pk=lock.pk) for _ in range(n)])
    return iter(copies)

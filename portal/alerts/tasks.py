"""Huey tasks of the alert engine, all per tenant (portal.tenancy.tasks): evaluation after each
ingest batch and every minute, device events, and notification delivery with its sweep.

Every process that ingests imports this module (its receivers enqueue evaluate_batch), the bridge
among them; the bodies import the engine and delivery code when they run, so only the worker
loads it.
"""

from datetime import UTC, datetime

from django.utils import timezone
from huey import crontab

from portal.tenancy.tasks import tenant_periodic_task, tenant_task


def from_epochs(rejected: dict) -> dict[int, list]:
    return {
        int(sensor): [(datetime.fromtimestamp(ts, UTC), *rest) for ts, *rest in rows]
        for sensor, rows in rejected.items()
    }


@tenant_task()
def evaluate_batch(sensor_ids: list, since: float, until: float, rejected: dict) -> int:
    """A committed batch: the sensors some rule watches that it brought readings for, the span of
    those readings (epochs), and its impossible values {sensor id: [(epoch, value, reason)]}."""
    from portal.alerts import engine

    span = (datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC))
    return engine.evaluate_stored(sensor_ids, *span, from_epochs(rejected))


@tenant_task()
def evaluate_device(device_id: int) -> int:
    from portal.alerts import engine

    return engine.evaluate_device(device_id)


@tenant_periodic_task(crontab(minute="*"))
def evaluate_rules() -> dict:
    """Time-based conditions (no data, offline, pending and recovering timers), data-quality
    alerts that cleared, and repeat notifications of alerts that stay open."""
    from portal.alerts import alerting, engine, notify

    now = timezone.now()
    return {
        "changed": engine.evaluate_now(now=now),
        "data_quality_resolved": alerting.resolve_data_quality(now),
        "repeats": notify.repeat_due(now),
    }


@tenant_task()
def dispatch_channel_task(channel_id: int):
    from portal.alerts import delivery

    return delivery.dispatch_channel(channel_id)


@tenant_task()
def deliver_task(delivery_id: int):
    from portal.alerts import delivery

    return delivery.deliver(delivery_id)


@tenant_periodic_task(crontab(minute="*"))
def sweep_deliveries() -> dict:
    from portal.alerts import delivery

    return delivery.sweep()

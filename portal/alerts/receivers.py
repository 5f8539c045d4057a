"""Where telemetry meets the alert engine: the signals it sends, and the index's invalidation."""

from django.db import connection
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from django_tenants.utils import schema_context

from portal.alerts import rules, targets, tasks
from portal.alerts.models import AlertRule, RuleCondition, SecurityEvent, Severity
from portal.facilities.models import DeviceBinding
from telemetry.models import Sensor, online_window
from telemetry.signals import device_event, readings_stored


@receiver(readings_stored)
def readings_committed(sender, schema: str, rows: dict, rejected: dict, **kwargs) -> None:
    """Enqueue evaluation for the sensors of the batch that some rule watches; nothing else.
    This runs in the ingest process after every batch (the bridge waits for it before it acks),
    so it hands over only which sensors and when: the task reads the committed values back. With
    no matching rule it costs a set intersection (bench/rules.py measures both cases)."""
    with schema_context(schema):
        watched = rules.current_index().by_sensor
        if not watched:
            return
        hits = {sensor_id for sensor_id, _ in rows} & watched.keys()
        hit_rejected = {sid: r for sid, r in rejected.items() if sid in watched}
        if not hits and not hit_rejected:
            return
        live = timezone.now() - online_window()  # older readings are stored but move no live state
        recent = [(sensor_id, ts) for sensor_id, ts in rows if sensor_id in hits and ts >= live]
        failed = {
            sid: [(ts.timestamp(), str(value)[:40], reason) for ts, value, reason in r]
            for sid, r in hit_rejected.items()
        }
        if not recent and not failed:
            return
        times = [ts for _, ts in recent] or [live]
        sensors = sorted({sensor_id for sensor_id, _ in recent})
        tasks.evaluate_batch(connection.schema_name, sensors, min(times).timestamp(), max(times).timestamp(), failed)


@receiver(device_event)
def device_event_received(
    sender, device, kind, severity="medium", message="", occurred_at=None, details=None, resolved=False, **kwargs
):
    """Keep the event (rules and timelines read it), then evaluate the rules watching the device."""
    SecurityEvent.objects.create(
        device=device,
        kind=str(kind)[:40],
        severity=severity if severity in Severity.values else Severity.MEDIUM,
        message=str(message)[:300],
        occurred_at=occurred_at or timezone.now(),
        details=details if isinstance(details, dict) else {},
        resolved=bool(resolved),
    )
    if device.pk in rules.current_index().by_device:
        tasks.evaluate_device(connection.schema_name, device.pk)


# What a rule covers changes with these saves; fleet apps name theirs in their alerting module
# (INDEX_MODELS: a machine's device binding, a lock's site).
INDEX_MODELS = [AlertRule, RuleCondition, Sensor, DeviceBinding] + [
    model for module in targets.fleet_modules() for model in getattr(module, "INDEX_MODELS", [])
]
for model in INDEX_MODELS:
    post_save.connect(rules.bump_version, sender=model, dispatch_uid=f"alerts-index-{model.__name__}-save")
    post_delete.connect(rules.bump_version, sender=model, dispatch_uid=f"alerts-index-{model.__name__}-delete")

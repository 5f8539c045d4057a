"""Keeping what depends on locks current: the public lock-id registry, the default security rule and
the alert rules' index."""

from django.db import connection
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from portal.alerts.rules import bump_version
from portal.locks.alerting import ensure_security_rule
from portal.locks.models import Lock
from portal.tenancy.models import LockRoute, Tenant


@receiver(post_save, sender=Lock, dispatch_uid="locks-route-save")
def route_saved(sender, instance: Lock, created: bool, **kwargs) -> None:
    """Register the lock's id for seed 004's tenant-less topics (the form checked it is free)."""
    if created:
        tenant = Tenant.objects.get(schema_name=connection.schema_name)
        LockRoute.objects.get_or_create(lock_id=instance.device.device_id, defaults={"tenant": tenant})
        ensure_security_rule()


@receiver(post_delete, sender=Lock, dispatch_uid="locks-route-delete")
def route_deleted(sender, instance: Lock, **kwargs) -> None:
    LockRoute.objects.filter(lock_id=instance.device.device_id, tenant__schema_name=connection.schema_name).delete()


# a rule on "every lock" covers a new lock at once
post_save.connect(bump_version, sender=Lock, dispatch_uid="locks-alerts-index-save")
post_delete.connect(bump_version, sender=Lock, dispatch_uid="locks-alerts-index-delete")

"""Keeping the broker in step (portal.devices.broker): a lock's device key is its MQTT password
(seed 004's locks present it), a deleted device's client goes from the broker, and a tenant
suspended or active again, by whichever process (the console, a script, the admin), has its
devices' clients disabled or enabled at once."""

from django.conf import settings
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from portal.tenancy.models import Tenant
from portal.tenancy.tasks import enqueue_quietly
from telemetry.models import Device, MqttCredential
from telemetry.signals import device_key_changed


def tenant_slug() -> str:
    return Tenant.objects.values_list("slug", flat=True).get(schema_name=connection.schema_name)


@receiver(device_key_changed, dispatch_uid="devices-lock-mqtt-key")
def lock_key_changed(sender, device: Device, key: str | None, **kwargs) -> None:
    """A lock's key issued or rotated: its MQTT credentials take it as their secret; revoked: they
    are revoked too. The broker learns it once the change is committed (a retried task)."""
    if device.kind != Device.Kind.LOCK:
        return
    from portal.devices.tasks import sync_mqtt_credential

    if key is not None:
        MqttCredential.issue(device, MqttCredential.username_for(tenant_slug(), device.device_id), raw=key)
    else:
        for credential in MqttCredential.objects.filter(device=device, revoked_at=None):
            credential.revoke()
    schema, pk = connection.schema_name, device.pk
    transaction.on_commit(lambda: enqueue_quietly(sync_mqtt_credential, schema, pk, key))


@receiver(post_delete, sender=MqttCredential, dispatch_uid="devices-mqtt-forget")
def credential_deleted(sender, instance: MqttCredential, **kwargs) -> None:
    """Its device deleted: the broker forgets the client (and a lock's own role)."""
    from portal.devices.tasks import forget_mqtt_client

    username, schema = instance.username, connection.schema_name
    transaction.on_commit(lambda: enqueue_quietly(forget_mqtt_client, schema, username))


@receiver(post_save, sender=Tenant, dispatch_uid="devices-mqtt-tenant")
def tenant_saved(sender, instance: Tenant, created: bool, update_fields=None, **kwargs) -> None:
    """Suspended or reactivated: the broker disables or enables its devices' clients (a new tenant
    has none yet, and its schema is made after this signal)."""
    if created or instance.schema_name == settings.PUBLIC_SCHEMA_NAME:
        return
    if update_fields is not None and "is_active" not in update_fields:
        return
    from portal.devices.tasks import sync_mqtt_tenant

    schema = instance.schema_name
    transaction.on_commit(lambda: enqueue_quietly(sync_mqtt_tenant, schema))


@receiver(post_delete, sender=Tenant, dispatch_uid="devices-mqtt-tenant-delete")
def tenant_deleted(sender, instance: Tenant, **kwargs) -> None:
    """A tenant deleted: its devices' clients and its roles leave the broker (a tenant made later
    with the same slug must not inherit them). Its schema is gone by now, so the broker is asked
    for them: every username of a tenant starts "<slug>." (slugs hold no dot)."""
    from portal.devices.tasks import forget_mqtt_tenant

    if instance.schema_name != settings.PUBLIC_SCHEMA_NAME:
        slug = instance.slug
        transaction.on_commit(lambda: enqueue_quietly(forget_mqtt_tenant, slug))

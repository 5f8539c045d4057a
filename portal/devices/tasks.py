"""Background telemetry work for every tenant: rollups each minute, raw and dead-letter retention nightly."""

from django.db import connection
from huey import crontab
from huey.contrib.djhuey import db_task

from portal.tenancy.tasks import tenant_periodic_task, tenant_task
from telemetry import deadletters, rollups


@tenant_periodic_task(crontab(minute="*"))
def roll_up_readings() -> int:
    """Recompute the hours the ingest path marked (idempotent: safe to repeat or overlap)."""
    return rollups.roll_up()


@tenant_periodic_task(crontab(hour="2", minute="41"))
def purge_raw_readings() -> int:
    """Delete raw readings past the tenant's retention, in batches; rollups stay."""
    return rollups.purge_raw_readings()


@tenant_periodic_task(crontab(hour="2", minute="53"))
def purge_dead_letters() -> int:
    """Delete dead letters past the tenant's retention (TelemetrySettings, 30 days by default)."""
    return deadletters.purge_expired()


@tenant_task(retries=5, retry_delay=10)
def sync_mqtt_credential(device_pk: int, secret: str | None = None) -> bool:
    """Bring the broker's client for this device in line with its credential (portal.devices.broker);
    `secret` only when it was just issued or rotated. Retried while the broker is away."""
    from portal.devices import broker
    from portal.tenancy.models import Tenant
    from telemetry.models import MqttCredential

    credential = MqttCredential.objects.filter(device_id=device_pk).first()
    if credential is None or not broker.managed():
        return False
    tenant = Tenant.objects.get(schema_name=connection.schema_name)
    broker.apply_credential(tenant.slug, credential, tenant_active=tenant.is_active, secret=secret)
    return True


@tenant_task(retries=5, retry_delay=10)
def forget_mqtt_client(username: str) -> bool:
    """A device deleted: its client (and a lock's own role) leave the broker."""
    from portal.devices import broker

    if not broker.managed():
        return False
    broker.DynamicSecurity().run(broker.forget_commands(username))
    return True


@db_task(retries=5, retry_delay=10)
def forget_mqtt_tenant(slug: str) -> bool:
    """A tenant deleted: its devices' clients, their lock roles and its role leave the broker."""
    from portal.devices import broker

    if not broker.managed():
        return False
    admin = broker.DynamicSecurity()
    admin.run(broker.tenant_forget_commands(admin, slug))
    return True


@tenant_task(retries=5, retry_delay=10)
def sync_mqtt_tenant() -> bool:
    """A tenant suspended or active again: its devices' clients disabled or enabled at once (those
    the broker lost are marked so, as mqtt_sync does)."""
    from portal.devices import broker
    from portal.tenancy.models import Tenant

    if not broker.managed():
        return False
    admin = broker.DynamicSecurity()
    tenant = Tenant.objects.get(schema_name=connection.schema_name)
    admin.run(broker.tenant_commands(tenant, broker.broker_clients(admin)))
    return True

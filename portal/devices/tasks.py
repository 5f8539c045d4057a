"""Background telemetry work for every tenant: rollups each minute, raw retention nightly."""

from huey import crontab

from portal.tenancy.tasks import tenant_periodic_task
from telemetry import rollups


@tenant_periodic_task(crontab(minute="*"))
def roll_up_readings() -> int:
    """Recompute the hours the ingest path marked (idempotent: safe to repeat or overlap)."""
    return rollups.roll_up()


@tenant_periodic_task(crontab(hour="2", minute="41"))
def purge_raw_readings() -> int:
    """Delete raw readings past the tenant's retention, in batches; rollups stay."""
    return rollups.purge_raw_readings()

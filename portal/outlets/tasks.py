"""Background work of the outlets app: usage rollups every minute in each tenant."""

from huey import crontab

from portal.outlets import usage
from portal.tenancy.tasks import tenant_periodic_task


@tenant_periodic_task(crontab(minute="*"))
def roll_up_usage() -> int:
    """Recompute the usage buckets new events, binding changes and flushes touched (idempotent:
    a repeat or an overlap recomputes the same rows; a lock on the cursor row serialises runs)."""
    return usage.roll_up_usage()

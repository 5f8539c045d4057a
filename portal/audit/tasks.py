from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from huey import crontab

from portal.audit.models import AuditLog
from portal.tenancy.tasks import tenant_periodic_task

PURGE_BATCH = 5000


@tenant_periodic_task(crontab(hour="3", minute="17"))
def purge_old_audit_rows() -> int:
    """Delete audit rows past the retention period, in batches so no lock is held for long."""
    cutoff = timezone.now() - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(AuditLog.objects.filter(created_at__lt=cutoff).values_list("id", flat=True)[:PURGE_BATCH])
        if not ids:
            return deleted
        deleted += AuditLog.objects.filter(id__in=ids).delete()[0]

from django.conf import settings
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from portal.audit.tasks import purge_old_audit_rows


@db_periodic_task(crontab(hour="3", minute="23"))
def purge_old_console_audit_rows() -> int:
    """The console's audit log (public schema) keeps the same retention as every tenant's."""
    return purge_old_audit_rows.call_local(settings.PUBLIC_SCHEMA_NAME)

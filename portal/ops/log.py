"""The console's audit trail: every operator action goes into the public schema's audit log.

The same AuditLog model and record() as a tenant's log, in the public schema (portal.audit is a
shared app too), always naming the tenant acted on. Actions that change a tenant (suspension,
domains) are also written to that tenant's own log, so its administrators see what the operator did.

Staff reading a tenant's data are recorded as well (seed 001: who, when, which tenant): a tenant's
page (its members), the cross-tenant telemetry query, its drill-down and its CSV. Those rows
change nothing, so the tenant page's list of console actions leaves them out (READS).
"""

from django.conf import settings
from django_tenants.utils import schema_context

from portal.audit.log import record

READS = ("tenant.viewed", "telemetry.queried", "telemetry.drilled_down")


def record_ops(request, action: str, tenant, changes: dict | None = None, *, tell_tenant: bool = False) -> None:
    """tenant: the tenant acted on (None for an action over all tenants, e.g. an export)."""
    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        record(request, action, tenant, changes)
    if tell_tenant and tenant is not None:
        with schema_context(tenant.schema_name):
            record(request, action, tenant, changes)

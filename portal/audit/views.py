import json

from portal.audit.filters import AuditLogFilter
from portal.audit.models import AuditLog
from portal.core.lists import Column, list_response
from portal.tenancy.access import role_required
from portal.tenancy.models import Role

AUDIT_COLUMNS = [
    Column("time", "created_at"),
    Column("actor", "actor_email"),
    Column("action", "action"),
    Column("object_type", "object_type"),
    Column("object_id", "object_id"),
    Column("object", "object_repr"),
    Column("changes", lambda row: json.dumps(row.changes, sort_keys=True)),
    Column("ip", "ip"),
]


@role_required(Role.ADMIN)
def audit_log(request):
    filterset = AuditLogFilter(request.GET, queryset=AuditLog.objects.all())
    return list_response(request, filterset, "audit/list.html", AUDIT_COLUMNS, "audit-log")

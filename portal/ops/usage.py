"""A tenant's figures for the console: counts, today's readings, open alerts, health, last activity.

Each tenant is measured inside its own schema, one query of sub-selects per tenant: the console
never writes a query that spans schemas (the tenant schemas may live on different nodes, see
DESIGN.md), so a page of 50 tenants costs 50 small queries. Sorting by these figures across all
tenants would need them in one table; the list sorts by the tenant's own columns instead.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count
from django.utils import timezone
from django_tenants.utils import schema_context

from portal.alerts.models import Alert
from portal.audit.models import AuditLog
from portal.facilities.models import Asset, Site
from telemetry.models import DeadLetter, Device, Reading, Sensor, online_window


@dataclass(frozen=True)
class Usage:
    sites: int
    assets: int
    devices: int
    sensors: int
    readings_today: int
    open_alerts: int
    devices_online: int
    dead_letters_day: int
    last_seen: datetime | None  # the newest device contact
    last_change: datetime | None  # the newest audited change by a person

    @property
    def last_activity(self) -> datetime | None:
        moments = [moment for moment in (self.last_seen, self.last_change) if moment is not None]
        return max(moments, default=None)

    @property
    def devices_offline(self) -> int:
        return self.devices - self.devices_online


def table(model) -> str:
    return model._meta.db_table


# Last activity reads indexed columns only (device last_seen, audit created_at): max(ts) over
# readings has no index to use (the readings' key starts with the sensor).
USAGE_SQL = f"""
SELECT (SELECT count(*) FROM {table(Site)}),
       (SELECT count(*) FROM {table(Asset)}),
       (SELECT count(*) FROM {table(Device)}),
       (SELECT count(*) FROM {table(Sensor)}),
       (SELECT count(*) FROM {table(Reading)} WHERE ts >= %(today)s),
       (SELECT count(*) FROM {table(Alert)} WHERE resolved_at IS NULL),
       (SELECT count(*) FROM {table(Device)} WHERE last_seen >= %(online_since)s),
       (SELECT count(*) FROM {table(DeadLetter)} WHERE received_at >= %(day_ago)s),
       (SELECT max(last_seen) FROM {table(Device)}),
       (SELECT max(created_at) FROM {table(AuditLog)})
"""


def start_of_today(tenant) -> datetime:
    """Midnight in the tenant's time zone: "readings today" is the tenant's day."""
    local = timezone.now().astimezone(tenant.zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def measure(tenant) -> Usage:
    now = timezone.now()
    params = {
        "today": start_of_today(tenant),
        "online_since": now - online_window(),
        "day_ago": now - timedelta(days=1),
    }
    with schema_context(tenant.schema_name), connection.cursor() as cursor:
        cursor.execute(USAGE_SQL, params)
        return Usage(*cursor.fetchone())


def usage_of(tenant) -> Usage:
    """The tenant's figures, measured once per tenant instance (pages and CSV rows ask repeatedly)."""
    if "usage" not in tenant.__dict__:
        tenant.usage = measure(tenant)
    return tenant.usage


def attach_usage(tenants) -> None:
    for tenant in tenants:
        usage_of(tenant)


def dead_letters_by_reason(tenant, since: datetime, limit: int = 10) -> list[tuple[str, int]]:
    with schema_context(tenant.schema_name):
        rows = (
            DeadLetter.objects.filter(received_at__gte=since)
            .values_list("reason")
            .annotate(n=Count("id"))
            .order_by("-n", "reason")[:limit]
        )
        return list(rows)

"""Ingest health across tenants, for the console's live page.

Per tenant, in its own schema: readings per minute over the last MINUTES minutes (by reading
time: live devices stamp readings as they send them), dead letters of the last day by reason, and
notification deliveries that failed in the last day. Around them: the dead letters no tenant
claims (public schema), every bridge's heartbeat and status line, and the task queue's depth.

fingerprint() is the live cursor: the page polls every few seconds and gets 204 while nothing
it shows has changed (bridge beat times are left out: they change on every beat).
"""

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from django_tenants.utils import schema_context

from portal.alerts.models import Delivery
from portal.core.models import ProcessHeartbeat
from portal.tenancy.models import Tenant
from telemetry.models import DeadLetter, Reading

MINUTES = 15


@dataclass
class TenantIngest:
    slug: str
    name: str
    is_active: bool
    per_minute: list[int]  # oldest first, the current (partial) minute last
    dead_letters: dict[str, int]
    failed_notifications: int

    @property
    def last_minute(self) -> int:
        return self.per_minute[-2]  # the last whole minute

    @property
    def dead_letter_total(self) -> int:
        return sum(self.dead_letters.values())


@dataclass
class Snapshot:
    minutes: list[datetime]
    tenants: list[TenantIngest]
    unclaimed_dead_letters: dict[str, int]
    bridges: list
    queue_depth: int | None
    queue_error: str = ""
    totals: list[int] = field(default_factory=list)

    @property
    def dead_letters(self) -> dict[str, int]:
        merged = dict(self.unclaimed_dead_letters)
        for tenant in self.tenants:
            for reason, n in tenant.dead_letters.items():
                merged[reason] = merged.get(reason, 0) + n
        return dict(sorted(merged.items(), key=lambda item: (-item[1], item[0])))

    @property
    def dead_letter_total(self) -> int:
        return sum(self.dead_letters.values())

    @property
    def last_minute(self) -> int:
        return self.totals[-2]  # the last whole minute, all tenants

    @property
    def failed_notifications(self) -> int:
        return sum(t.failed_notifications for t in self.tenants)

    def fingerprint(self) -> str:
        bridges = [(b.name, b.alive, b.stats.get("line"), b.stats.get("connected")) for b in self.bridges]
        figures = (
            self.minutes[-1],
            [(t.slug, t.per_minute, t.dead_letters, t.failed_notifications) for t in self.tenants],
        )
        text = repr((figures, self.unclaimed_dead_letters, bridges, self.queue_depth, self.queue_error))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def minute_starts(now: datetime) -> list[datetime]:
    current = now.replace(second=0, microsecond=0)
    return [current - timedelta(minutes=n) for n in reversed(range(MINUTES))]


def readings_per_minute(minutes: list[datetime]) -> list[int]:
    """Readings of the current schema per minute; one range scan (the readings' BRIN on ts)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT date_part('epoch', date_bin('60 seconds', ts, 'epoch'))::bigint, count(*) "
            f"FROM {Reading._meta.db_table} WHERE ts >= %s AND ts < %s GROUP BY 1",
            [minutes[0], minutes[-1] + timedelta(minutes=1)],
        )
        counts = dict(cursor.fetchall())
    return [counts.get(int(minute.timestamp()), 0) for minute in minutes]


def dead_letters_since(since: datetime) -> dict[str, int]:
    rows = DeadLetter.objects.filter(received_at__gte=since).values_list("reason").annotate(n=Count("id"))
    return dict(rows)


def measure_tenant(tenant, minutes: list[datetime], day_ago: datetime) -> TenantIngest:
    with schema_context(tenant.schema_name):
        failed = Delivery.objects.filter(status=Delivery.Status.FAILED, finished_at__gte=day_ago).count()
        return TenantIngest(
            tenant.slug,
            tenant.name,
            tenant.is_active,
            readings_per_minute(minutes),
            dead_letters_since(day_ago),
            failed,
        )


def queue_depth() -> tuple[int | None, str]:
    from huey.contrib.djhuey import HUEY

    try:
        return HUEY.pending_count(), ""
    except Exception as error:  # the queue being away is what this page must show, not a 500
        return None, f"{type(error).__name__}: {error}"[:200]


def snapshot(now: datetime | None = None) -> Snapshot:
    now = now or timezone.now()
    minutes = minute_starts(now.astimezone(UTC))
    day_ago = now - timedelta(days=1)
    tenants = [measure_tenant(t, minutes, day_ago) for t in Tenant.objects.customers().order_by("name")]
    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        unclaimed = dead_letters_since(day_ago)
        bridges = list(ProcessHeartbeat.objects.filter(kind="bridge").order_by("name"))
    depth, error = queue_depth()
    totals = [sum(t.per_minute[n] for t in tenants) for n in range(MINUTES)]
    return Snapshot(minutes, tenants, unclaimed, bridges, depth, error, totals)

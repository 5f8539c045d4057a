"""Huey tasks of the locks, each run inside one tenant's schema (portal.tenancy.tasks).

Per command: `expire_command`, scheduled by LockCommand.issue for the command's deadline, expires
it then if the lock did not answer. Periodic (fanned out over active tenants): the same expiry as a
safety net for a schedule lost with the queue, and the end of finished lockouts (every minute), connectivity (every 5 minutes), suspicious addresses (every 15 minutes), time sync
(daily 03:00 UTC), expired-access clean-up (daily 02:00), access-log archive (Sundays 04:00). On
demand: code emails and the monthly report. The steps are plain functions (`expire_due()`…) that
tests call directly with the clock frozen.
"""

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone
from huey import crontab

from portal.locks import access
from portal.locks.models import AccessLog, Lock, LockCommand, PinCode, QrCode, open_commands, settle_open
from portal.tenancy.tasks import tenant_periodic_task, tenant_task
from telemetry.models import TelemetrySettings, online_window


def expire_due(now: datetime | None = None, pks: list[int] | None = None) -> int:
    """Expire every open command past its deadline (of `pks` only, when given), once each; each
    raises a security event (the alert engine opens an alert through a rule on it) and an
    unanswered unlock is in the access log."""
    from portal.locks.topics import apply_settled

    now = now or timezone.now()
    expired = 0
    due = open_commands().filter(expires_at__lte=now)
    if pks is not None:
        due = due.filter(pk__in=pks)
    for command in due.select_related("lock__device", "lock__site"):
        seconds = round((command.expires_at - command.created_at).total_seconds())
        detail = f"no answer from the lock within {seconds} s"
        with transaction.atomic():
            if not settle_open(command.request_id, LockCommand.State.EXPIRED, detail, now):
                continue  # the response won the race
            command.state = LockCommand.State.EXPIRED
            apply_settled(command.lock, command, {}, now)
            message = f"{command.get_kind_display()} command to {command.lock.name} got no answer within {seconds} s"
            access.announce(
                command.lock, "command_expired", "medium", message, now, {"request_id": str(command.request_id)}
            )
        expired += 1
    return expired


def release_due(now: datetime | None = None) -> int:
    now = now or timezone.now()
    return sum(access.release_lockout(lock, now) for lock in Lock.objects.filter(keypad_disabled_until__lte=now))


def check_connectivity(now: datetime | None = None) -> int:
    """Announce locks that went silent past the online window (and those that came back), once per change."""
    now = now or timezone.now()
    cutoff = now - online_window()
    changed = 0
    silent = Q(device__last_seen__lt=cutoff) | Q(device__last_seen__isnull=True)
    for lock in Lock.objects.filter(silent, offline_announced=False).select_related("device", "site"):
        if Lock.objects.filter(pk=lock.pk, offline_announced=False).update(offline_announced=True):
            seen = lock.device.last_seen
            message = (
                f"{lock.name} has not been heard from since {timezone.localtime(seen, lock.zone):%Y-%m-%d %H:%M}"
                if seen
                else f"{lock.name} has never reported"
            )
            access.announce(lock, "offline", "high", message, now, {"last_seen": seen.isoformat() if seen else None})
            changed += 1
    for lock in Lock.objects.filter(device__last_seen__gte=cutoff, offline_announced=True).select_related("device"):
        if Lock.objects.filter(pk=lock.pk, offline_announced=True).update(offline_announced=False):
            access.announce(lock, "offline", "high", f"{lock.name} reports again.", now, {}, resolved=True)
            changed += 1
    return changed


def sync_time(now: datetime | None = None) -> int:
    now = now or timezone.now()
    locks = list(Lock.objects.select_related("device"))
    for lock in locks:
        LockCommand.issue(lock, LockCommand.Kind.TIME_SYNC, {"time": now.isoformat()}, source="system")
    return len(locks)


@tenant_task()
def expire_command(pk: int) -> int:
    """At the command's deadline (scheduled by LockCommand.issue): expired, unless answered meanwhile."""
    return expire_due(pks=[pk])


def schedule_expiry(command: LockCommand) -> None:
    """Ask the worker to expire `command` at its deadline. A queue that is down loses only the
    promptness: the minute's sweep (lock_minute) expires it all the same."""
    schema = connection.schema_name
    try:
        expire_command.schedule(args=(schema, command.pk), eta=command.expires_at)
    except Exception:
        logging.getLogger(__name__).exception("could not schedule the expiry of command %s", command.pk)


@tenant_periodic_task(crontab(minute="*"))
def lock_minute() -> dict:
    return {"expired": expire_due(), "lockouts_released": release_due()}


@tenant_periodic_task(crontab(minute="*/5"))
def lock_connectivity() -> int:
    return check_connectivity()


@tenant_periodic_task(crontab(minute="0", hour="3"))
def lock_time_sync() -> int:
    return sync_time()


def clean_up_expired(now: datetime | None = None) -> dict:
    """Retire codes that can never open again (past their end, or out of uses); the locks are told
    to remove the PINs. Guests' codes go with them; their GuestAccess rows stay as history."""
    from portal.locks.code_views import sync

    now = now or timezone.now()
    over = Q(valid_until__lte=now) | Q(max_uses__isnull=False, uses__gte=F("max_uses"))
    pins = list(PinCode.objects.filter(over, active=True).select_related("lock__device", "lock__site"))
    by_lock = defaultdict(list)
    with transaction.atomic():
        PinCode.objects.filter(pk__in=[pin.pk for pin in pins]).update(active=False)
        for pin in pins:
            by_lock[pin.lock_id].append(pin)
        for lock_pins in by_lock.values():
            sync(lock_pins[0].lock, lock_pins, "remove", source="system")
        qr_codes = QrCode.objects.filter(over, active=True).update(active=False)
    return {"pins": len(pins), "qr_codes": qr_codes}


def detect_suspicious(now: datetime | None = None) -> int:
    """Seed 004's detect_suspicious_activity: addresses with LOCK_SUSPICIOUS_FAILURES or more
    failures across locks in the window are flagged and blocked (the access check also does it
    at once; this sweep catches failures that came through several processes at the same time)."""
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.LOCK_LOCKOUT_WINDOW_SECONDS)
    suspicious = (
        AccessLog.objects.filter(success=False, ip__isnull=False, at__gte=since)
        .exclude(reason__in=access.NOT_COUNTED)
        .values("ip")
        .annotate(failures=Count("id"), last=Max("id"))
        .filter(failures__gte=settings.LOCK_SUSPICIOUS_FAILURES)
    )
    flagged = 0
    for row in suspicious:
        entry = AccessLog.objects.select_related("lock__device", "lock__site").get(pk=row["last"])
        flagged += access.flag_address(row["ip"], entry.lock, now)
    return flagged


def archive_access_logs(now: datetime | None = None) -> dict:
    """Access logs older than the tenant's retention (TelemetrySettings.access_log_retention_days,
    90 by default as seed 004) are written to a CSV file in the default storage, then deleted."""
    from portal.audit.log import record
    from portal.core.lists import csv_rows
    from portal.locks.log_views import ACCESS_COLUMNS

    now = now or timezone.now()
    days = TelemetrySettings.current().access_log_retention_days
    cutoff = now - timedelta(days=days)
    old = AccessLog.objects.filter(at__lt=cutoff).select_related("lock__device").order_by("at", "id")
    last = old.aggregate(last=Max("id"))["last"]
    if last is None:
        return {"archived": 0}
    batch = old.filter(id__lte=last)
    count = batch.count()
    name = f"access-logs/{connection.schema_name}/before-{cutoff:%Y%m%d}-{now:%H%M%S}.csv"
    content = "".join(csv_rows(batch, ACCESS_COLUMNS))
    stored = default_storage.save(name, ContentFile(content.encode()))
    with transaction.atomic():
        deleted, _ = AccessLog.objects.filter(at__lt=cutoff, id__lte=last).delete()
        record(
            None,
            "lock.access_log.archived",
            changes={"file": stored, "rows": count, "before": cutoff.isoformat()},
            object_type="locks.accesslog",
            object_repr=stored[:200],
        )
    return {"archived": deleted, "file": stored}


@tenant_periodic_task(crontab(minute="*/15"))
def lock_suspicious() -> int:
    return detect_suspicious()


@tenant_periodic_task(crontab(minute="0", hour="2"))
def lock_clean_up() -> dict:
    return clean_up_expired()


@tenant_periodic_task(crontab(minute="0", hour="4", day_of_week="0"))
def lock_archive() -> dict:
    return archive_access_logs()


@tenant_periodic_task(crontab(minute="0", hour="6", day="1"))
def lock_monthly_reports() -> int:
    """Last month's report of every lock, to the organisation's owners and admins."""
    from portal.locks import report

    today = timezone.localdate()
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    return report.email_reports(list(Lock.objects.select_related("site", "device")), last_month, report.managers())


@tenant_task(retries=2, retry_delay=60)
def send_report(lock_pk: int, month: str, email: str) -> int:
    """One lock's report of `month` (YYYY-MM) to one person (the page's "email it to me")."""
    from portal.locks import report

    lock = Lock.objects.select_related("site", "device").filter(pk=lock_pk).first()
    parsed = report.parse_month(month)
    if lock is None or parsed is None:
        return 0
    return report.email_reports([lock], parsed, [email])

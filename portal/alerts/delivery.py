"""Delivering notifications: dispatch per channel, send, record every attempt, retry with backoff.

dispatch_channel() gathers a channel's due notifications into one Delivery (a message) and
deliver() sends it. A delivery is claimed by a conditional update (pending/retrying → sending),
so two workers never send one twice; each attempt is a DeliveryAttempt row (status code, error,
time). Failures retry after BACKOFF × 2^(n-1) seconds up to MAX_ATTEMPTS, then fail for good.
Nothing is "sent" that was not: SMS and WhatsApp have no provider and say "skipped".

A worker killed mid-delivery leaves its row in "sending": sweep() (every minute) records the
interrupted attempt and sends again, with the same idempotency key, so a receiver that did get
the first copy can tell. It also picks up retries and dispatches whose Huey task was lost.

Throughput: a delivery costs three database round trips (claim, read, one statement that records
the attempt and the outcome; the tenant's address is read once a minute) and, for webhooks, one
request on a kept-alive connection from a per-process pool (urllib3), keyed by the address the
SSRF guard checked, so a channel's deliveries do not each open a TCP (and TLS) connection.
"""

import functools
import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from portal.alerts.models import Channel, Delivery, DeliveryAttempt, Notification

Status = Delivery.Status
NO_PROVIDER = "skipped: no provider configured"


@dataclass
class Outcome:
    ok: bool = False
    status_code: int | None = None
    error: str = ""
    skipped: str = ""  # a reason: final, nothing was attempted
    final: bool = False  # a failure retrying cannot fix (an address we refuse)


# --- scheduling ---------------------------------------------------------------------------------


def schedule_dispatch(channel_id: int, due: datetime) -> None:
    from portal.alerts import tasks

    delay = (due - timezone.now()).total_seconds()
    if delay <= 0:
        tasks.dispatch_channel_task(connection.schema_name, channel_id)
    else:
        tasks.dispatch_channel_task.schedule((connection.schema_name, channel_id), delay=delay)


def schedule_delivery(delivery_id: int, delay: float = 0) -> None:
    from portal.alerts import tasks

    if delay <= 0:
        tasks.deliver_task(connection.schema_name, delivery_id)
    else:
        tasks.deliver_task.schedule((connection.schema_name, delivery_id), delay=delay)


def dispatch_channel(channel_id: int, now: datetime | None = None) -> int | None:
    """Gather the channel's due, undispatched notifications into one delivery; returns its id."""
    now = now or timezone.now()
    with transaction.atomic():
        items = list(
            Notification.objects.select_for_update(skip_locked=True)
            .filter(channel_id=channel_id, delivery__isnull=True, status=Notification.Status.PENDING, due_at__lte=now)
            .values_list("pk", flat=True)
        )
        if not items:
            return None
        delivery = Delivery.objects.create(channel_id=channel_id)
        Notification.objects.filter(pk__in=items).update(delivery=delivery)
        transaction.on_commit(lambda: schedule_delivery(delivery.pk))
    return delivery.pk


def send_test(channel: Channel) -> Delivery:
    """A test message to the channel, now, through the same path as real ones."""
    with transaction.atomic():
        delivery = Delivery.objects.create(channel=channel)
        Notification.objects.create(channel=channel, event=Notification.Event.TEST, delivery=delivery)
        transaction.on_commit(lambda: schedule_delivery(delivery.pk))
    return delivery


# --- one delivery -------------------------------------------------------------------------------


def backoff(attempt: int) -> float:
    return min(settings.NOTIFY_BACKOFF_SECONDS * 2 ** (attempt - 1), 3600)


def claim(delivery_id: int, now: datetime) -> bool:
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    return bool(
        Delivery.objects.filter(due, pk=delivery_id, status__in=[Status.PENDING, Status.RETRYING]).update(
            status=Status.SENDING, claimed_at=now
        )
    )


def claimed(delivery_id: int, now: datetime) -> tuple[Delivery, list[Notification]] | None:
    """Claim the delivery (nobody else holds it once this returns) and read it with its channel,
    notifications and their alerts, in one query after the claim."""
    if not claim(delivery_id, now):
        return None
    items = list(
        Notification.objects.filter(delivery_id=delivery_id).select_related("delivery__channel", "alert").order_by("pk")
    )
    if not items:  # its alerts were deleted meanwhile: an empty message still tells the truth
        return Delivery.objects.select_related("channel").get(pk=delivery_id), []
    return items[0].delivery, items


def deliver(delivery_id: int) -> str | None:
    """Send one delivery if it is due and nobody else holds it; returns its new status."""
    found = claimed(delivery_id, timezone.now())
    if found is None:
        return None
    delivery, items = found
    started = time.monotonic()
    try:
        outcome = send(delivery, items)
    except Exception as error:  # a bug in a backend must not leave the row "sending" until the sweep
        outcome = Outcome(error=f"{type(error).__name__}: {error}"[:300])
    return record(delivery, outcome, int((time.monotonic() - started) * 1000))


RECORD_SQL = """
WITH attempt AS (
    INSERT INTO {attempts} (delivery_id, number, at, ok, status_code, error, duration_ms)
    SELECT %(id)s, %(attempts)s, %(now)s, %(ok)s, %(status_code)s, %(error)s, %(duration_ms)s WHERE %(attempted)s
), items AS (
    UPDATE {notifications} SET status = %(status)s, detail = %(detail)s, finished_at = %(finished_at)s
    WHERE delivery_id = %(id)s
)
UPDATE {deliveries} SET status = %(status)s, detail = %(detail)s, attempts = %(attempts)s,
    finished_at = %(finished_at)s, next_attempt_at = %(next_attempt_at)s
WHERE id = %(id)s
"""


def outcome_status(delivery: Delivery, outcome: Outcome) -> tuple[str, str]:
    if outcome.skipped:
        return Status.SKIPPED, outcome.skipped
    if outcome.ok:
        return Status.SENT, f"sent on attempt {delivery.attempts}"
    if outcome.final or delivery.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        return Status.FAILED, f"failed after {delivery.attempts} attempt(s): {outcome.error}"
    return Status.RETRYING, f"attempt {delivery.attempts} failed: {outcome.error}"


def record(delivery: Delivery, outcome: Outcome, duration_ms: int) -> str:
    """The attempt (unless nothing was attempted), the delivery's new state and its notifications'
    in one statement: atomic without a transaction's extra round trips, so nothing is half-recorded."""
    now = timezone.now()
    attempted = not outcome.skipped
    if attempted:
        delivery.attempts += 1
    status, detail = outcome_status(delivery, outcome)
    delivery.status, delivery.detail = status, detail[:300]
    delivery.finished_at = now if status in Delivery.FINAL else None
    delivery.next_attempt_at = (
        now + timedelta(seconds=backoff(delivery.attempts)) if status == Status.RETRYING else None
    )
    tables = {
        "attempts": DeliveryAttempt._meta.db_table,
        "notifications": Notification._meta.db_table,
        "deliveries": Delivery._meta.db_table,
    }
    params = {
        "id": delivery.pk,
        "attempts": delivery.attempts,
        "now": now,
        "ok": outcome.ok,
        "status_code": outcome.status_code,
        "error": outcome.error[:300],
        "duration_ms": duration_ms,
        "attempted": attempted,
        "status": status,
        "detail": delivery.detail,
        "finished_at": delivery.finished_at,
        "next_attempt_at": delivery.next_attempt_at,
    }
    with connection.cursor() as cursor:
        cursor.execute(RECORD_SQL.format(**tables), params)
    if status == Status.RETRYING:
        delay = backoff(delivery.attempts)
        transaction.on_commit(lambda: schedule_delivery(delivery.pk, delay))
    return status


def send(delivery: Delivery, items) -> Outcome:
    channel = delivery.channel
    if channel.kind in (Channel.Kind.SMS, Channel.Kind.WHATSAPP):
        return Outcome(skipped=NO_PROVIDER)
    if channel.kind == Channel.Kind.EMAIL:
        return send_email(channel, items)
    return send_webhook(channel, delivery, items)


# --- the message ----------------------------------------------------------------------------------


ADDRESS_SECONDS = 60
_addresses: dict[str, tuple[float, tuple[str, str]]] = {}


def tenant_address() -> tuple[str, str]:
    """(slug, primary host) of the current tenant, for the payload and alert links. Read at most
    every ADDRESS_SECONDS per process: a delivery then costs one round trip less, and a changed
    primary domain shows in links within a minute."""
    schema = connection.schema_name
    entry = _addresses.get(schema)
    if entry is None or entry[0] < time.monotonic():
        entry = _addresses[schema] = (time.monotonic() + ADDRESS_SECONDS, read_tenant_address())
    return entry[1]


def forget_addresses() -> None:
    _addresses.clear()


def read_tenant_address() -> tuple[str, str]:
    from django.db.models import OuterRef, Subquery

    from portal.tenancy.models import Domain, Tenant

    primary = Domain.objects.filter(tenant=OuterRef("pk"), is_primary=True).values("domain")[:1]
    found = (
        Tenant.objects.filter(schema_name=connection.schema_name)
        .annotate(primary=Subquery(primary))
        .values_list("slug", "primary")
        .first()
    )
    if found is None:
        return connection.schema_name, "localhost"
    slug, host = found
    return slug, host or Tenant.domain_for_slug(slug)


def alert_url(alert, host: str) -> str:
    scheme = "http" if settings.DEBUG else "https"
    return f"{scheme}://{host}/alerts/{alert.pk}/"


def payload(delivery: Delivery, items) -> dict:
    slug, host = tenant_address()
    alerts = []
    for item in items:
        alert = item.alert
        if alert is None:
            continue
        alerts.append(
            {
                "id": alert.pk,
                "event": item.event,
                "status": alert.status,
                "kind": alert.kind,
                "severity": alert.severity,
                "rule": alert.rule_name,
                "summary": alert.summary,
                "target": alert.subject_label,
                "labels": alert.labels,
                "opened_at": alert.opened_at.isoformat(),
                "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
                "values": alert.trigger_values if item.event == Notification.Event.FIRING else alert.last_values,
                "url": alert_url(alert, host),
            }
        )
    return {
        "version": 1,
        "tenant": slug,
        "channel": delivery.channel.name,
        "delivery": str(delivery.key),
        "test": any(item.event == Notification.Event.TEST for item in items),
        "alerts": alerts,
    }


def subject_line(items) -> str:
    alerts = [i.alert for i in items if i.alert]
    if not alerts:
        return "[Fieldwatch] Test notification"
    firing = sum(1 for i in items if i.alert and i.event != Notification.Event.RESOLVED)
    resolved = len(alerts) - firing
    head = " ".join(
        part for part in (f"FIRING:{firing}" if firing else "", f"RESOLVED:{resolved}" if resolved else "") if part
    )
    return f"[Fieldwatch] {head} {alerts[0].summary}"[:200]


def body_text(items) -> str:
    host = tenant_address()[1]
    lines = []
    for item in items:
        alert = item.alert
        if alert is None:
            lines.append("This is a test notification from Fieldwatch: this channel works.")
            continue
        lines += [
            f"[{item.get_event_display()}] {alert.get_severity_display()}: {alert.summary}",
            f"  opened {timezone.localtime(alert.opened_at):%Y-%m-%d %H:%M %Z}"
            + (f", resolved {timezone.localtime(alert.resolved_at):%Y-%m-%d %H:%M %Z}" if alert.resolved_at else ""),
            *(f"  {v.get('condition', '')}: {v.get('value', v.get('message', ''))}" for v in alert.trigger_values[:5]),
            f"  {alert_url(alert, host)}",
            "",
        ]
    return "\n".join(lines)


# --- email ----------------------------------------------------------------------------------------


def email_recipients(channel: Channel) -> list[str]:
    from portal.tenancy.models import Membership

    addresses = list(channel.address_list)
    if channel.role_list:
        members = Membership.objects.filter(
            tenant__schema_name=connection.schema_name, role__in=channel.role_list, user__is_active=True
        )
        addresses += list(members.values_list("user__email", flat=True))
    return sorted(set(addresses), key=str.lower)


def send_email(channel: Channel, items) -> Outcome:
    recipients = email_recipients(channel)
    if not recipients:
        return Outcome(skipped="skipped: the channel has no recipients (no addresses, no members with its roles)")
    try:
        EmailMessage(subject_line(items), body_text(items), None, [], bcc=recipients).send()
    except Exception as error:  # SMTP and socket errors alike: recorded, retried
        return Outcome(error=f"{type(error).__name__}: {error}"[:300])
    return Outcome(ok=True)


# --- webhooks -------------------------------------------------------------------------------------


class Refused(Exception):
    pass


def allowed_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str) -> tuple[str, int, str]:
    """(host, port, address to connect to) for a webhook URL, or Refused: only http(s), and only
    public addresses unless FIELDWATCH_WEBHOOK_ALLOW_PRIVATE (SSRF: the portal's own network is
    not for tenants to probe). The checked address is the one connected to (no re-resolution)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("only http:// and https:// URLs with a host are allowed")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise Refused(f"cannot resolve {parts.hostname}: {error}") from None
    addresses = [info[4][0] for info in infos]
    if not settings.WEBHOOK_ALLOW_PRIVATE:
        bad = [a for a in addresses if not allowed_address(a)]
        if bad:
            raise Refused(f"refused: {parts.hostname} resolves to {bad[0]}, a loopback, private or reserved address")
    return parts.hostname, port, addresses[0]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex, prefixed like the header carries it."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def send_webhook(channel: Channel, delivery: Delivery, items) -> Outcome:
    body = json.dumps(payload(delivery, items), separators=(",", ":"), default=str).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Fieldwatch-Webhook/1",
        "X-Fieldwatch-Timestamp": timestamp,
        "X-Fieldwatch-Signature": signature(channel.webhook_secret, timestamp, body),
        "Idempotency-Key": str(delivery.key),
        "X-Fieldwatch-Delivery": str(delivery.key),
    }
    try:
        status = post(channel.webhook_url, body, headers)
    except Refused as error:
        return Outcome(error=str(error), final=True)
    except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as error:
        return Outcome(error=f"{type(error).__name__}: {error}"[:300])
    if 200 <= status < 300:
        return Outcome(ok=True, status_code=status)
    return Outcome(
        status_code=status, error=f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    )


@functools.cache
def pools() -> urllib3.PoolManager:
    """Kept-alive connections per (scheme, address, port, TLS host name), shared by the worker's
    threads; the least recently used of more than 50 destinations are closed. No retries and no
    redirects: each attempt is one request, recorded as it went."""
    return urllib3.PoolManager(num_pools=50, maxsize=4, block=False, retries=False)


def post(url: str, body: bytes, headers: dict) -> int:
    host, port, address = check_url(url)
    parts = urlsplit(url)
    # connect to the address we checked, not whatever the name resolves to a moment later; TLS
    # still verifies the certificate against the host name
    tls = {"server_hostname": host, "assert_hostname": host} if parts.scheme == "https" else {}
    pool = pools().connection_from_host(address, port, parts.scheme, pool_kwargs=tls)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    default_port = 443 if parts.scheme == "https" else 80
    timeout = urllib3.Timeout(connect=settings.WEBHOOK_TIMEOUT_SECONDS, read=settings.WEBHOOK_TIMEOUT_SECONDS)
    response = pool.urlopen(
        "POST",
        path,
        body=body,
        headers={"Host": host if port == default_port else f"{host}:{port}", **headers},
        redirect=False,
        assert_same_host=False,
        timeout=timeout,
        preload_content=False,
    )
    try:
        response.read(64 * 1024, decode_content=False)
        if not response.isclosed():
            response.close()  # more body than we read: drop the connection rather than read on
        return response.status
    finally:
        response.release_conn()


# --- the sweep --------------------------------------------------------------------------------------


def sweep(now: datetime | None = None) -> dict:
    """Deliveries stuck in "sending", retries and dispatches that are due: set going again."""
    now = now or timezone.now()
    stuck_before = now - timedelta(seconds=settings.NOTIFY_STUCK_SECONDS)
    stuck = 0
    for delivery in Delivery.objects.filter(status=Status.SENDING, claimed_at__lt=stuck_before):
        with transaction.atomic():
            won = Delivery.objects.filter(pk=delivery.pk, status=Status.SENDING, claimed_at=delivery.claimed_at).update(
                status=Status.RETRYING, next_attempt_at=now, attempts=delivery.attempts + 1
            )
            if won:
                DeliveryAttempt.objects.create(
                    delivery=delivery,
                    number=delivery.attempts + 1,
                    error="interrupted: the worker stopped mid-delivery",
                )
                stuck += 1
    due = list(
        Delivery.objects.filter(
            Q(status=Status.RETRYING, next_attempt_at__lte=now)
            | Q(status=Status.PENDING, created_at__lte=now - timedelta(seconds=30))
        ).values_list("pk", flat=True)
    )
    for delivery_id in due:
        schedule_delivery(delivery_id)
    channels = set(
        Notification.objects.filter(
            delivery__isnull=True, status=Notification.Status.PENDING, due_at__lte=now
        ).values_list("channel_id", flat=True)
    )
    for channel_id in channels:
        dispatch_channel(channel_id, now)
    return {"stuck": stuck, "due": len(due), "dispatched": len(channels)}

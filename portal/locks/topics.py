"""MQTT topics of the locks, for the bridge (bridge/registry.py: prompt lane and outbox).

In, each handled at once (the prompt lane), in the lock's tenant schema:

    tenants/{tenant}/locks/{id}/status|heartbeat|response|access
    smartlock/{id}/status|heartbeat|response|access     seed 004's locks in the field; the tenant comes
                                                        from portal.tenancy.LockRoute (public schema)

Payloads are seed 004's: status {"online", "battery", "lock_status" (or "status"), "signal_strength",
"temperature", "timestamp"}, plus optional "firmware", "event" ("tamper"; "manual_unlock"/"manual_lock": the key was used) and "ota"
{"progress", "state"}; heartbeat {"timestamp", "uptime"}; response {"request_id", "success", "status",
"timestamp"} (a code sync's response may list {"codes": [{"id", "ok"}]}; an OTA's may carry "progress").
`…/access` is the lock's access request {"request_id", "method": "pin"|"qr", "code", "action"}: the
answer goes to `…/access/result`. A message naming no known lock, or unreadable, is a dead letter.

The prompt lane hands over what arrived together (handle_batch): access requests are settled per
tenant as one batch (access.check_batch, the HTTP check's implementation: issue 14, 1,000 checks a
second), the other messages one by one (handle). A batch spanning tenants commits tenant by tenant;
should the database fail after one tenant's part committed, the lane's retry decides that part's
requests again (a one-use PIN then answers used_up, never opens twice; the repeat is logged).

Out (the outbox): pending LockCommands of a schema, to `…/command` (`…/ota` for firmware updates).
"""

import logging
import time
from datetime import UTC, datetime

import orjson
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_tenants.utils import schema_context

from portal.locks import access
from portal.locks.models import COMMAND_CHANNEL, AccessLog, CodeSync, Lock, LockCommand, PinCode, settle_open
from portal.tenancy.models import LockRoute, Tenant
from telemetry.bounds import clean_text
from telemetry.deadletters import allowance
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import DeadLetter, Device, online_window
from telemetry.signals import device_event

log = logging.getLogger("fieldwatch.locks")

PROMPT = True
SUBSCRIPTIONS = [
    *(f"tenants/+/locks/+/{leaf}" for leaf in ("status", "heartbeat", "response", "access")),
    *(f"smartlock/+/{leaf}" for leaf in ("status", "heartbeat", "response", "access")),
]
OUTBOX_CHANNEL = COMMAND_CHANNEL
MAX_PAYLOAD = 16 * 1024  # bytes; a lock's messages are a few hundred
DIRECTORY_SECONDS = 30  # how long a tenant / lock route lookup is trusted
MANUAL_EVENTS = {"manual_unlock": AccessLog.Action.UNLOCK, "manual_lock": AccessLog.Action.LOCK}
READING_KEYS = {"battery": ("battery", "%"), "temperature": ("temperature", "°C"), "signal_strength": ("rssi", "dBm")}


class Unreadable(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class Directory:
    """Tenant slug → schema, field lock id → schema and schema → slug, each kept DIRECTORY_SECONDS."""

    def __init__(self):
        self.entries: dict[tuple[str, str], tuple[float, str | None]] = {}

    def schema(self, kind: str, key: str) -> str | None:
        hit = self.entries.get((kind, key))
        if hit and time.monotonic() - hit[0] < DIRECTORY_SECONDS:
            return hit[1]
        with schema_context("public"):
            if kind == "tenant":
                found = Tenant.objects.active().filter(slug=key).values_list("schema_name", flat=True).first()
            else:
                found = (
                    LockRoute.objects.filter(lock_id=key, tenant__is_active=True)
                    .values_list("tenant__schema_name", flat=True)
                    .first()
                )
        self.entries[(kind, key)] = (time.monotonic(), found)
        return found

    def slug(self, schema: str) -> str | None:
        hit = self.entries.get(("slug", schema))
        if hit and time.monotonic() - hit[0] < DIRECTORY_SECONDS:
            return hit[1]
        with schema_context("public"):
            found = Tenant.objects.filter(schema_name=schema).values_list("slug", flat=True).first()
        self.entries[("slug", schema)] = (time.monotonic(), found)
        return found

    def clear(self) -> None:
        self.entries.clear()


directory = Directory()


def parse_topic(topic: str) -> tuple[str, str, str]:
    """(schema, lock id, leaf) of a lock topic; Unreadable when it names no active tenant or lock."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[0] == "tenants" and parts[2] == "locks":
        schema = directory.schema("tenant", parts[1])
        lock_id, leaf = parts[3], parts[4]
    elif len(parts) == 3 and parts[0] == "smartlock":
        schema = directory.schema("route", parts[1])
        lock_id, leaf = parts[1], parts[2]
    else:
        raise Unreadable("unknown_topic", "the topic matches none of Fieldwatch's lock topics")
    if schema is None:
        raise Unreadable("unknown_lock", f"no active organisation holds lock {lock_id[:64]!r}")
    return schema, lock_id, leaf


def parse_payload(payload: bytes) -> dict:
    if len(payload) > MAX_PAYLOAD:
        raise Unreadable("too_large", f"a lock message is at most {MAX_PAYLOAD} bytes")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise Unreadable("bad_json", "the payload is not JSON") from None
    if not isinstance(data, dict):
        raise Unreadable("bad_json", "the payload is not a JSON object")
    return data


def handle(topic: str, payload: bytes, now: datetime) -> list[tuple[str, bytes]]:
    """One lock message: find its tenant and lock, apply it in one transaction, return replies."""
    try:
        schema, lock_id, leaf = parse_topic(topic)
    except Unreadable as error:
        keep(topic, payload, error, "public")
        return []
    with schema_context(schema):
        try:
            data = parse_payload(payload)
            with transaction.atomic():
                lock = (
                    Lock.objects.select_related("device", "site")
                    .select_for_update(of=("self",))
                    .filter(device__device_id=lock_id)
                    .first()
                )
                if lock is None:
                    raise Unreadable("unknown_lock", f"no lock {lock_id[:64]!r} in this organisation")
                return LEAVES[leaf](lock, data, now, topic)
        except Unreadable as error:
            keep(topic, payload, error, schema)
            return []


BATCHED_LEAVES = {"access"}  # the leaves handle_batch settles together; the others go one by one


def handle_batch(messages: list[tuple[str, bytes]], now: datetime) -> list[list[tuple[str, bytes]]]:
    """Messages that arrived together (the prompt lane's batch), each one's replies in order.

    Access requests are settled together, per tenant, in the batch's transaction (access.check_batch:
    set-based statements, the same decisions as one check after the other): one query for their
    locks (rows locked, in id order, as handle() locks one), one update of their devices' last
    seen, then the batch's check. Every other message, and a batch's unreadable ones, is handle()'s."""
    replies: list[list] = [[] for _ in messages]
    by_schema: dict[str, list[tuple[int, str, bytes, str, dict]]] = {}
    for n, (topic, payload) in enumerate(messages):
        try:
            schema, lock_id, leaf = parse_topic(topic)
            if leaf not in BATCHED_LEAVES:
                raise LookupError
            data = parse_payload(payload)
        except (Unreadable, LookupError):
            replies[n] = handle(topic, payload, now)  # its dead letter, or its own leaf's handling
            continue
        by_schema.setdefault(schema, []).append((n, topic, payload, lock_id, data))
    # one transaction per tenant, committed inside its schema (the on-commit work of a lockout, its
    # alert and the keypad command's expiry, runs in the tenant's schema)
    for schema, requests in by_schema.items():
        with schema_context(schema):
            for n, reply in access_batch(requests, now):
                replies[n] = reply
    return replies


def access_batch(requests: list[tuple[int, str, bytes, str, dict]], now: datetime) -> list[tuple[int, list]]:
    """One tenant's access requests (position, topic, payload, lock id, data), in one transaction."""
    unreadable, answers = [], []
    with transaction.atomic():
        ids = sorted({lock_id for _, _, _, lock_id, _ in requests})
        locks = {
            lock.device.device_id: lock
            for lock in Lock.objects.select_related("device", "site")
            .select_for_update(of=("self",))
            .filter(device__device_id__in=ids)
            .order_by("id")
        }
        items, kept = [], []
        for n, topic, payload, lock_id, data in requests:
            lock = locks.get(lock_id)
            try:
                if lock is None:
                    raise Unreadable("unknown_lock", f"no lock {lock_id[:64]!r} in this organisation")
                items.append((lock, access_attempt(data)))
                kept.append((n, topic, data))
            except Unreadable as error:
                unreadable.append((n, topic, payload, error))
        seen_all(list({lock.pk: lock for lock, _ in items}.values()), now)
        decisions = access.check_batch(items, now)
        answers = [
            (n, [access_answer(data, d, topic, now)]) for (n, topic, data), d in zip(kept, decisions, strict=True)
        ]
    for n, topic, payload, error in unreadable:
        keep(topic, payload, error, connection.schema_name)
        answers.append((n, []))
    return answers


def keep(topic: str, payload: bytes, error: Unreadable, schema: str) -> None:
    lock_ref = topic.split("/")[-2][:100] if "/" in topic else ""
    with schema_context(schema):
        if not allowance(f"device:{lock_ref}" if lock_ref else "mqtt:unattributed", 1):
            log.warning("not keeping a dead letter of %s: its lock's allowance is spent", topic[:300])
            return
        DeadLetter.objects.create(
            source=DeadLetter.Source.MQTT,
            topic=topic[:300],
            payload=clean_text(payload[:MAX_PAYLOAD].decode("utf-8", "replace")),
            reason=error.reason,
            detail=error.detail[:300],
            device_ref=lock_ref,
        )


# --- readers of bounded fields -------------------------------------------------------------------


def number(data: dict, key: str, low: float, high: float) -> float | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if low <= value <= high else None


def moment(data: dict, now: datetime) -> datetime:
    """The lock's timestamp when it is a plausible ISO time (not ahead of us), else now."""
    raw = data.get("timestamp")
    if isinstance(raw, str) and len(raw) <= 40:
        try:
            parsed = parse_datetime(raw)
        except ValueError:
            parsed = None
        if parsed is not None:
            parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            if datetime(2000, 1, 1, tzinfo=UTC) <= parsed <= now:
                return parsed
    return now


def text(data: dict, key: str, limit: int) -> str:
    """A string field, at most `limit` characters, storable (a NUL would fail its INSERT)."""
    value = data.get(key)
    return clean_text(value[:limit]) if isinstance(value, str) else ""


# --- what each leaf does -------------------------------------------------------------------------


def on_status(lock: Lock, data: dict, now: datetime, topic: str) -> list:
    at = moment(data, now)
    seen(lock, now, firmware=text(data, "firmware", 50))
    if lock.reported_at and at < lock.reported_at:
        return []  # an older status that arrived late changes nothing
    before = lock.status
    status = text(data, "lock_status", 20) or text(data, "status", 20)
    if status in Lock.Status.values:
        lock.status = status
    battery = number(data, "battery", 0, 100)
    lock.battery = round(battery) if battery is not None else lock.battery
    signal = number(data, "signal_strength", -200, 50)
    lock.signal_strength = round(signal) if signal is not None else lock.signal_strength
    temperature = number(data, "temperature", -60, 100)
    lock.temperature = temperature if temperature is not None else lock.temperature
    lock.reported_at = at
    ota = data.get("ota")
    if isinstance(ota, dict):
        note_ota(lock, ota)
    lock.save(
        update_fields=[
            "status",
            "battery",
            "signal_strength",
            "temperature",
            "reported_at",
            "ota_progress",
            "ota_state",
            "updated_at",
        ]
    )
    store_readings(lock, data, at)
    if before != lock.status and Lock.Status.JAMMED in (before, lock.status):
        jammed = lock.status == Lock.Status.JAMMED
        message = "The lock reports it is jammed." if jammed else "The lock is no longer jammed."
        access.announce(lock, "jammed", "high", message, at, {"status": lock.status}, resolved=not jammed)
    event = text(data, "event", 20)
    if event == "tamper":
        access.announce(lock, "tamper", "critical", "The lock reports tampering.", at, {})
    elif event in MANUAL_EVENTS:  # someone used the key or the thumb turn
        AccessLog.objects.create(
            lock=lock,
            at=at,
            method=AccessLog.Method.MANUAL,
            action=MANUAL_EVENTS[event],
            success=True,
            reason=access.GRANTED,
            source="lock",
        )
    return []


def note_ota(lock: Lock, ota: dict) -> None:
    progress = number(ota, "progress", 0, 100)
    if progress is not None:
        lock.ota_progress = round(progress)
    lock.ota_state = text(ota, "state", 20) or lock.ota_state


def store_readings(lock: Lock, data: dict, at: datetime) -> None:
    """Battery, temperature and signal as readings through the one ingest path (history, alerts)."""
    readings = []
    for field, (key, unit) in READING_KEYS.items():
        value = getattr(lock, field)
        if field in data and value is not None:
            readings.append(ReadingIn(device=lock.lock_id, sensor=key, ts=at, value=float(value), unit=unit))
    if readings:
        ingest(readings, source=DeadLetter.Source.MQTT)


def seen_all(locks: list[Lock], now: datetime) -> None:
    """seen() for the locks of a batch: one update of their devices' last seen; a lock heard
    again after being offline goes through seen() (its missed syncs are published again)."""
    window, quiet = now - online_window(), []
    for lock in locks:
        if lock.device.last_seen is None or lock.device.last_seen < window:
            seen(lock, now)
        else:
            lock.device.last_seen = now
            quiet.append(lock.device.pk)
    if quiet:
        Device.objects.filter(pk__in=quiet).update(last_seen=now)


def seen(lock: Lock, now: datetime, firmware: str = "") -> None:
    device = lock.device
    back = device.last_seen is None or device.last_seen < now - online_window()
    device.last_seen = now
    fields = ["last_seen"]
    if firmware and firmware != device.firmware:
        device.firmware = firmware
        fields.append("firmware")
    device.save(update_fields=fields)
    if back:
        resend_on_return(lock, now)


# the commands that set state on the lock: repeating one late does what it did on time
RESENT_ON_RETURN = [
    LockCommand.Kind.CODE_SYNC,
    LockCommand.Kind.SETTINGS,
    LockCommand.Kind.TIME_SYNC,
    LockCommand.Kind.KEYPAD,
]


def resend_on_return(lock: Lock, now: datetime) -> int:
    """A lock heard from for the first time, or again after being offline, missed what was published
    while it was away (a QoS 1 message reaches only a subscribed client: the demo's code syncs went
    out before the simulated locks had subscribed and expired unanswered). Its open state syncs
    (codes, settings, time, keypad) are published again with the same request id (the lock
    deduplicates by it) while their deadline lasts; a lock or unlock is never repeated later than
    the person asked for it."""
    resent = LockCommand.objects.filter(
        lock=lock, state=LockCommand.State.SENT, kind__in=RESENT_ON_RETURN, expires_at__gt=now
    ).update(state=LockCommand.State.PENDING, updated_at=now)
    if resent:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [COMMAND_CHANNEL, connection.schema_name])
    return resent


def on_heartbeat(lock: Lock, data: dict, now: datetime, topic: str) -> list:
    seen(lock, now, firmware=text(data, "firmware", 50))
    uptime = number(data, "uptime", 0, 10 * 365 * 86400)
    if uptime is not None:
        lock.device.status = {**lock.device.status, "uptime": int(uptime)}
        lock.device.save(update_fields=["status"])
    lock.save(update_fields=["updated_at"])  # the page's "last seen" moves
    return []


def on_response(lock: Lock, data: dict, now: datetime, topic: str) -> list:
    """Settle the command the response names, once; a repeat or an unknown id changes nothing."""
    seen(lock, now)
    command = LockCommand.objects.filter(lock=lock, request_id=text(data, "request_id", 36) or None).first()
    if command is None or command.settled:
        return []
    success = data.get("success") is True
    detail = text(data, "error", 300) or text(data, "message", 300)
    progress = number(data, "progress", 0, 100)
    if command.kind == LockCommand.Kind.OTA and success and progress is not None and progress < 100:
        LockCommand.objects.filter(pk=command.pk).update(progress=round(progress), updated_at=now)
        lock.ota_progress, lock.ota_state = round(progress), "downloading"
        lock.save(update_fields=["ota_progress", "ota_state", "updated_at"])
        return []
    state = LockCommand.State.ACKNOWLEDGED if success else LockCommand.State.FAILED
    if not settle_open(command.request_id, state, detail or ("done" if success else "the lock refused"), now, progress):
        return []
    command.state = state
    apply_settled(lock, command, data, now)
    return []


def apply_settled(lock: Lock, command: LockCommand, data: dict, now: datetime) -> None:
    """What a settled command changes besides itself: the lock's state, codes' sync, the access log."""
    success = command.state == LockCommand.State.ACKNOWLEDGED
    fields = ["updated_at"]
    status = text(data, "status", 20)
    if success and status in Lock.Status.values:
        lock.status = status
        fields.append("status")
    elif success and command.kind in (LockCommand.Kind.LOCK, LockCommand.Kind.UNLOCK):
        lock.status = Lock.Status.LOCKED if command.kind == LockCommand.Kind.LOCK else Lock.Status.UNLOCKED
        fields.append("status")
    if command.kind == LockCommand.Kind.OTA:
        lock.ota_progress, lock.ota_state = (100, "done") if success else (lock.ota_progress, "failed")
        fields += ["ota_progress", "ota_state"]
    lock.save(update_fields=fields)
    if command.kind == LockCommand.Kind.CODE_SYNC:
        settle_codes(command, data, success)
    if command.kind in (LockCommand.Kind.LOCK, LockCommand.Kind.UNLOCK):
        log_app_access(lock, command, success, now)


def settle_codes(command: LockCommand, data: dict, success: bool) -> None:
    """Each code of the sync moves on: setting → set, removing → removed, or failed. A response
    listing codes ({"codes": [{"id", "ok"}]}) decides per code; otherwise `success` decides for all."""
    verdicts = {}
    for entry in data.get("codes") or [] if isinstance(data.get("codes"), list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("id"), int):
            verdicts[entry["id"]] = entry.get("ok") is True
    for pin in PinCode.objects.filter(sync_command=command):
        ok = verdicts.get(pin.pk, success)
        if not ok:
            pin.sync_state = CodeSync.FAILED
        else:
            pin.sync_state = CodeSync.SET if pin.sync_state == CodeSync.SETTING else CodeSync.REMOVED
        pin.save(update_fields=["sync_state"])


def log_app_access(lock: Lock, command: LockCommand, success: bool, at: datetime) -> None:
    AccessLog.objects.create(
        lock=lock,
        at=at,
        method=AccessLog.Method.APP,
        action=command.kind,
        success=success,
        reason=access.GRANTED if success else (command.state if command.state != "failed" else "lock_refused"),
        actor_id=command.requested_by_id,
        actor_email=command.requested_by_email,
        holder=command.requested_by_email,
        source=command.source,
    )


def access_attempt(data: dict) -> access.Attempt:
    """The attempt of a lock's access request (a PIN or QR code it was shown), fields bounded."""
    method = text(data, "method", 10) or AccessLog.Method.PIN
    if method not in (AccessLog.Method.PIN, AccessLog.Method.QR):
        raise Unreadable("bad_method", "method must be pin or qr")
    action = text(data, "action", 10) or AccessLog.Action.UNLOCK
    return access.Attempt(
        method=method,
        code=text(data, "code", 64),
        action=action if action in AccessLog.Action.values else AccessLog.Action.UNLOCK,
        source="mqtt",
    )


def access_answer(data: dict, decision: access.Decision, topic: str, now: datetime) -> tuple[str, bytes]:
    answer = {"request_id": text(data, "request_id", 64), **decision.as_json(), "timestamp": now.isoformat()}
    return f"{topic}/result", orjson.dumps(answer)


def on_access(lock: Lock, data: dict, now: datetime, topic: str) -> list:
    """The lock asks whether a code opens it; the answer goes to …/access/result (a batch of one:
    handle_batch settles the requests that arrive together)."""
    seen(lock, now)
    decision = access.check(lock, access_attempt(data), now)
    return [access_answer(data, decision, topic, now)]


LEAVES = {"status": on_status, "heartbeat": on_heartbeat, "response": on_response, "access": on_access}


# --- the outbox ----------------------------------------------------------------------------------


def tenant_slug() -> str:
    """The current schema's tenant slug (for `tenants/{slug}/…` topics), by the directory's cache."""
    return directory.slug(connection.schema_name) or ""


def outgoing(limit: int) -> list[tuple[int, str, bytes]]:
    """Pending commands of the current schema, oldest first, as (pk, topic, payload)."""
    due = list(
        LockCommand.objects.filter(state=LockCommand.State.PENDING, expires_at__gt=timezone.now())
        .select_related("lock__device")
        .order_by("id")[:limit]
    )
    if not due:
        return []
    slug = tenant_slug()
    return [
        (c.pk, c.lock.topic("ota" if c.kind == LockCommand.Kind.OTA else "command", slug), orjson.dumps(c.message()))
        for c in due
    ]


def published(keys: list[int]) -> None:
    if keys:
        now = timezone.now()
        LockCommand.objects.filter(pk__in=keys, state=LockCommand.State.PENDING).update(
            state=LockCommand.State.SENT, sent_at=now, updated_at=now
        )


__all__ = [
    "SUBSCRIPTIONS",
    "PROMPT",
    "OUTBOX_CHANNEL",
    "handle",
    "handle_batch",
    "outgoing",
    "published",
    "device_event",
]

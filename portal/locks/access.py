"""The access check: a lock (or an app) submits a PIN or QR code and gets allow or deny with a reason.

One implementation, check_batch(): the HTTP check is a batch of one (check()), the bridge settles
the MQTT access requests that arrive together as one batch (portal/locks/topics.py handle_batch).
Steps, for each attempt in order, with set-based statements for the whole batch:
1. refuse at once an address blocked as suspicious, and a keypad disabled by a lockout;
2. find the code by its digest (PIN) or its value (QR) among the lock's codes (one query for the
   batch, the rows locked until the commit), and ask it whether it opens now (window, weekly
   schedule in the lock's zone, uses left, revoked); a grant counts the use on the locked row, so
   of concurrent (or same-batch) uses of a one-use PIN exactly one wins;
3. after a failure count the lock's recent failures (a lockout after LOCK_LOCKOUT_FAILURES in
   LOCK_LOCKOUT_WINDOW_SECONDS) and the address's failures across locks (blocked after
   LOCK_SUSPICIOUS_FAILURES): one query for the batch's locks and addresses, plus the batch's own;
4. write the log rows (never the PIN) and the use counts in one statement.
The PIN is found by its keyed digest (portal/locks/codes.py: HMAC-SHA256 under the server's key of
the lock's pk and the PIN), one indexed equality lookup. A password hasher (PBKDF2, a salt per code)
would cost a slow hash per candidate code of the lock on every attempt and buy nothing against
guessing: 10^4–10^8 PINs fall to any hash once the database is stolen, so the protection is the
server key (not in the database) and, online, the lockout after 5 failures.
Reason codes are stable (machines read them): granted, blocked_address, keypad_locked,
invalid_format, unknown_code, revoked, inactive, not_yet_valid, expired, used_up, outside_schedule.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal.locks import hotpath
from portal.locks.codes import format_problem, pin_digest
from portal.locks.models import AccessLog, BlockedAddress, Lock, LockCommand, PinCode, QrCode
from telemetry.signals import device_event

GRANTED = "granted"
NOT_COUNTED = ("keypad_locked", "blocked_address")  # refusals during a block do not extend it
COUNTED_METHODS = (AccessLog.Method.PIN, AccessLog.Method.QR)  # a lock's failures that count to its lockout
MESSAGES = {
    GRANTED: "Access granted",
    "blocked_address": "Too many failed attempts from this address; try again later",
    "keypad_locked": "The keypad is disabled after repeated failures; try again later",
    "invalid_format": "That is not a code this lock accepts",
    "unknown_code": "Wrong code",
    "revoked": "This code was revoked",
    "inactive": "This code is no longer active",
    "not_yet_valid": "This code is not valid yet",
    "expired": "This code has expired",
    "used_up": "This code has no uses left",
    "outside_schedule": "This code is not valid at this time",
}


@dataclass
class Attempt:
    method: str  # AccessLog.Method.PIN or QR
    code: str
    action: str = AccessLog.Action.UNLOCK
    ip: str | None = None
    user_agent: str = ""
    source: str = "http"
    expected: PinCode | QrCode | None = None  # the API's /pins/{id}/validate/: only this code will do


@dataclass
class Decision:
    allowed: bool
    reason: str
    code: PinCode | QrCode | None = None
    log: AccessLog | None = None
    uses: int | None = None  # the code's use count this grant made (a later grant in the batch moves the code's)

    @property
    def message(self) -> str:
        return MESSAGES.get(self.reason, self.reason)

    @property
    def remaining_uses(self) -> int | None:
        if self.code is None or not self.allowed or self.code.max_uses is None:
            return None
        return max(0, self.code.max_uses - (self.code.uses if self.uses is None else self.uses))

    def as_json(self) -> dict:
        remaining = self.remaining_uses
        return {"allowed": self.allowed, "reason": self.reason, "message": self.message, "remaining_uses": remaining}


def blocked(ip: str | None, at: datetime) -> bool:
    return bool(ip) and BlockedAddress.objects.filter(ip=ip, blocked_until__gt=at).exists()


def blocked_among(ips: set[str], at: datetime) -> set[str]:
    if not ips:
        return set()
    return set(BlockedAddress.objects.filter(ip__in=ips, blocked_until__gt=at).values_list("ip", flat=True))


def check(lock: Lock, attempt: Attempt, at: datetime | None = None, address_is_blocked: bool | None = None) -> Decision:
    """Allow or deny `attempt` at `lock`, log it, and count a failure toward the lockouts: a batch
    of one (check_batch). The address check comes with the lock when the caller loaded it with it
    (hotpath.lock_by_key, the device view), else one query here."""
    at = at or timezone.now()
    blocked_ips = None
    if address_is_blocked is not None:
        blocked_ips = {attempt.ip} if address_is_blocked and attempt.ip else set()
    return check_batch([(lock, attempt)], at, blocked_ips)[0]


class Batch:
    """What check_batch knows while it decides a batch's attempts in order: the codes (their use
    counts move as the batch grants), the failures counted so far, the log rows still to write."""

    def __init__(self, items: list[tuple[Lock, Attempt]], at: datetime, blocked_ips: set[str] | None):
        self.at = at
        self.window = timedelta(seconds=settings.LOCK_LOCKOUT_WINDOW_SECONDS)
        self.locks = {lock.pk: lock for lock, _ in items}
        self.ips = sorted({attempt.ip for _, attempt in items if attempt.ip})
        self.blocked = blocked_among(set(self.ips), at) if blocked_ips is None else set(blocked_ips)
        self.pins = self.find_pins(items)
        self.qrs = self.find_qrs(items)
        self.on_lock: dict[int, int] | None = None  # failures per lock, from the first failure on
        self.from_address: dict[str, int] = {}
        self.logs: list[AccessLog] = []
        self.used: dict[tuple[type, int], PinCode | QrCode] = {}

    def find_pins(self, items) -> dict:
        digests = [
            pin_digest(lock.pk, attempt.code)
            for lock, attempt in items
            if attempt.method == AccessLog.Method.PIN and not format_problem(attempt.code)
        ]
        return hotpath.live_pins(self.locks, digests)

    def find_qrs(self, items) -> dict:
        values = [value for _, attempt in items if (value := qr_value(attempt)) is not None]
        if not values:
            return {}
        found = QrCode.objects.filter(lock__in=list(self.locks), code__in=values).order_by("id").select_for_update()
        return {(qr.lock_id, qr.code): qr for qr in found}

    def find_code(self, lock: Lock, attempt: Attempt):
        """The lock's live code the attempt names, or a reason it names none: by the PIN's keyed
        digest (codes.pin_digest) or the QR code's value, among the batch's lookups."""
        if attempt.method == AccessLog.Method.PIN:
            if format_problem(attempt.code):
                return None, "invalid_format"
            found = self.pins.get((lock.pk, pin_digest(lock.pk, attempt.code)))
        else:
            value = qr_value(attempt)
            if value is None:
                return None, "invalid_format"
            found = self.qrs.get((lock.pk, value))
        if found is None or (attempt.expected is not None and found.pk != attempt.expected.pk):
            return None, "unknown_code"
        return found, None

    def decide(self, lock: Lock, attempt: Attempt) -> Decision:
        at, code, reason = self.at, None, None
        if attempt.ip and attempt.ip in self.blocked:
            reason = "blocked_address"
        elif lock.keypad_locked(at):
            reason = "keypad_locked"
        else:
            code, reason = self.find_code(lock, attempt)
            if code is not None:
                reason = code.refusal(at) if isinstance(code, QrCode) else code.refusal(at, lock.zone)
        decision = Decision(reason is None, reason or GRANTED, code)
        if reason is None:  # the code's row is locked: this count is the one committed
            code.uses, code.last_used_at = code.uses + 1, at
            decision.uses = code.uses
            self.used[(type(code), code.pk)] = code
        decision.log = log_row(lock, attempt, decision, at)
        self.logs.append(decision.log)
        if not decision.allowed and decision.reason not in NOT_COUNTED:
            self.after_failure(lock, attempt, decision)
        return decision

    def since(self, lock: Lock) -> datetime:
        return max(self.at - self.window, lock.failures_counted_from or self.at - self.window)

    def after_failure(self, lock: Lock, attempt: Attempt, decision: Decision) -> None:
        """Count the failure toward the lock's lockout and the address's block: the counts before
        the batch come in one query at its first failure, the batch's own are added as they come."""
        if self.on_lock is None:
            self.on_lock, self.from_address = failure_counts_of(
                {pk: self.since(known) for pk, known in self.locks.items()}, self.ips, self.at - self.window
            )
        ip = attempt.ip or None
        if attempt.method in COUNTED_METHODS:
            self.on_lock[lock.pk] += 1
        if ip:
            self.from_address[ip] += 1
        if self.on_lock[lock.pk] >= settings.LOCK_LOCKOUT_FAILURES:
            open_lockout(lock, self.at)
        if ip and self.from_address[ip] >= settings.LOCK_SUSPICIOUS_FAILURES:
            self.write()  # flag_address counts the address's failures itself
            if flag_address(ip, lock, self.at):
                self.blocked.add(ip)

    def write(self) -> None:
        hotpath.settle(self.logs, list(self.used.values()))
        self.logs, self.used = [], {}


def check_batch(items: list[tuple[Lock, Attempt]], at: datetime, blocked_ips: set[str] | None = None) -> list[Decision]:
    """Allow or deny each (lock, attempt), in order, as one check after the other would, in one
    transaction with set-based statements (issue 14: the MQTT access requests that arrive together):

    1. one query finds every live PIN the batch names (by its keyed digest) and locks their rows
       (QR codes: one more query, only when the batch has some); the addresses' blocks come in one
       query too, unless the caller brings them (`blocked_ips`, the device view's);
    2. each attempt is decided in Python, in order: refused at once for a blocked address or a
       disabled keypad, else its code asked whether it opens now (window, schedule in the lock's
       zone, uses left, revoked); a grant counts the use on the code in hand, so the next attempt
       of the same one-use PIN in the batch finds it used up;
    3. at the batch's first counted failure, one query counts the failures before the batch of its
       locks (a lockout after LOCK_LOCKOUT_FAILURES in LOCK_LOCKOUT_WINDOW_SECONDS) and addresses
       (blocked after LOCK_SUSPICIOUS_FAILURES); the batch's own failures are added as they come;
    4. one statement writes every log row (never the PIN) and every use count.
    The codes' rows stay locked until the commit: a concurrent check (another batch, an HTTP check's)
    waits and then sees the counts this batch wrote, so of concurrent uses of a one-use PIN
    exactly one is granted. Reason codes are stable (machines read them): see the module's list."""
    if not items:
        return []
    with transaction.atomic(savepoint=False):
        batch = Batch(items, at, blocked_ips)
        decisions = [batch.decide(lock, attempt) for lock, attempt in items]
        batch.write()
    return decisions


def qr_value(attempt: Attempt) -> uuid.UUID | None:
    if attempt.method != AccessLog.Method.QR:
        return None
    try:
        return uuid.UUID(attempt.code)
    except (ValueError, AttributeError, TypeError):
        return None


def log_row(lock: Lock, attempt: Attempt, decision: Decision, at: datetime) -> AccessLog:
    code = decision.code
    return AccessLog(
        lock=lock,
        at=at,
        method=attempt.method,
        action=attempt.action,
        success=decision.allowed,
        reason=decision.reason,
        pin=code if isinstance(code, PinCode) else None,
        qr=code if isinstance(code, QrCode) else None,
        holder=code.label if code is not None else "",
        source=attempt.source,
        ip=attempt.ip or None,
        user_agent=(attempt.user_agent or "")[:300],
    )


def counted_failures(lock: Lock, since: datetime):
    return AccessLog.objects.filter(lock=lock, success=False, method__in=COUNTED_METHODS, at__gte=since).exclude(
        reason__in=NOT_COUNTED
    )


def address_failures(ip: str, since: datetime):
    return AccessLog.objects.filter(ip=ip, success=False, at__gte=since).exclude(reason__in=NOT_COUNTED)


def failure_counts_of(lock_sinces: dict[int, datetime], ips: list[str], ip_since: datetime):
    """counted_failures of each lock and address_failures of each address, in one query, each
    counted only up to its threshold (all a decision needs: a flood of failures does not make
    every next check slower)."""
    return hotpath.failure_counts(
        lock_sinces,
        ips,
        ip_since,
        COUNTED_METHODS,
        NOT_COUNTED,
        (settings.LOCK_LOCKOUT_FAILURES, settings.LOCK_SUSPICIOUS_FAILURES),
    )


def failure_counts(lock: Lock, ip: str | None, lock_since: datetime, ip_since: datetime) -> tuple[int, int]:
    on_lock, from_address = failure_counts_of({lock.pk: lock_since}, [ip] if ip else [], ip_since)
    return on_lock[lock.pk], from_address.get(ip, 0) if ip else 0


def open_lockout(lock: Lock, at: datetime) -> bool:
    """Disable the lock's keypad, once however many failures race here (the conditional update
    decides), tell the lock over MQTT and raise a security event for the alert engine."""
    until = at + timedelta(seconds=settings.LOCK_LOCKOUT_SECONDS)
    won = (
        Lock.objects.filter(pk=lock.pk)
        .filter(Q(keypad_disabled_until__isnull=True) | Q(keypad_disabled_until__lte=at))
        .update(keypad_disabled_until=until, failures_counted_from=until, updated_at=at)
    )
    if not won:
        return False
    lock.keypad_disabled_until = lock.failures_counted_from = until
    LockCommand.issue(lock, LockCommand.Kind.KEYPAD, {"enabled": False, "until": until.isoformat()}, source="system")
    failures = settings.LOCK_LOCKOUT_FAILURES
    minutes = settings.LOCK_LOCKOUT_WINDOW_SECONDS // 60
    local_until = timezone.localtime(until, lock.zone)
    message = f"{failures} failed attempts in {minutes} minutes: keypad disabled until {local_until:%H:%M}"
    announce(lock, "lockout", "high", message, at, {"until": until.isoformat(), "failures": failures})
    return True


def release_lockout(lock: Lock, at: datetime) -> bool:
    """The block is over: enable the keypad again (once) and resolve the security event."""
    won = Lock.objects.filter(pk=lock.pk, keypad_disabled_until__lte=at).update(
        keypad_disabled_until=None, updated_at=at
    )
    if not won:
        return False
    lock.keypad_disabled_until = None
    LockCommand.issue(lock, LockCommand.Kind.KEYPAD, {"enabled": True}, source="system")
    announce(lock, "lockout", "high", "The keypad lockout ended.", at, {}, resolved=True)
    return True


def flag_address(ip: str, lock: Lock, at: datetime) -> bool:
    """Block an address that failed LOCK_SUSPICIOUS_FAILURES times across locks in the window."""
    window_start = at - timedelta(seconds=settings.LOCK_LOCKOUT_WINDOW_SECONDS)
    failures = address_failures(ip, window_start).count()
    if failures < settings.LOCK_SUSPICIOUS_FAILURES:
        return False
    until = at + timedelta(seconds=settings.LOCK_IP_BLOCK_SECONDS)
    with transaction.atomic():
        entry, created = BlockedAddress.objects.select_for_update().get_or_create(
            ip=ip, defaults={"failures": failures, "flagged_at": at, "blocked_until": until}
        )
        if not created and entry.blocked_until > at:
            return False  # already blocked: one alert per block
        if not created:
            entry.failures, entry.flagged_at, entry.blocked_until = failures, at, until
            entry.save(update_fields=["failures", "flagged_at", "blocked_until"])
    message = (
        f"{failures} failed attempts from {ip} in {settings.LOCK_LOCKOUT_WINDOW_SECONDS // 60} minutes: address blocked"
    )
    announce(lock, "suspicious_ip", "high", message, at, {"ip": ip, "failures": failures})
    return True


def announce(lock: Lock, kind: str, severity: str, message: str, at: datetime, details: dict, resolved=False) -> None:
    """A security event for the alert engine, sent once the detecting transaction committed."""
    device = lock.device
    transaction.on_commit(
        lambda: device_event.send(
            sender=Lock,
            device=device,
            kind=kind,
            severity=severity,
            message=message,
            occurred_at=at,
            details=details,
            resolved=resolved,
        )
    )

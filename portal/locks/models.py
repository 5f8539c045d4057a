"""Smart locks: the lock, its commands (an outbox), its codes (PINs, QR codes, guests) and its access log.

A Lock is a telemetry Device of kind lock (identity, token, last seen, firmware live there; battery,
temperature and signal go through the ingest path as readings, so history and battery alerts come
with them). Everything here lives in the tenant's schema; portal.tenancy.LockRoute (public schema)
maps the lock ids of seed 004's `smartlock/{id}/…` topics to their tenant.
"""

import re
import secrets
import uuid
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from portal.facilities.models import Site
from telemetry.models import Device

LOCK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # one MQTT topic level: no '/', '+', '#'
COMMAND_CHANNEL = "fw_lock_commands"  # the outbox's NOTIFY channel (portal/locks/topics.py)


def validate_lock_id(value: str) -> None:
    if not LOCK_ID.fullmatch(value or ""):
        raise ValidationError(
            "A lock id has 1–64 letters, digits, dots, dashes or underscores, starting with one of the first two."
        )


def new_salt() -> str:
    return secrets.token_hex(16)


class Lock(models.Model):
    class Status(models.TextChoices):
        LOCKED = "locked", "Locked"
        UNLOCKED = "unlocked", "Unlocked"
        JAMMED = "jammed", "Jammed"
        ERROR = "error", "Error"
        UNKNOWN = "unknown", "Unknown"

    class Protocol(models.TextChoices):
        FIELDWATCH = "fieldwatch", "Fieldwatch topics (tenants/{tenant}/locks/{id}/…)"
        SMARTLOCK = "smartlock", "Field locks' topics (smartlock/{id}/…)"

    device = models.OneToOneField(Device, on_delete=models.CASCADE, related_name="lock")
    name = models.CharField(max_length=150)
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.SET_NULL, related_name="locks")
    location = models.CharField(max_length=300, blank=True, help_text="Where on the site: 'Main entrance'.")
    protocol = models.CharField(max_length=12, choices=Protocol.choices, default=Protocol.FIELDWATCH)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UNKNOWN)
    battery = models.PositiveSmallIntegerField(null=True, blank=True)
    signal_strength = models.SmallIntegerField(null=True, blank=True, help_text="dBm")
    temperature = models.FloatField(null=True, blank=True)
    reported_at = models.DateTimeField(null=True, blank=True, help_text="The lock's time of its latest status.")
    # seed 004's DeviceSettings
    auto_lock_enabled = models.BooleanField(default=True)
    auto_lock_delay = models.PositiveIntegerField(default=30, help_text="Seconds before locking again (1–3600).")
    silent_mode = models.BooleanField(default=False)
    led_enabled = models.BooleanField(default=True)
    notifications_enabled = models.BooleanField(default=True)
    keypad_disabled_until = models.DateTimeField(null=True, blank=True)
    # failures before this instant no longer count toward a lockout (the ones that caused the last)
    failures_counted_from = models.DateTimeField(null=True, blank=True)
    offline_announced = models.BooleanField(default=False, help_text="An offline event was sent and not yet resolved.")
    ota_progress = models.PositiveSmallIntegerField(null=True, blank=True)
    ota_state = models.CharField(max_length=20, blank=True)
    sync_salt = models.CharField(max_length=32, default=new_salt, help_text="Salt of the code hashes the lock holds.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)  # the lock page's live cursor

    SETTINGS = ["auto_lock_enabled", "auto_lock_delay", "silent_mode", "led_enabled", "notifications_enabled"]

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("locks-lock-detail", args=[self.pk])

    def delete(self, *args, **kwargs):
        """A lock goes with its device (identity, key, readings): a lock's device has no other use."""
        return self.device.delete(*args, **kwargs)

    @property
    def lock_id(self) -> str:
        return self.device.device_id

    @property
    def online(self) -> bool:
        return self.device.online

    @property
    def zone(self) -> ZoneInfo:
        """The time zone of the lock's schedules: its site's, else the tenant's."""
        if self.site_id and self.site.time_zone:
            return ZoneInfo(self.site.time_zone)
        tenant = getattr(connection, "tenant", None)
        return getattr(tenant, "zone", None) or ZoneInfo("UTC")

    def keypad_locked(self, at: datetime | None = None) -> bool:
        return self.keypad_disabled_until is not None and self.keypad_disabled_until > (at or timezone.now())

    def has_pin(self, pin: str) -> bool:
        """Whether one of the lock's live codes is this PIN (by its digest: an indexed lookup)."""
        from portal.locks import codes

        return PinCode.objects.filter(lock=self, active=True, digest=codes.pin_digest(self.pk, pin)).exists()

    def settings_payload(self) -> dict:
        return {name: getattr(self, name) for name in self.SETTINGS}

    def topic(self, leaf: str, tenant_slug: str) -> str:
        if self.protocol == self.Protocol.SMARTLOCK:
            return f"smartlock/{self.lock_id}/{leaf}"
        return f"tenants/{tenant_slug}/locks/{self.lock_id}/{leaf}"


class LockCommand(models.Model):
    """An outbox row: the portal writes it (pending), the bridge publishes it (sent), the lock's
    response settles it (acknowledged / failed), or the expiry task gives up on it (expired)."""

    class Kind(models.TextChoices):
        LOCK = "lock", "Lock"
        UNLOCK = "unlock", "Unlock"
        SETTINGS = "settings", "Settings sync"
        TIME_SYNC = "time_sync", "Time sync"
        OTA = "ota", "Firmware update"
        CODE_SYNC = "code_sync", "Code sync"
        KEYPAD = "keypad", "Keypad lockout"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    OPEN = (State.PENDING, State.SENT)

    lock = models.ForeignKey(Lock, on_delete=models.CASCADE, related_name="commands")
    request_id = models.UUIDField(default=uuid.uuid4, unique=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    params = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    detail = models.CharField(max_length=300, blank=True, help_text="What the lock answered, or why it expired.")
    progress = models.PositiveSmallIntegerField(null=True, blank=True, help_text="OTA progress the lock reports (%).")
    source = models.CharField(max_length=10, default="portal", help_text="portal, api or system")
    requested_by_id = models.BigIntegerField(null=True, blank=True)
    requested_by_email = models.EmailField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # the outbox's outgoing(): pending rows in order
            models.Index(fields=["id"], condition=Q(state="pending"), name="lockcommand_pending"),
            # the expiry sweep: open rows by deadline
            models.Index(fields=["expires_at"], condition=Q(state__in=["pending", "sent"]), name="lockcommand_open"),
            # the lock page's command list and live cursor
            models.Index(fields=["lock", "-updated_at"], name="lockcommand_lock_recent"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.lock_id and self.lock.name} ({self.state})"

    @property
    def settled(self) -> bool:
        return self.state not in self.OPEN

    @classmethod
    def issue(cls, lock: Lock, kind: str, params: dict | None = None, request=None, source="portal") -> "LockCommand":
        """Write the command and signal the bridge's outbox (delivered by PostgreSQL at commit);
        once committed, its expiry is scheduled for its deadline (portal.locks.tasks.expire_command)."""
        timeout = settings.LOCK_OTA_TIMEOUT_SECONDS if kind == cls.Kind.OTA else settings.LOCK_COMMAND_TIMEOUT_SECONDS
        user = getattr(request, "user", None)
        signed_in = user is not None and user.is_authenticated
        now = timezone.now()
        with transaction.atomic():
            command = cls.objects.create(
                lock=lock,
                kind=kind,
                params=params or {},
                source=source,
                requested_by_id=user.pk if signed_in else None,
                requested_by_email=user.email if signed_in else "",
                created_at=now,
                expires_at=now + timedelta(seconds=timeout),
            )
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [COMMAND_CHANNEL, connection.schema_name])
            from portal.locks.tasks import schedule_expiry

            transaction.on_commit(lambda: schedule_expiry(command))
        return command

    def message(self) -> dict:
        """What the lock receives (seed 004's command message, plus the command's parameters)."""
        return {
            "command": self.kind,
            "request_id": str(self.request_id),
            "timestamp": self.created_at.isoformat(),
            **self.params,
        }


class CodeSync(models.TextChoices):
    """Where a code stands on the lock's keypad (Seam's model: the lock holds its codes offline)."""

    SETTING = "setting", "Setting"
    SET = "set", "Set"
    REMOVING = "removing", "Removing"
    REMOVED = "removed", "Removed"
    FAILED = "failed", "Failed"


class AccessCode(models.Model):
    """What PINs and QR codes share: a window, a use limit counted atomically, revocation."""

    lock = models.ForeignKey(Lock, on_delete=models.CASCADE, related_name="+")
    label = models.CharField(max_length=150, help_text="Whose code: 'Cleaning service'.")
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    max_uses = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: unlimited.")
    uses = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True, help_text="Off once revoked or cleaned up after it expired.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by_email = models.EmailField(blank=True)

    class Meta:
        abstract = True

    @property
    def remaining_uses(self) -> int | None:
        return None if self.max_uses is None else max(0, self.max_uses - self.uses)

    def refusal(self, at: datetime) -> str | None:
        """Why the code does not open the lock at `at` (a reason code), or None when it does."""
        if not self.active or self.revoked_at:
            return "revoked" if self.revoked_at else "inactive"
        if self.valid_from and at < self.valid_from:
            return "not_yet_valid"
        if self.valid_until and at >= self.valid_until:
            return "expired"
        if self.max_uses is not None and self.uses >= self.max_uses:
            return "used_up"
        return None

    def consume(self, at: datetime) -> int | None:
        """Count one use, atomically: of concurrent uses of a code with one use left exactly one
        gets a row back (the conditional UPDATE holds the row lock while it re-checks uses).
        Returns the new use count, or None when the code was used up (or revoked) meanwhile."""
        table = self._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f'UPDATE "{table}" SET uses = uses + 1, last_used_at = %s '
                "WHERE id = %s AND active AND (max_uses IS NULL OR uses < max_uses) RETURNING uses",
                [at, self.pk],
            )
            row = cursor.fetchone()
        if row is None:
            return None
        self.uses, self.last_used_at = row[0], at
        return row[0]


def parse_clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def in_weekly_windows(windows: list[dict], local: datetime) -> bool:
    """True when the wall-clock time `local` (in the lock's zone) falls in one of the weekly windows
    [{"day": 0 (Monday)…6, "start": "10:00", "end": "14:00"}]. An end at or before its start runs
    past midnight into the next day ("Fri 22:00–02:00"). Wall-clock times are what people mean by
    "Mondays 10:00–14:00", so a DST change moves the window with the clock."""
    clock, weekday = local.time().replace(tzinfo=None), local.weekday()
    for window in windows:
        day, start, end = window["day"], parse_clock(window["start"]), parse_clock(window["end"])
        if end > start:
            if weekday == day and start <= clock < end:
                return True
        elif (weekday == day and clock >= start) or (weekday == (day + 1) % 7 and clock < end):
            return True
    return False


class PinCode(AccessCode):
    class Kind(models.TextChoices):
        PERMANENT = "permanent", "Permanent"
        TEMPORARY = "temporary", "Temporary (a window)"
        ONE_TIME = "one_time", "One-time"
        LIMITED = "limited", "N uses"
        SCHEDULED = "scheduled", "Weekly schedule"

    lock = models.ForeignKey(Lock, on_delete=models.CASCADE, related_name="pins")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PERMANENT)
    email = models.EmailField(blank=True, help_text="The PIN is sent here once.")
    digest = models.CharField(max_length=64, help_text="HMAC-SHA256 of the PIN under the server key.")
    sync_digest = models.CharField(max_length=64, help_text="HMAC-SHA256 of the PIN under the lock's salt.")
    length = models.PositiveSmallIntegerField()
    schedule = models.JSONField(default=list, blank=True, help_text="Weekly windows, in the lock's time zone.")
    sync_state = models.CharField(max_length=10, choices=CodeSync.choices, default=CodeSync.SETTING)
    sync_command = models.ForeignKey(LockCommand, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # the access check's lookup (lock, digest), and no two live codes of a lock alike
            models.UniqueConstraint(fields=["lock", "digest"], condition=Q(active=True), name="pincode_live_unique"),
        ]

    def __str__(self):
        return f"PIN {self.label} ({self.get_kind_display()})"

    @classmethod
    def make(cls, lock: Lock, label: str, pin: str | None = None, length: int = 6, **fields) -> tuple["PinCode", str]:
        """A new live code of `lock` (a generated PIN when `pin` is None) and its clear PIN, which
        the caller shows or sends once: only the digests are stored."""
        from portal.locks import codes

        clear = pin or codes.generate(length, lock.has_pin)
        code = cls.objects.create(
            lock=lock,
            label=label,
            digest=codes.pin_digest(lock.pk, clear),
            sync_digest=codes.sync_digest(lock.sync_salt, clear),
            length=len(clear),
            **fields,
        )
        return code, clear

    @property
    def schedule_text(self) -> str:
        """'Mon 10:00–14:00, Fri 22:00–02:00' for people."""
        names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        return ", ".join(f"{names[w['day']]} {w['start']}–{w['end']}" for w in self.schedule)

    def refusal(self, at: datetime, zone: ZoneInfo | None = None) -> str | None:
        reason = super().refusal(at)
        if (
            reason is None
            and self.schedule
            and not in_weekly_windows(self.schedule, at.astimezone(zone or self.lock.zone))
        ):
            return "outside_schedule"
        return reason

    def sync_entry(self, action: str) -> dict:
        """This code as the lock holds it: its salted hash, window, limit and schedule."""
        entry = {"id": self.pk, "action": action}
        if action == "set":
            entry |= {
                "hash": self.sync_digest,
                "length": self.length,
                "valid_from": self.valid_from.isoformat() if self.valid_from else None,
                "valid_until": self.valid_until.isoformat() if self.valid_until else None,
                "max_uses": self.max_uses,
                "schedule": self.schedule,
                "time_zone": str(self.lock.zone),
            }
        return entry


class QrCode(AccessCode):
    lock = models.ForeignKey(Lock, on_delete=models.CASCADE, related_name="qr_codes")
    code = models.UUIDField(default=uuid.uuid4, unique=True)  # the access check's lookup

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"QR {self.label}"

    @property
    def is_single_use(self) -> bool:
        return self.max_uses == 1

    @property
    def used(self) -> bool:
        return self.max_uses is not None and self.uses >= self.max_uses


class GuestAccess(models.Model):
    class Method(models.TextChoices):
        PIN = "pin", "PIN code"
        QR = "qr", "QR code"

    lock = models.ForeignKey(Lock, on_delete=models.CASCADE, related_name="guests")
    name = models.CharField(max_length=150)
    email = models.EmailField()
    method = models.CharField(max_length=3, choices=Method.choices, default=Method.PIN)
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField()
    notes = models.CharField(max_length=500, blank=True)
    pin = models.OneToOneField(PinCode, null=True, blank=True, on_delete=models.SET_NULL, related_name="guest")
    qr = models.OneToOneField(QrCode, null=True, blank=True, on_delete=models.SET_NULL, related_name="guest")
    created_at = models.DateTimeField(default=timezone.now)
    created_by_email = models.EmailField(blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    send_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-valid_from", "-id"]

    def __str__(self):
        return f"{self.name} at {self.lock}"

    @property
    def status(self) -> str:
        now = timezone.now()
        if self.revoked_at:
            return "revoked"
        if now >= self.valid_until:
            return "ended"
        return "active" if now >= self.valid_from else "upcoming"


class AccessLog(models.Model):
    class Method(models.TextChoices):
        PIN = "pin", "PIN code"
        QR = "qr", "QR code"
        APP = "app", "App / portal"
        MANUAL = "manual", "Manual key"

    class Action(models.TextChoices):
        LOCK = "lock", "Lock"
        UNLOCK = "unlock", "Unlock"

    lock = models.ForeignKey(Lock, on_delete=models.CASCADE, related_name="access_logs")
    at = models.DateTimeField(default=timezone.now)
    method = models.CharField(max_length=6, choices=Method.choices)
    action = models.CharField(max_length=6, choices=Action.choices, default=Action.UNLOCK)
    success = models.BooleanField()
    reason = models.CharField(max_length=40, blank=True, help_text="Why it was refused (or 'granted').")
    pin = models.ForeignKey(PinCode, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    qr = models.ForeignKey(QrCode, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_email = models.EmailField(blank=True)
    holder = models.CharField(max_length=150, blank=True, help_text="The code's label or the person's name.")
    source = models.CharField(max_length=10, default="http", help_text="http, mqtt, portal, api or lock")
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    location_lat = models.FloatField(null=True, blank=True)
    location_lon = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["lock", "-at"], name="accesslog_lock_recent"),  # lock page, lockout count
            models.Index(fields=["-at"], name="accesslog_recent"),  # the access log page, retention purge
            # the suspicious-address check: failures of one address in the last minutes
            models.Index(fields=["ip", "at"], condition=Q(success=False), name="accesslog_ip_failures"),
        ]

    def __str__(self):
        return f"{self.get_method_display()} {self.action} on {self.lock_id}: {'ok' if self.success else self.reason}"


class BlockedAddress(models.Model):
    """An address flagged for failing at several locks (seed 004's detect_suspicious_activity)."""

    ip = models.GenericIPAddressField(unique=True)
    failures = models.PositiveIntegerField(default=0)
    flagged_at = models.DateTimeField(default=timezone.now)
    blocked_until = models.DateTimeField()

    class Meta:
        ordering = ["-flagged_at"]

    def __str__(self):
        return f"{self.ip} blocked until {self.blocked_until:%Y-%m-%d %H:%M}"

    @property
    def blocked(self) -> bool:
        return self.blocked_until > timezone.now()


def open_commands():
    return LockCommand.objects.filter(state__in=LockCommand.OPEN)


def settle_open(request_id, state: str, detail: str, at: datetime, progress=None) -> int:
    """Move an open command to `state` once: a repeated response changes nothing (row count 0)."""
    return (
        open_commands()
        .filter(request_id=request_id)
        .update(
            state=state,
            detail=detail[:300],
            settled_at=at,
            updated_at=at,
            progress=F("progress") if progress is None else progress,
        )
    )

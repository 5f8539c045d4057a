"""Seed 004's REST API for the apps that used it, on its paths and fields (portal.api.toolkit).

    /api/v1/devices/                 locks: list, create · {id}/ read, delete
    /api/v1/devices/{id}/lock/ unlock/ status/ battery/ logs/ settings/
    /api/v1/access/pins/ (+ {id}/validate/)   qrcodes/ (+ {id}/scan/)   logs/ (+ recent/)
    /api/v1/security/alerts/ (+ unresolved/, {id}/resolve/)   failed-attempts/

Lists are seed 004's pages {count, next, previous, total_pages, current_page, results}. A "device"
is a lock (its id is the lock's). Where seed 004 handed out a secret it kept in clear, Fieldwatch
keeps only digests: `pin_code` is in the answer that creates a PIN and null everywhere after, and a
failed attempt's `attempted_pin` is always null. Everyone reads; operators lock and unlock and
resolve alerts; admins manage locks, settings and codes. The queries are the pages' (FilterSets,
access.check, LockCommand.issue), so the API and the pages agree.
"""

import secrets
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Exists, Max, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from ninja import Field, Query
from ninja.responses import Status

from portal.alerts import alerting
from portal.alerts.models import Alert
from portal.api.endpoint import ApiError
from portal.api.toolkit import PageNumber, Router, Routes, Schema, audit, text
from portal.audit.log import client_ip
from portal.locks import access, codes
from portal.locks.code_views import sync
from portal.locks.filters import AccessLogFilter
from portal.locks.forms import LATEST
from portal.locks.models import AccessLog, BlockedAddress, Lock, LockCommand, PinCode, QrCode, validate_lock_id
from portal.tenancy.models import LockRoute, Role
from telemetry import queries
from telemetry.models import Device, Sensor

router = Router(tags=["Locks (seed 004)"])
routes = Routes(router)  # @routes.get(path, answer schema, summary, role=…, status=…, pages=…)
BATTERY_DAYS = 7


def locks():
    return Lock.objects.select_related("device", "site").annotate(last_activity=Max("access_logs__at"))


def get_lock(lock_id: int) -> Lock:
    return get_object_or_404(locks(), pk=lock_id)


def actor_name(request) -> str:
    user = getattr(request, "user", None)
    return (user.name or user.email) if user is not None and user.is_authenticated else ""


# --- devices (locks) ------------------------------------------------------------------------------


class SettingsOut(Schema):
    auto_lock_enabled: bool
    auto_lock_delay: int
    silent_mode: bool
    led_enabled: bool
    notifications_enabled: bool


# Seed 004's field names over Fieldwatch's attributes: Field(alias=…) names the attribute (dotted
# for a related object's), the answer and the OpenAPI document keep seed 004's name.


class DeviceOut(Schema):
    id: int
    name: str
    device_id: str = Field(alias="lock_id")
    location: str
    is_online: bool = Field(alias="online")
    battery_level: int | None = Field(alias="battery")
    lock_status: str = Field(alias="status")
    firmware_version: str = Field(alias="device.firmware")
    last_activity: datetime | None  # locks() annotates it
    created_at: datetime

    @staticmethod
    def resolve_location(lock):
        return ", ".join(part for part in (lock.site.name if lock.site else "", lock.location) if part)


class DeviceDetailOut(DeviceOut):
    owner_name: str
    status_display: str
    settings: SettingsOut

    @staticmethod
    def resolve_owner_name(lock):
        return getattr(getattr(connection, "tenant", None), "name", "")

    @staticmethod
    def resolve_status_display(lock):
        return lock.get_status_display()

    @staticmethod
    def resolve_settings(lock):
        return lock.settings_payload()


class OwnerOut(Schema):
    id: int | None
    email: str


class CreatedDeviceOut(DeviceOut):
    owner: OwnerOut
    device_key: str = Field(description="The lock's device key, shown in this answer only")


class DeviceIn(Schema):
    name: text(150, min_length=1)
    device_id: text(64) = Field("", description="The lock's hardware id; generated when empty")
    location: text(300) = ""


@routes.get("/api/v1/devices/", list[DeviceOut], "Locks", pages=PageNumber)
def device_list(request):
    return locks().order_by("name", "id")


def new_lock_id() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))


@routes.post("/api/v1/devices/", CreatedDeviceOut, "Add a lock", role=Role.ADMIN, status=201)
def device_create(request, payload: DeviceIn):
    lock_id = payload.device_id or new_lock_id()
    try:
        validate_lock_id(lock_id)
    except Exception as error:  # ValidationError: its message is the field's
        raise ApiError(
            400, "invalid_request", "device_id: " + " ".join(error.messages), fields={"device_id": error.messages[0]}
        ) from None
    if Device.objects.filter(device_id=lock_id).exists() or LockRoute.objects.filter(lock_id=lock_id).exists():
        raise ApiError(409, "device_id_taken", "This device id is already registered.", fields={"device_id": "taken"})
    with transaction.atomic():
        device = Device.objects.create(
            device_id=lock_id, name=payload.name, kind=Device.Kind.LOCK, assigned_at=timezone.now()
        )
        key = device.issue_token()
        device.save()
        lock = Lock.objects.create(device=device, name=payload.name, location=payload.location)
        audit(request, "lock.create", lock, {"lock_id": lock_id, "via": "api"})
    created = get_lock(lock.pk)
    user = getattr(request, "user", None)
    signed_in = user is not None and user.is_authenticated
    created.owner = {"id": user.pk if signed_in else None, "email": user.email if signed_in else ""}
    created.device_key = key
    return Status(201, created)


@routes.get("/api/v1/devices/{lock_id}/", DeviceDetailOut, "A lock")
def device_detail(request, lock_id: int):
    return get_lock(lock_id)


@routes.delete("/api/v1/devices/{lock_id}/", None, "Delete a lock", role=Role.ADMIN, status=204)
def device_delete(request, lock_id: int):
    lock = get_lock(lock_id)
    audit(request, "lock.delete", lock, {"via": "api"})
    lock.delete()
    return Status(204, None)


class ControlIn(Schema):
    pin_code: text(8) | None = Field(
        None, description="Optional: the command is sent only if this PIN opens the lock now"
    )


class ControlOut(Schema):
    status: str
    device_id: str
    timestamp: datetime
    request_id: str
    command_state: str


def control(request, lock_id: int, kind: str, payload: ControlIn | None):
    lock = get_lock(lock_id)
    if payload is not None and payload.pin_code:
        attempt = access.Attempt("pin", payload.pin_code, action=kind, ip=client_ip(request), source="api")
        decision = access.check(lock, attempt)
        if not decision.allowed:
            raise ApiError(403, "pin_refused", decision.message, reason=decision.reason)
    command = LockCommand.issue(lock, kind, request=request, source="api")
    audit(request, f"lock.{kind}", lock, {"request_id": str(command.request_id), "via": "api"})
    return {
        "status": f"{kind} command sent",
        "device_id": lock.lock_id,
        "timestamp": command.created_at,
        "request_id": str(command.request_id),
        "command_state": command.state,
    }


@routes.post("/api/v1/devices/{lock_id}/lock/", ControlOut, "Lock", role=Role.OPERATOR)
def device_lock(request, lock_id: int, payload: ControlIn | None = None):
    return control(request, lock_id, LockCommand.Kind.LOCK, payload)


@routes.post("/api/v1/devices/{lock_id}/unlock/", ControlOut, "Unlock", role=Role.OPERATOR)
def device_unlock(request, lock_id: int, payload: ControlIn | None = None):
    return control(request, lock_id, LockCommand.Kind.UNLOCK, payload)


class StatusOut(Schema):
    device_id: str = Field(alias="lock_id")
    is_online: bool = Field(alias="online")
    battery_level: int | None = Field(alias="battery")
    lock_status: str = Field(alias="status")
    last_seen: datetime | None = Field(alias="device.last_seen")
    signal_strength: int | None
    temperature: float | None
    keypad_disabled_until: datetime | None


@routes.get("/api/v1/devices/{lock_id}/status/", StatusOut, "Live status")
def device_status(request, lock_id: int):
    return get_lock(lock_id)


class BatteryPoint(Schema):
    timestamp: datetime
    value: float


class BatteryOut(Schema):
    device_id: str
    battery_level: int | None
    history: list[BatteryPoint]


@routes.get("/api/v1/devices/{lock_id}/battery/", BatteryOut, "Battery and its last 7 days")
def device_battery(request, lock_id: int):
    lock = get_lock(lock_id)
    sensor = Sensor.objects.filter(device=lock.device, key="battery").values_list("pk", flat=True).first()
    now = timezone.now()
    rows = (
        queries.raw_readings([sensor], now - timedelta(days=BATTERY_DAYS), now + timedelta(minutes=5), limit=2000).rows
        if sensor
        else []
    )
    return {
        "device_id": lock.lock_id,
        "battery_level": lock.battery,
        "history": [{"timestamp": ts, "value": value} for _, ts, value in rows],
    }


class LogOut(Schema):
    id: int
    device: int = Field(alias="lock_id")
    user: str
    access_method: str = Field(alias="method")
    action: str
    success: bool
    timestamp: datetime = Field(alias="at")
    ip_address: str | None = Field(alias="ip")

    @staticmethod
    def resolve_user(entry):
        return entry.holder or entry.actor_email


@routes.get("/api/v1/devices/{lock_id}/logs/", list[LogOut], "A lock's access log", pages=PageNumber)
def device_logs(request, lock_id: int):
    return get_lock(lock_id).access_logs.order_by("-at", "-id")


class SettingsAnswer(SettingsOut):
    id: int
    device: int


class SettingsIn(Schema):
    auto_lock_enabled: bool | None = None
    auto_lock_delay: int | None = Field(None, ge=1, le=3600)
    silent_mode: bool | None = None
    led_enabled: bool | None = None
    notifications_enabled: bool | None = None


def settings_answer(lock: Lock) -> dict:
    return {"id": lock.pk, "device": lock.pk, **lock.settings_payload()}


@routes.get("/api/v1/devices/{lock_id}/settings/", SettingsAnswer, "Settings")
def settings_read(request, lock_id: int):
    return settings_answer(get_lock(lock_id))


@routes.put("/api/v1/devices/{lock_id}/settings/", SettingsAnswer, "Change settings", role=Role.ADMIN)
def settings_update(request, lock_id: int, payload: SettingsIn):
    lock = get_lock(lock_id)
    changes = {}
    for name, value in payload.dict(exclude_none=True).items():
        if getattr(lock, name) != value:
            changes[name] = [getattr(lock, name), value]
            setattr(lock, name, value)
    if changes:
        lock.save(update_fields=[*changes, "updated_at"])
        command = LockCommand.issue(
            lock, LockCommand.Kind.SETTINGS, {"settings": lock.settings_payload()}, request, "api"
        )
        audit(request, "lock.settings", lock, changes | {"request_id": str(command.request_id)})
    return settings_answer(lock)


# --- PIN and QR codes ------------------------------------------------------------------------------


class DeviceRef(Schema):
    id: int
    name: str


class PinOut(Schema):
    id: int
    device: DeviceRef = Field(alias="lock")
    user: str = Field(alias="label")
    pin_code: str | None = Field(
        None, alias="clear", description="Only in the answer that created it; never stored in clear"
    )
    is_active: bool = Field(alias="active")
    is_temporary: bool
    valid_from: datetime | None
    valid_until: datetime | None
    usage_count: int = Field(alias="uses")
    max_uses: int | None

    @staticmethod
    def resolve_is_temporary(pin):
        return pin.valid_until is not None


class PinIn(Schema):
    device: int
    user: text(150) = Field("", description="Whose code it is (a name)")
    pin_code: text(8) | None = Field(None, description="4–8 digits; generated when absent")
    is_temporary: bool = False
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    max_uses: int | None = Field(None, ge=1, le=100_000)


def aware(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if timezone.is_naive(value):
        raise ApiError(
            400, "invalid_request", f"{field}: give a time zone (…Z or …+01:00).", fields={field: "needs a time zone"}
        )
    if not datetime(2000, 1, 1, tzinfo=LATEST.tzinfo) <= value <= LATEST:
        raise ApiError(400, "invalid_request", f"{field}: between 2000 and 2100.", fields={field: "out of range"})
    return value


@routes.get("/api/v1/access/pins/", list[PinOut], "PIN codes", pages=PageNumber)
def pin_list(request, device: int | None = None):
    pins = PinCode.objects.select_related("lock").order_by("-created_at", "-id")
    return pins.filter(lock_id=device) if device else pins


@routes.post("/api/v1/access/pins/", PinOut, "Create a PIN code", role=Role.ADMIN, status=201)
def pin_create(request, payload: PinIn):
    lock = get_object_or_404(Lock.objects.select_related("device", "site"), pk=payload.device)
    start, end = aware(payload.valid_from, "valid_from"), aware(payload.valid_until, "valid_until")
    if payload.is_temporary and end is None:
        raise ApiError(
            400, "invalid_request", "valid_until: a temporary PIN needs an end.", fields={"valid_until": "required"}
        )
    if start and end and end <= start:
        raise ApiError(
            400, "invalid_request", "valid_until: must follow valid_from.", fields={"valid_until": "before valid_from"}
        )

    clear = payload.pin_code
    if clear:
        problem = codes.format_problem(clear) or codes.weakness(clear)
        problem = problem or ("This lock already has this PIN." if lock.has_pin(clear) else None)
        if problem:
            raise ApiError(400, "invalid_request", f"pin_code: {problem}", fields={"pin_code": problem})
    kind = PinCode.Kind.TEMPORARY if end else PinCode.Kind.PERMANENT
    if payload.max_uses:
        kind = PinCode.Kind.ONE_TIME if payload.max_uses == 1 else PinCode.Kind.LIMITED
    user = getattr(request, "user", None)
    with transaction.atomic():
        pin, clear = PinCode.make(
            lock,
            payload.user or actor_name(request) or "API",
            clear,
            kind=kind,
            valid_from=start,
            valid_until=end,
            max_uses=payload.max_uses,
            created_by_email=user.email if user is not None and user.is_authenticated else "",
        )
        sync(lock, [pin], "set", request, "api")
        audit(request, "lock.pin.create", pin, {"lock": lock.lock_id, "via": "api"})
    pin.clear = clear
    return Status(201, pin)


class ValidateIn(Schema):
    pin_code: text(64)


class ValidateOut(Schema):
    valid: bool
    pin_id: int | None = None
    device_id: str | None = None
    usage_count: int | None = None
    remaining_uses: int | None = None
    reason: str | None = None


@routes.post("/api/v1/access/pins/{pin_id}/validate/", ValidateOut, "Use a PIN", role=Role.OPERATOR)
def pin_validate(request, pin_id: int, payload: ValidateIn):
    pin = get_object_or_404(PinCode.objects.select_related("lock__device", "lock__site"), pk=pin_id)
    attempt = access.Attempt("pin", payload.pin_code, ip=client_ip(request), source="api", expected=pin)
    decision = access.check(pin.lock, attempt)
    if not decision.allowed:
        return {"valid": False, "reason": decision.message}
    return {
        "valid": True,
        "pin_id": pin.pk,
        "device_id": pin.lock.lock_id,
        "usage_count": decision.code.uses,
        "remaining_uses": decision.code.remaining_uses,
    }


class QrOut(Schema):
    id: int
    device: int = Field(alias="lock_id")
    created_by: str = Field(alias="created_by_email")
    code: str
    qr_image: str
    is_single_use: bool
    used: bool
    valid_until: datetime | None
    created_at: datetime

    @staticmethod
    def resolve_code(qr):
        return str(qr.code)

    @staticmethod
    def resolve_qr_image(qr, context):
        return context["request"].build_absolute_uri(reverse("locks-qr-svg", args=[qr.lock_id, qr.pk]))


class QrIn(Schema):
    device: int
    is_single_use: bool = True
    valid_until: datetime
    max_uses: int | None = Field(None, ge=2, le=100_000, description="For a multi-use code; empty: unlimited")


@routes.get("/api/v1/access/qrcodes/", list[QrOut], "QR codes", role=Role.ADMIN, pages=PageNumber)
def qr_list(request, device: int | None = None):
    found = QrCode.objects.order_by("-created_at", "-id")
    return found.filter(lock_id=device) if device else found


@routes.post("/api/v1/access/qrcodes/", QrOut, "Create a QR code", role=Role.ADMIN, status=201)
def qr_create(request, payload: QrIn):
    lock = get_object_or_404(Lock, pk=payload.device)
    until = aware(payload.valid_until, "valid_until")
    if until <= timezone.now():
        raise ApiError(
            400, "invalid_request", "valid_until: must be in the future.", fields={"valid_until": "in the past"}
        )
    qr = QrCode.objects.create(
        lock=lock,
        label=actor_name(request) or "API",
        max_uses=1 if payload.is_single_use else payload.max_uses,
        valid_until=until,
        created_by_email=getattr(getattr(request, "user", None), "email", "") or "",
    )
    audit(request, "lock.qr.create", qr, {"lock": lock.lock_id, "via": "api"})
    return Status(201, qr)


class ScanIn(Schema):
    code: text(64)


class ScanOut(Schema):
    valid: bool
    device_id: str
    action: str
    message: str


@routes.post("/api/v1/access/qrcodes/{qr_id}/scan/", ScanOut, "Use a QR code", role=Role.OPERATOR)
def qr_scan(request, qr_id: int, payload: ScanIn):
    qr = get_object_or_404(QrCode.objects.select_related("lock__device", "lock__site"), pk=qr_id)
    decision = access.check(
        qr.lock, access.Attempt("qr", payload.code, ip=client_ip(request), source="api", expected=qr)
    )
    return {"valid": decision.allowed, "device_id": qr.lock.lock_id, "action": "unlock", "message": decision.message}


# --- access logs ----------------------------------------------------------------------------------


class FullLogOut(LogOut):
    device: DeviceRef = Field(alias="lock")
    failure_reason: str | None
    location_lat: float | None
    location_lon: float | None

    @staticmethod
    def resolve_failure_reason(entry):
        return None if entry.success else entry.reason


class LogQuery(Schema):
    device: int | None = Field(None, ge=1)
    start_date: str | None = Field(None, max_length=10, description="YYYY-MM-DD")
    end_date: str | None = Field(None, max_length=10, description="YYYY-MM-DD")


def access_logs(query: LogQuery):
    params = {"lock": query.device, "start": query.start_date, "end": query.end_date}
    filterset = AccessLogFilter(
        {k: v for k, v in params.items() if v}, queryset=AccessLog.objects.select_related("lock")
    )
    if not filterset.is_valid():
        fields = {
            {"lock": "device", "start": "start_date", "end": "end_date"}[k]: " ".join(v)
            for k, v in filterset.errors.items()
        }
        raise ApiError(400, "invalid_request", "; ".join(f"{k}: {v}" for k, v in fields.items()), fields=fields)
    return filterset.qs.order_by("-at", "-id")


@routes.get("/api/v1/access/logs/", list[FullLogOut], "Access logs", pages=PageNumber)
def log_list(request, query: Query[LogQuery]):
    return access_logs(query)


@routes.get("/api/v1/access/logs/recent/", list[FullLogOut], "The last 24 hours", pages=PageNumber)
def log_recent(request):
    return (
        AccessLog.objects.select_related("lock")
        .filter(at__gte=timezone.now() - timedelta(days=1))
        .order_by("-at", "-id")
    )


# --- security ---------------------------------------------------------------------------------------


class AlertOut(Schema):
    id: int
    device: DeviceRef | None
    alert_type: str
    severity: str
    description: str = Field(alias="summary")
    is_resolved: bool
    created_at: datetime = Field(alias="opened_at")

    @staticmethod
    def resolve_device(alert, context):
        lock = context["locks"].get(alert.device_id) if "locks" in context else None
        lock = lock or Lock.objects.filter(device_id=alert.device_id).only("pk", "name").first()
        return {"id": lock.pk, "name": lock.name} if lock else None

    @staticmethod
    def resolve_alert_type(alert):
        facts = [fact for fact in alert.trigger_values or [] if isinstance(fact, dict) and fact.get("event")]
        return facts[0]["event"] if facts else "rule"

    @staticmethod
    def resolve_is_resolved(alert):
        return alert.status == Alert.Status.RESOLVED


def lock_alerts():
    return Alert.objects.filter(device_id__in=Lock.objects.values("device_id")).order_by("-opened_at", "-id")


@routes.get("/api/v1/security/alerts/", list[AlertOut], "Security alerts of the locks", pages=PageNumber)
def alert_list(request):
    return lock_alerts()


@routes.get("/api/v1/security/alerts/unresolved/", list[AlertOut], "Unresolved alerts", pages=PageNumber)
def alert_unresolved(request):
    return lock_alerts().exclude(status=Alert.Status.RESOLVED)


class ResolveIn(Schema):
    notes: text(300) = ""


class ResolvedOut(Schema):
    id: int
    status: str
    resolved_by: str
    resolved_at: datetime | None


@routes.post("/api/v1/security/alerts/{alert_id}/resolve/", ResolvedOut, "Resolve an alert", role=Role.OPERATOR)
def alert_resolve(request, alert_id: int, payload: ResolveIn | None = None):
    alert = get_object_or_404(lock_alerts(), pk=alert_id)
    if alert.status != Alert.Status.RESOLVED:
        alerting.resolve(alert, request, payload.notes if payload else "")
        alert.refresh_from_db()
    return {
        "id": alert.pk,
        "status": "resolved",
        "resolved_by": alert.resolved_by_email or "",
        "resolved_at": alert.resolved_at,
    }


class FailedOut(Schema):
    id: int
    device: int = Field(alias="lock_id")
    attempted_pin: str | None = Field(None, description="Always null: PINs are never kept in clear")
    ip_address: str | None = Field(alias="ip")
    attempt_count: int  # failed_attempts() annotates both
    is_blocked: bool
    timestamp: datetime = Field(alias="at")

    @staticmethod
    def resolve_attempted_pin(entry):
        return None


@routes.get("/api/v1/security/failed-attempts/", list[FailedOut], "Failed attempts", pages=PageNumber)
def failed_attempts(request):
    """Refused PIN and QR attempts, each with how many failures its address made in the 15 minutes
    before it and whether that address is blocked now."""
    window = timedelta(minutes=15)
    earlier = (
        AccessLog.objects.filter(
            ip=OuterRef("ip"), success=False, at__lte=OuterRef("at"), at__gt=OuterRef("at") - window
        )
        .values("ip")
        .annotate(n=Count("id"))
        .values("n")
    )
    blocked = BlockedAddress.objects.filter(ip=OuterRef("ip"), blocked_until__gt=timezone.now())
    return (
        AccessLog.objects.filter(success=False, method__in=[AccessLog.Method.PIN, AccessLog.Method.QR])
        .annotate(attempt_count=Coalesce(Subquery(earlier), Value(1)), is_blocked=Exists(blocked))
        .order_by("-at", "-id")
    )

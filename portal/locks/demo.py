"""Demo locks for `seed_demo`: acme gets three (one speaking seed 004's topics) with PINs, a weekly
cleaning code, a guest and a QR code; globex gets one. Rules alert on lock security events and low
batteries. Idempotent: what exists is kept (a PIN is printed only when it is made)."""

from datetime import timedelta

from django.utils import timezone

from portal.alerts.models import AlertRule, RuleCondition
from portal.facilities.models import Site
from portal.locks.code_views import grant, sync
from portal.locks.models import GuestAccess, Lock, PinCode, QrCode
from portal.tenancy.models import LockRoute
from telemetry.models import Device

LOCKS = {
    # lock id: (name, site, location, protocol)
    "acme": {
        "acme-door-01": ("Main entrance", "Riverside Hospital", "Lobby", Lock.Protocol.FIELDWATCH),
        "acme-door-02": ("Plant room", "Riverside Hospital", "Basement", Lock.Protocol.FIELDWATCH),
        "ACMESL000001": ("Cold store", "Riverside Hospital", "Kitchen", Lock.Protocol.SMARTLOCK),
    },
    "globex": {"globex-door-01": ("Back office", None, "Staff only", Lock.Protocol.FIELDWATCH)},
}
CLEANING = [{"day": 0, "start": "10:00", "end": "14:00"}]  # seed 004's cleaning service, Mondays


def seed_tenant(tenant, log) -> None:
    made = [ensure_lock(lock_id, *spec) for lock_id, spec in LOCKS.get(tenant.slug, {}).items()]
    fresh = [lock for lock in made if lock is not None]
    for lock in fresh:
        add_codes(lock, log)
    if fresh:
        log(f"{tenant.slug}: {len(fresh)} locks")
    ensure_rules()


def ensure_lock(lock_id, name, site_name, location, protocol) -> Lock | None:
    if Device.objects.filter(device_id=lock_id).exists() or LockRoute.objects.filter(lock_id=lock_id).exists():
        return None
    site = Site.objects.filter(name=site_name).first() if site_name else None
    device = Device.objects.create(device_id=lock_id, name=name, kind=Device.Kind.LOCK, assigned_at=timezone.now())
    device.issue_token()
    device.save()
    return Lock.objects.create(
        device=device, name=name, site=site, location=location, protocol=protocol, status=Lock.Status.LOCKED
    )


def add_codes(lock: Lock, log) -> None:
    now = timezone.now()
    staff, clear = PinCode.make(lock, "Facilities team", created_by_email="demo")
    cleaning, cleaning_clear = PinCode.make(
        lock, "Cleaning service", kind=PinCode.Kind.SCHEDULED, schedule=CLEANING, created_by_email="demo"
    )
    courier, _ = PinCode.make(
        lock,
        "Courier",
        kind=PinCode.Kind.ONE_TIME,
        max_uses=1,
        valid_until=now + timedelta(days=2),
        created_by_email="demo",
    )
    sync(lock, [staff, cleaning, courier], "set", source="system")
    QrCode.objects.create(lock=lock, label="Maintenance visit", max_uses=1, valid_until=now + timedelta(days=7))
    guest = GuestAccess(
        lock=lock, name="Dana Visitor", email="dana@example.com", valid_from=now, valid_until=now + timedelta(days=3)
    )
    grant(guest)
    log(f"  {lock.name}: PIN {clear} (Facilities team), {cleaning_clear} (Cleaning service, Mondays 10–14)")


def ensure_rules() -> None:
    rules = {
        "Lock security": (
            "high",
            [("security_event", {"event_kinds": "lockout,tamper,jammed,suspicious_ip,command_expired", "minutes": 60})],
        ),
        "Lock offline": ("medium", [("security_event", {"event_kinds": "offline"})]),
        "Lock battery low": ("low", [("battery_below", {"threshold": 20, "sensor_key": "battery"})]),
    }
    for name, (severity, conditions) in rules.items():
        if AlertRule.objects.filter(name=name).exists():
            continue
        rule = AlertRule.objects.create(name=name, target_kind="all_locks", severity=severity)
        for n, (kind, values) in enumerate(conditions):
            RuleCondition.objects.create(rule=rule, position=n, kind=kind, **values)

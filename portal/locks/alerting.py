"""Lock targets for the alert engine (discovered by portal.alerts.targets): one lock, or every lock.

Locks are devices underneath, so their subjects are devices and every device condition applies:
battery below (the `battery` sensor the status messages feed), offline, and security events
(lockout, tamper, jammed, command_expired, suspicious_ip, offline — sent through
telemetry.signals.device_event by portal/locks).
"""

from portal.alerts.targets import Subject, TargetKind
from portal.locks.models import Lock


class LockTarget(TargetKind):
    code, label, object_label, subject = "lock", "One lock", "Lock", "device"

    def objects(self):
        return [(lock.device_id, f"{lock.name} ({lock.lock_id})") for lock in Lock.objects.select_related("device")]

    def exists(self, pk):
        return Lock.objects.filter(device_id=pk).exists()

    def subjects(self, rules):
        found = set(Lock.objects.filter(device_id__in={r.target_id for r in rules}).values_list("device_id", flat=True))
        return {r.pk: [Subject.for_device(r.target_id)] if r.target_id in found else [] for r in rules}


class EveryLock(TargetKind):
    code, label, subject = "all_locks", "Every lock", "device"

    def describe(self, rule, names=None):
        return "every lock"

    def subjects(self, rules):
        devices = [Subject.for_device(pk) for pk in Lock.objects.values_list("device_id", flat=True)]
        return {r.pk: devices for r in rules}


TARGETS = [LockTarget(), EveryLock()]


def device_context(device_ids) -> dict:
    rows = Lock.objects.filter(device_id__in=device_ids).values_list("device_id", "name", "site__name")
    return {pk: {"labels": {"lock": name, **({"site": site} if site else {})}} for pk, name, site in rows}


SECURITY_RULE = "Lock security"
SECURITY_EVENTS = "lockout,tamper,jammed,suspicious_ip,command_expired,offline"


def ensure_security_rule() -> None:
    """The rule that turns lock security events into alerts, made with a tenant's first lock (a
    lockout must open an alert without anyone writing a rule first); admins may change it."""
    from portal.alerts.models import AlertRule, RuleCondition

    if AlertRule.objects.filter(name=SECURITY_RULE).exists():
        return
    rule = AlertRule.objects.create(
        name=SECURITY_RULE,
        description="Lockouts, tampering, jams, suspicious addresses, unanswered commands, offline locks.",
        target_kind="all_locks",
        severity="high",
    )
    RuleCondition.objects.create(rule=rule, kind="security_event", event_kinds=SECURITY_EVENTS, minutes=60)

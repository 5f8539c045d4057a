"""Demo rules and channels for both tenants (seed_demo), on the facilities demo's sensors.

`manage.py simulate` drives the main chillers out of range and silent now and then (see its
Incidents), so these rules open and resolve alerts while the demo runs.
"""

from portal.alerts.models import AlertRule, Channel, RuleCondition
from telemetry.models import Device, Sensor

# name: (target kind, device id, sensor key or type, {rule fields}, [(condition kind, {values})])
RULES = {
    "acme": {
        "Main chiller supply water too warm": (
            "sensor",
            "acme-gw-01",
            "supply_temp",
            {"severity": "high", "for_seconds": 120, "keep_firing_for_seconds": 120},
            [("above", {"threshold": 10, "hysteresis": 0.5})],
        ),
        "Roof chiller warm under heavy load": (
            "sensor",
            "acme-gw-06",
            "supply_temp",
            {"severity": "medium", "for_seconds": 300},
            [("above", {"threshold": 8}), ("above", {"threshold": 110, "sensor_key": "power"})],
        ),
        "Pharmacy freezer too warm": (
            "sensor",
            "acme-gw-03",
            "cabinet_temp",
            {"severity": "critical", "for_seconds": 300},
            [("above", {"threshold": -15, "hysteresis": 1})],
        ),
        "Cold rooms out of range": (
            "site",
            "Harbour Distribution Centre",
            "temperature",
            {"severity": "medium", "for_seconds": 300},
            [("outside", {"low": 0, "high": 8, "hysteresis": 0.3})],
        ),
        "Main chiller gateway offline": ("device", "acme-gw-01", "", {"severity": "high"}, [("offline", {})]),
        "Theatre humidity high": (
            "sensor",
            "acme-gw-02",
            "humidity",
            {"severity": "low", "for_seconds": 600},
            [("above", {"threshold": 65})],
        ),
    },
    "globex": {
        "Walk-in cooler too warm": (
            "sensor",
            "globex-gw-01",
            "room_temp",
            {"severity": "high", "for_seconds": 180, "keep_firing_for_seconds": 120},
            [("above", {"threshold": 6, "hysteresis": 0.3})],
        ),
        "Blast freezer too warm": (
            "sensor",
            "globex-gw-02",
            "cabinet_temp",
            {"severity": "critical", "for_seconds": 300},
            [("above", {"threshold": -15})],
        ),
        "Kitchen gateway offline": ("device", "globex-gw-01", "", {"severity": "high"}, [("offline", {})]),
    },
}
CHANNELS = {
    "acme": [
        {
            "name": "Operations email",
            "kind": "email",
            "email_roles": "admin,owner",
            "severities": "medium,high,critical",
        },
        {"name": "On-call SMS", "kind": "sms", "phone_numbers": "+351910000000", "severities": "critical"},
    ],
    "globex": [{"name": "Kitchen email", "kind": "email", "email_roles": "owner,admin", "severities": "high,critical"}],
}


def target_id(kind: str, device_id: str, key: str):
    from portal.facilities.models import Site

    if kind == "site":
        site = Site.objects.filter(name=device_id).first()
        return site.pk if site else None
    device = Device.objects.filter(device_id=device_id).first()
    if device is None:
        return None
    if kind == "device":
        return device.pk
    sensor = Sensor.objects.filter(device=device, key=key).first()
    return sensor.pk if sensor else None


def seed_tenant(tenant, log) -> None:
    made = 0
    for name, (kind, ref, key, fields, conditions) in RULES.get(tenant.slug, {}).items():
        pk = target_id(kind, ref, key)
        if pk is None or AlertRule.objects.filter(name=name).exists():
            continue
        rule = AlertRule.objects.create(
            name=name, target_kind=kind, target_id=pk, sensor_type=key if kind == "site" else "", **fields
        )
        for n, (condition, values) in enumerate(conditions):
            RuleCondition.objects.create(rule=rule, position=n, kind=condition, **values)
        made += 1
    for fields in CHANNELS.get(tenant.slug, []):
        Channel.objects.get_or_create(name=fields["name"], defaults=fields)
    if made:
        log(f"{tenant.slug}: {made} alert rules")

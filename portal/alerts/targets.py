"""What a rule can watch, and the subjects (sensors or devices) each target covers.

A target kind knows how to list its objects for the rule form, describe a rule's target, and
turn rules into subjects in bulk. Sensor-valued kinds (a sensor; every sensor of a type on an
asset, a site or the tenant) give one subject per sensor; device kinds (a device; fleet objects
such as machines and locks, which are devices underneath) give one subject per device.

Fleet apps add kinds without this module naming them: a module `portal/<app>/alerting.py` with
`TARGETS = [TargetKind subclasses' instances]` and optionally `device_context(device_ids)`
returning {device id: {"labels": {...}}} is discovered at first use, like dashboard widgets.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache

from portal.core.discovery import app_modules
from portal.facilities.models import Asset, Site
from telemetry.models import Device, Sensor


@dataclass(frozen=True)
class Subject:
    key: str  # "sensor:12" or "device:3": the alert's target
    device_id: int
    sensor_id: int | None = None

    @classmethod
    def for_sensor(cls, sensor_id: int, device_id: int) -> "Subject":
        return cls(f"sensor:{sensor_id}", device_id, sensor_id)

    @classmethod
    def for_device(cls, device_id: int) -> "Subject":
        return cls(f"device:{device_id}", device_id)


@dataclass
class Context:
    """Where a subject sits, for labels, filters, silences and routing."""

    label: str = ""
    site_id: int | None = None
    asset_id: int | None = None
    labels: dict = field(default_factory=dict)


class TargetKind:
    code = ""
    label = ""
    subject = "sensor"  # or "device"
    object_label = ""  # "Sensor", "Asset"…; empty: the kind needs no object (the whole tenant)
    needs_sensor_type = False

    def objects(self) -> list[tuple[int, str]]:
        """(id, label) of the objects a rule of this kind may watch, for the form."""
        return []

    def exists(self, pk) -> bool:
        return pk in {pk for pk, _ in self.objects()}

    def describe(self, rule, names: dict | None = None) -> str:
        label = dict(self.objects()).get(rule.target_id, f"#{rule.target_id}") if self.object_label else ""
        of_type = f"every {rule.sensor_type} sensor" if self.needs_sensor_type else ""
        if of_type and label:
            return f"{of_type} of {self.object_label.lower()} {label}"
        return of_type or f"{self.object_label.lower()} {label}".strip() or self.label

    def subjects(self, rules) -> dict[int, list[Subject]]:
        """{rule id: subjects} for these rules (all of this kind), in as few queries as possible."""
        raise NotImplementedError


def sensors_by(rows) -> list[Subject]:
    return [Subject.for_sensor(sensor_id, device_id) for sensor_id, device_id in rows]


class SensorTarget(TargetKind):
    code, label, object_label = "sensor", "One sensor", "Sensor"

    def objects(self):
        rows = Sensor.objects.select_related("device").order_by("device__device_id", "key")
        return [(s.pk, f"{s.device.device_id} / {s.key}") for s in rows]

    def exists(self, pk):
        return Sensor.objects.filter(pk=pk).exists()

    def subjects(self, rules):
        found = dict(Sensor.objects.filter(pk__in={r.target_id for r in rules}).values_list("pk", "device_id"))
        return {
            r.pk: [Subject.for_sensor(r.target_id, found[r.target_id])] if r.target_id in found else [] for r in rules
        }


class TenantSensorType(TargetKind):
    code, label, needs_sensor_type = "tenant", "Every sensor of a type in the organisation", True

    def describe(self, rule, names=None):
        return f"every {rule.sensor_type} sensor"

    def subjects(self, rules):
        by_type = defaultdict(list)
        for sensor_id, device_id, kind in Sensor.objects.filter(type__in={r.sensor_type for r in rules}).values_list(
            "pk", "device_id", "type"
        ):
            by_type[kind].append((sensor_id, device_id))
        return {r.pk: sensors_by(by_type[r.sensor_type]) for r in rules}


class PlaceSensorType(TargetKind):
    """Every sensor of a type on a place (an asset, a site): `path` leads from a sensor's device
    to the place's id."""

    needs_sensor_type = True
    model = None
    path = ""

    def exists(self, pk):
        return self.model.objects.filter(pk=pk).exists()

    def subjects(self, rules):
        path = f"device__{self.path}"
        rows = Sensor.objects.filter(
            **{f"{path}__in": {r.target_id for r in rules}}, type__in={r.sensor_type for r in rules}
        ).values_list("pk", "device_id", "type", path)
        found = defaultdict(list)
        for sensor_id, device_id, kind, place_id in rows:
            found[(place_id, kind)].append((sensor_id, device_id))
        return {r.pk: sensors_by(found[(r.target_id, r.sensor_type)]) for r in rules}


class AssetSensorType(PlaceSensorType):
    code, label, object_label = "asset", "Every sensor of a type on an asset", "Asset"
    model, path = Asset, "binding__asset_id"

    def objects(self):
        return [(a.pk, str(a)) for a in Asset.objects.select_related("site").order_by("tag", "site__name")]


class SiteSensorType(PlaceSensorType):
    code, label, object_label = "site", "Every sensor of a type at a site", "Site"
    model, path = Site, "binding__asset__site_id"

    def objects(self):
        return list(Site.objects.order_by("name").values_list("pk", "name"))


class DeviceTarget(TargetKind):
    code, label, object_label, subject = "device", "One device", "Device", "device"

    def objects(self):
        return [
            (d.pk, str(d) if d.name == d.device_id or not d.name else f"{d.device_id} ({d.name})")
            for d in Device.objects.order_by("device_id")
        ]

    def exists(self, pk):
        return Device.objects.filter(pk=pk).exists()

    def subjects(self, rules):
        found = set(Device.objects.filter(pk__in={r.target_id for r in rules}).values_list("pk", flat=True))
        return {r.pk: [Subject.for_device(r.target_id)] if r.target_id in found else [] for r in rules}


BUILT_IN = [SensorTarget(), AssetSensorType(), SiteSensorType(), TenantSensorType(), DeviceTarget()]


@cache
def fleet_modules() -> list:
    """Each app's `alerting` module, when it has one (outlets' machines, locks' locks…)."""
    return app_modules("alerting")


@cache
def registry() -> dict[str, TargetKind]:
    kinds = {kind.code: kind for kind in BUILT_IN}
    for module in fleet_modules():
        kinds.update({kind.code: kind for kind in getattr(module, "TARGETS", [])})
    return kinds


def kind_of(rule) -> TargetKind | None:
    return registry().get(rule.target_kind)


def subjects_of(rules) -> dict[int, list[Subject]]:
    """{rule id: subjects} for any mix of rules; a rule of an unknown kind covers nothing."""
    by_kind = defaultdict(list)
    for rule in rules:
        by_kind[rule.target_kind].append(rule)
    found = {}
    for code, group in by_kind.items():
        kind = registry().get(code)
        found.update(kind.subjects(group) if kind else {r.pk: [] for r in group})
    return found


PLACE = ("binding__asset_id", "binding__asset__tag", "binding__asset__site_id", "binding__asset__site__name")


def contexts(subjects) -> dict[str, Context]:
    """{subject key: Context} with names, the asset and site a device is installed on, and the
    labels fleet apps add (a lock's name, a machine's outlet). One query reads sensor subjects with
    their devices and places; another, devices that are subjects themselves."""
    subjects = list(subjects)
    sensor_ids = {s.sensor_id for s in subjects if s.sensor_id}
    devices, sensors = {}, {}
    if sensor_ids:
        fields = ("pk", "key", "label", "type", "device_id", "device__device_id", "device__name")
        for row in Sensor.objects.filter(pk__in=sensor_ids).values_list(*fields, *(f"device__{f}" for f in PLACE)):
            sensors[row[0]] = row[1:4]
            devices[row[4]] = row[5:]
    bare = {s.device_id for s in subjects} - devices.keys()
    if bare:
        for row in Device.objects.filter(pk__in=bare).values_list("pk", "device_id", "name", *PLACE):
            devices[row[0]] = row[1:]
    extra = defaultdict(dict)
    for module in fleet_modules():
        hook = getattr(module, "device_context", None)
        if hook:
            for device_id, found in hook({s.device_id for s in subjects}).items():
                extra[device_id].update(found.get("labels", {}))
    return {s.key: context_of(s, devices.get(s.device_id), sensors.get(s.sensor_id), extra) for s in subjects}


def context_of(subject: Subject, device, sensor, extra) -> Context:
    """device: (device id, name, asset pk, asset tag, site pk, site name) or None;
    sensor: (key, label, type) or None."""
    device_id, name, asset_pk, asset_tag, site_pk, site_name = device or (None, "", None, "", None, "")
    labels = {"device": device_id or str(subject.device_id)}
    label = (name or device_id) if device else subject.key
    if sensor:
        key, sensor_label, kind = sensor
        labels |= {"sensor": key, **({"sensor_type": kind} if kind else {})}
        label = f"{label} / {sensor_label or key}"
    if asset_pk:
        labels |= {"asset": asset_tag, "site": site_name}
        label = f"{asset_tag} · {label}"
    labels |= extra.get(subject.device_id, {})
    return Context(label=label[:200], site_id=site_pk, asset_id=asset_pk, labels=labels)

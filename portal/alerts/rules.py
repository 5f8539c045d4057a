"""Rules compiled for evaluation, and the per-schema index that says which rules a sensor feeds.

The index is what keeps evaluation cheap after an ingest batch: a dict from sensor id to the
(rule, subject) pairs it feeds, built in a handful of queries and kept per process. It is
rebuilt when the schema's index version changes (bumped by rule, condition, sensor and binding
saves, in the shared cache so other processes see it) or after INDEX_SECONDS at most, which
bounds how long a sensor created by ingest (bulk, no save signal) goes unwatched.
"""

import time
from dataclasses import dataclass, field
from functools import cached_property

from django.core.cache import cache
from django.db import connection

from portal.alerts.models import AlertRule, RuleCondition
from portal.alerts.targets import Subject, subjects_of
from telemetry.models import Sensor

Kind = RuleCondition.Kind
VALUE_TESTS = frozenset({Kind.ABOVE, Kind.BELOW, Kind.OUTSIDE, Kind.BATTERY_BELOW})  # the value alone decides
INDEX_SECONDS = 30
VERSION_KEY = "alerts:index-version"


@dataclass(frozen=True)
class Cond:
    kind: str
    sensor_key: str
    threshold: float | None
    low: float | None
    high: float | None
    minutes: int | None
    event_kinds: frozenset
    hysteresis: float
    text: str

    @classmethod
    def of(cls, c: RuleCondition) -> "Cond":
        kinds = frozenset(k.strip() for k in c.event_kinds.split(",") if k.strip())
        return cls(c.kind, c.sensor_key, c.threshold, c.low, c.high, c.minutes, kinds, c.hysteresis or 0.0, str(c))

    def sensor_key_for(self, subject: Subject) -> str:
        """The sensor key this condition reads on the subject's device ('' = the subject's own sensor)."""
        if self.kind in (Kind.OFFLINE, Kind.SECURITY_EVENT):
            return ""
        if self.sensor_key:
            return self.sensor_key
        return "battery" if self.kind == Kind.BATTERY_BELOW and subject.sensor_id is None else ""


@dataclass(frozen=True)
class Compiled:
    """A rule as the engine needs it: plain values, no queries."""

    id: int
    name: str
    severity: str
    match_all: bool
    for_seconds: int
    keep_firing_for_seconds: int
    no_data: str
    on_error: str
    labels: dict
    conditions: tuple[Cond, ...]

    @classmethod
    def of(cls, rule: AlertRule, conditions=None) -> "Compiled":
        if conditions is None:  # an unsaved rule being tested carries its conditions along
            conditions = getattr(rule, "conditions_override", None)
        if conditions is None:
            conditions = rule.conditions.all()
        return cls(
            rule.pk,
            rule.name,
            rule.severity,
            rule.combine == AlertRule.Combine.ALL,
            rule.for_seconds,
            rule.keep_firing_for_seconds,
            rule.no_data_handling,
            rule.error_handling,
            dict(rule.labels or {}),
            tuple(Cond.of(c) for c in sorted(conditions, key=lambda c: (c.position, c.pk or 0))),
        )

    @property
    def summary(self) -> str:
        joiner = " and " if self.match_all else " or "
        return joiner.join(c.text for c in self.conditions)


@dataclass(frozen=True)
class Pair:
    """One rule and one subject it covers, with the sensor each condition reads (None: none)."""

    rule: Compiled
    subject: Subject
    sensors: tuple[int | None, ...]

    @cached_property
    def key(self) -> tuple[int, str]:
        return (self.rule.id, self.subject.key)

    @cached_property
    def watched_sensors(self) -> frozenset[int]:
        found = {s for s in self.sensors if s}
        if self.subject.sensor_id:
            found.add(self.subject.sensor_id)
        return frozenset(found)

    @cached_property
    def lone(self) -> Cond | None:
        """The rule's only condition when it is a plain value test of the one sensor the pair
        watches (most rules): whether a batch moves the pair then shows in the batch's values."""
        if len(self.rule.conditions) != 1:
            return None
        cond, sensor = self.rule.conditions[0], self.sensors[0]
        if cond.kind not in VALUE_TESTS or not sensor or self.watched_sensors != {sensor}:
            return None
        return cond


@dataclass
class Index:
    pairs: list[Pair] = field(default_factory=list)
    by_sensor: dict[int, list[Pair]] = field(default_factory=dict)
    by_device: dict[int, list[Pair]] = field(default_factory=dict)  # pairs with device-level conditions


def pairs_for(rules: list[AlertRule]) -> list[Pair]:
    """Every (rule, subject) of these rules, sibling sensors resolved in one query."""
    compiled = {rule.pk: Compiled.of(rule) for rule in rules}
    subjects = subjects_of(rules)
    wanted = {
        (subject.device_id, key)
        for rule in rules
        for subject in subjects[rule.pk]
        for cond in compiled[rule.pk].conditions
        if (key := cond.sensor_key_for(subject))
    }
    by_key = {}
    if wanted:
        devices, keys = {d for d, _ in wanted}, {k for _, k in wanted}
        rows = Sensor.objects.filter(device_id__in=devices, key__in=keys).values_list("device_id", "key", "pk")
        by_key = {(device_id, key): pk for device_id, key, pk in rows}
    pairs = []
    for rule in rules:
        rule_c = compiled[rule.pk]
        for subject in subjects[rule.pk]:
            sensors = []
            for cond in rule_c.conditions:
                key = cond.sensor_key_for(subject)
                if cond.kind in (Kind.OFFLINE, Kind.SECURITY_EVENT):
                    sensors.append(None)
                elif key:
                    sensors.append(by_key.get((subject.device_id, key)))
                else:
                    sensors.append(subject.sensor_id)
            pairs.append(Pair(rule_c, subject, tuple(sensors)))
    return pairs


def build_index() -> Index:
    rules = list(AlertRule.objects.filter(enabled=True).prefetch_related("conditions"))
    index = Index(pairs=pairs_for(rules))
    for pair in index.pairs:
        for sensor_id in pair.watched_sensors:
            index.by_sensor.setdefault(sensor_id, []).append(pair)
        if any(c.kind in (Kind.OFFLINE, Kind.SECURITY_EVENT) for c in pair.rule.conditions):
            index.by_device.setdefault(pair.subject.device_id, []).append(pair)
    return index


_indexes: dict[str, tuple[float, object, Index]] = {}


def current_index() -> Index:
    """This schema's index, from the process's memory unless its version moved or it is old."""
    schema = connection.schema_name
    version = cache.get(VERSION_KEY)
    entry = _indexes.get(schema)
    if entry is None or entry[1] != version or entry[0] < time.monotonic():
        entry = _indexes[schema] = (time.monotonic() + INDEX_SECONDS, version, build_index())
    return entry[2]


def bump_version(**kwargs) -> None:
    """Rules or what they cover changed: every process rebuilds this schema's index on next use."""
    _indexes.pop(connection.schema_name, None)
    cache.set(VERSION_KEY, time.time_ns(), None)


def forget_indexes() -> None:
    _indexes.clear()

"""Rules, their per-target states, alerts, silences, channels and the delivery log.

Everything lives in the tenant's schema. A rule watches a target (see targets.py); each concrete
thing the target covers (a sensor, or a device) is a *subject* with its own RuleState, and at
most one open Alert per rule and subject, which a partial unique index guarantees however many
evaluations run at once. Notifications are outbox rows: an alert change writes them, Huey
delivers them (delivery.py) and records every attempt.
"""

import uuid
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from portal.facilities.models import Asset, Site
from telemetry.models import Device, Sensor


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class AlertRule(models.Model):
    class Combine(models.TextChoices):
        ALL = "all", "All conditions hold (AND)"
        ANY = "any", "Any condition holds (OR)"

    class NoData(models.TextChoices):
        NODATA = "nodata", "Show the no-data state (no alert)"
        ALERTING = "alerting", "Treat as firing"
        OK = "ok", "Treat as normal"
        KEEP = "keep", "Keep the last state"

    class OnError(models.TextChoices):
        ERROR = "error", "Show the error state"
        ALERTING = "alerting", "Treat as firing"
        KEEP = "keep", "Keep the last state"

    name = models.CharField(max_length=150)
    description = models.CharField(max_length=500, blank=True)
    enabled = models.BooleanField(default=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    target_kind = models.CharField(max_length=30, help_text="A kind registered in portal.alerts.targets.")
    target_id = models.BigIntegerField(null=True, blank=True, help_text="The sensor, asset, site, device… watched.")
    sensor_type = models.CharField(max_length=50, blank=True, help_text="For targets that cover sensors of a type.")
    combine = models.CharField(max_length=3, choices=Combine.choices, default=Combine.ALL)
    for_seconds = models.PositiveIntegerField(default=0, help_text="How long the condition must hold before firing.")
    keep_firing_for_seconds = models.PositiveIntegerField(
        default=0, help_text="How long the condition must stay clear before the alert resolves (recovering)."
    )
    no_data_handling = models.CharField(max_length=10, choices=NoData.choices, default=NoData.NODATA)
    error_handling = models.CharField(max_length=10, choices=OnError.choices, default=OnError.ERROR)
    labels = models.JSONField(default=dict, blank=True, help_text="key=value pairs copied to its alerts.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name


class RuleCondition(models.Model):
    class Kind(models.TextChoices):
        ABOVE = "above", "Value above"
        BELOW = "below", "Value below"
        OUTSIDE = "outside", "Value outside a range"
        RATE = "rate", "Rate of change above (per minute)"
        NO_DATA = "no_data", "No data for N minutes"
        OFFLINE = "offline", "Device offline"
        BATTERY_BELOW = "battery_below", "Battery below (%)"
        SECURITY_EVENT = "security_event", "Lock security event"

    VALUE_KINDS = {Kind.ABOVE, Kind.BELOW, Kind.OUTSIDE, Kind.RATE, Kind.BATTERY_BELOW}

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="conditions")
    position = models.PositiveSmallIntegerField(default=0)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    sensor_key = models.CharField(
        max_length=100,
        blank=True,
        help_text="Sensor key on the same device; blank: the target's own sensor (battery: 'battery').",
    )
    threshold = models.FloatField(null=True, blank=True)
    low = models.FloatField(null=True, blank=True)
    high = models.FloatField(null=True, blank=True)
    minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="No data: silence allowed; rate: averaging window; event: how long it holds."
    )
    event_kinds = models.CharField(
        max_length=300, blank=True, help_text="Comma-separated event codes (lockout, tamper…); blank: any."
    )
    hysteresis = models.FloatField(
        default=0, help_text="Recovery margin: a firing value condition clears only this far back past its threshold."
    )

    class Meta:
        ordering = ["rule", "position", "id"]

    def __str__(self):
        return describe_condition(self)


def describe_condition(c) -> str:
    """One line for people: 'supply_temp above 10', 'no data for 15 min', 'lockout, tamper event'."""
    subject = c.sensor_key or ("battery" if c.kind == RuleCondition.Kind.BATTERY_BELOW else "value")
    kind = c.kind
    if kind == RuleCondition.Kind.ABOVE:
        return f"{subject} above {c.threshold:g}"
    if kind == RuleCondition.Kind.BELOW:
        return f"{subject} below {c.threshold:g}"
    if kind == RuleCondition.Kind.OUTSIDE:
        return f"{subject} outside {c.low:g}…{c.high:g}"
    if kind == RuleCondition.Kind.RATE:
        return f"{subject} changes faster than {c.threshold:g}/min over {c.minutes} min"
    if kind == RuleCondition.Kind.NO_DATA:
        return f"no data from {subject if c.sensor_key else 'the target'} for {c.minutes} min"
    if kind == RuleCondition.Kind.OFFLINE:
        return "device offline"
    if kind == RuleCondition.Kind.BATTERY_BELOW:
        return f"{subject} below {c.threshold:g} %"
    return f"security event ({c.event_kinds or 'any'})"


class State(models.TextChoices):
    NORMAL = "normal", "Normal"
    PENDING = "pending", "Pending"
    FIRING = "firing", "Firing"
    RECOVERING = "recovering", "Recovering"
    NODATA = "nodata", "No data"
    ERROR = "error", "Error"


class RuleState(models.Model):
    """Where one rule stands for one subject. No row means normal: rows appear on the first change."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    subject_key = models.CharField(max_length=40)
    state = models.CharField(max_length=10, choices=State.choices, default=State.NORMAL)
    since = models.DateTimeField(help_text="When this state was entered (the time of the reading that did it).")
    condition_since = models.DateTimeField(null=True, blank=True)
    clear_since = models.DateTimeField(null=True, blank=True)
    alert = models.ForeignKey("Alert", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    facts = models.JSONField(default=list, blank=True, help_text="The values behind the last change.")
    detail = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["rule", "subject_key"]
        constraints = [models.UniqueConstraint(fields=["rule", "subject_key"], name="rulestate_one_per_subject")]

    def __str__(self):
        return f"{self.rule} / {self.subject_key}: {self.state}"


class AlertQuerySet(models.QuerySet):
    def active(self):
        return self.filter(resolved_at__isnull=True)

    def counts_by_severity(self) -> dict[str, int]:
        rows = self.active().values_list("severity").annotate(n=models.Count("id"))
        counts = dict.fromkeys(Severity.values, 0)
        counts.update(dict(rows))
        return counts


class Alert(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    class Kind(models.TextChoices):
        RULE = "rule", "Rule"
        DATA_QUALITY = "data_quality", "Data quality"

    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    rule_name = models.CharField(max_length=150, blank=True, help_text="Kept when the rule is deleted.")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.RULE)
    subject_key = models.CharField(max_length=40)
    subject_label = models.CharField(max_length=200, blank=True)
    sensor = models.ForeignKey(Sensor, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    asset = models.ForeignKey(Asset, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    labels = models.JSONField(default=dict, blank=True)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    summary = models.CharField(max_length=300)
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.OPEN)
    opened_at = models.DateTimeField(help_text="When the condition began firing.")
    created_at = models.DateTimeField(auto_now_add=True)
    trigger_values = models.JSONField(default=list, blank=True, help_text="The values that made it fire.")
    last_values = models.JSONField(default=list, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by_id = models.BigIntegerField(null=True, blank=True)
    acknowledged_by_email = models.EmailField(blank=True)
    acknowledge_note = models.CharField(max_length=500, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by_id = models.BigIntegerField(null=True, blank=True)
    resolved_by_email = models.EmailField(blank=True)
    resolution = models.CharField(max_length=300, blank=True)

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # one open alert per rule and subject; data-quality alerts (no rule) one per sensor
            models.UniqueConstraint(
                fields=["rule", "subject_key"],
                condition=Q(resolved_at__isnull=True),
                nulls_distinct=False,
                name="alert_one_open_per_rule_subject",
            )
        ]
        indexes = [
            # the navigation count and the dashboard read open alerts only
            models.Index(fields=["severity"], condition=Q(resolved_at__isnull=True), name="alert_open_severity"),
            models.Index(fields=["status", "-opened_at"], name="alert_status_opened"),
        ]

    def __str__(self):
        return f"#{self.pk} {self.summary}"

    @property
    def is_active(self) -> bool:
        return self.resolved_at is None

    @property
    def duration(self) -> timedelta:
        return (self.resolved_at or timezone.now()) - self.opened_at


class AlertEvent(models.Model):
    """The alert's timeline: every change, by the engine or by a person."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=30)
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_email = models.EmailField(blank=True)
    message = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self):
        return f"{self.kind}: {self.message}"


class SecurityEvent(models.Model):
    """What telemetry.signals.device_event reported (lockout, tamper, jammed…), kept for rules and timelines."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=40)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    message = models.CharField(max_length=300)
    occurred_at = models.DateTimeField()
    details = models.JSONField(default=dict, blank=True)
    resolved = models.BooleanField(default=False)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["device", "kind", "-occurred_at"], name="securityevent_latest")]

    def __str__(self):
        return f"{self.kind} on {self.device_id}: {self.message}"


class SilenceQuerySet(models.QuerySet):
    def active(self, at=None):
        at = at or timezone.now()
        return self.filter(starts_at__lte=at, ends_at__gt=at)


class Silence(models.Model):
    """A maintenance window: alerts matching every given matcher still open and show, but notify nobody."""

    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=300)
    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.CASCADE, related_name="silences")
    subject_key = models.CharField(max_length=40, blank=True, help_text="sensor:<id> or device:<id>")
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    label_key = models.CharField(max_length=50, blank=True)
    label_value = models.CharField(max_length=100, blank=True)
    created_by_id = models.BigIntegerField(null=True, blank=True)
    created_by_email = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SilenceQuerySet.as_manager()

    class Meta:
        ordering = ["-starts_at", "-id"]

    def __str__(self):
        return f"Silence #{self.pk}: {self.reason}"

    def clean(self):
        if self.ends_at and self.starts_at and self.ends_at <= self.starts_at:
            raise ValidationError("A silence must end after it starts.")
        if not (self.rule_id or self.subject_key or self.site_id or self.label_key):
            raise ValidationError("Choose at least one of rule, target, site or label: a silence mutes what matches.")

    @property
    def status(self) -> str:
        now = timezone.now()
        if self.ends_at <= now:
            return "expired"
        return "active" if self.starts_at <= now else "scheduled"

    def matches(self, alert: Alert) -> bool:
        if self.rule_id and alert.rule_id != self.rule_id:
            return False
        if self.subject_key and alert.subject_key != self.subject_key:
            return False
        if self.site_id and alert.site_id != self.site_id:
            return False
        return not self.label_key or str(alert.labels.get(self.label_key, "")) == self.label_value

    def matchers(self) -> list[str]:
        parts = []
        if self.rule_id:
            parts.append(f"rule “{self.rule}”")
        if self.subject_key:
            parts.append(f"target {self.subject_key}")
        if self.site_id:
            parts.append(f"site {self.site}")
        if self.label_key:
            parts.append(f"{self.label_key}={self.label_value}")
        return parts


class Channel(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"
        SMS = "sms", "SMS"
        WHATSAPP = "whatsapp", "WhatsApp"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    email_roles = models.CharField(max_length=60, blank=True, help_text="Comma-separated roles whose members get it.")
    email_addresses = models.TextField(blank=True, max_length=2000)
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret = models.CharField(max_length=128, blank=True)
    phone_numbers = models.TextField(blank=True, max_length=1000)
    severities = models.CharField(max_length=40, default="low,medium,high,critical")
    rules = models.ManyToManyField(AlertRule, blank=True, related_name="channels")
    sites = models.ManyToManyField(Site, blank=True, related_name="+")
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    quiet_allows_critical = models.BooleanField(default=True, help_text="Critical alerts go out during quiet hours.")
    group_wait_seconds = models.PositiveIntegerField(default=30)
    repeat_interval_minutes = models.PositiveIntegerField(default=240, help_text="0: never repeat.")
    notify_resolved = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def severity_list(self) -> list[str]:
        return [s for s in self.severities.split(",") if s]

    @property
    def role_list(self) -> list[str]:
        return [r for r in self.email_roles.split(",") if r]

    @property
    def address_list(self) -> list[str]:
        return [a.strip() for a in self.email_addresses.replace(",", "\n").splitlines() if a.strip()]

    @property
    def number_list(self) -> list[str]:
        return [n.strip() for n in self.phone_numbers.replace(",", "\n").splitlines() if n.strip()]


class Delivery(models.Model):
    """One message to one channel, carrying one or more notifications (a group), with its attempts."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Waiting to retry"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    FINAL = {Status.SENT, Status.FAILED, Status.SKIPPED}

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    key = models.UUIDField(default=uuid.uuid4, unique=True, help_text="Idempotency key, the same on every attempt.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]  # the sweep's scan

    def __str__(self):
        return f"delivery {self.key} to {self.channel}: {self.status}"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self):
        return f"attempt {self.number} of {self.delivery_id}: {'ok' if self.ok else self.error or self.status_code}"


class Notification(models.Model):
    """One alert change for one channel (the delivery log's row)."""

    class Event(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"
        REPEAT = "repeat", "Still firing (repeat)"
        TEST = "test", "Test"

    Status = Delivery.Status

    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=10, choices=Event.choices)
    status = models.CharField(max_length=10, choices=Delivery.Status.choices, default=Delivery.Status.PENDING)
    detail = models.CharField(max_length=300, blank=True)
    due_at = models.DateTimeField(default=timezone.now, help_text="Not before: group wait and quiet hours.")
    delivery = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="items")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # the dispatcher's scan: pending rows of a channel not yet in a delivery
            models.Index(
                fields=["channel", "due_at"], condition=Q(delivery__isnull=True), name="notification_undispatched"
            ),
        ]

    def __str__(self):
        return f"{self.event} of alert {self.alert_id} to {self.channel}: {self.status}"

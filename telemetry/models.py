"""The time-series core: devices, sensors, readings, rollups and rejected input.

Lives in every tenant's schema. Depends on nothing else of Fieldwatch: portal apps bind these
devices to their own objects (assets, machines, locks).
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.utils import timezone


def online_window() -> timedelta:
    return timedelta(seconds=getattr(settings, "TELEMETRY_ONLINE_SECONDS", 600))


class TelemetrySettings(models.Model):
    """This tenant's telemetry rules (one row per tenant schema; see TelemetrySettings.current())."""

    raw_retention_days = models.PositiveIntegerField(default=90, help_text="Raw readings older than this are deleted; rollups are kept.")
    future_window_seconds = models.PositiveIntegerField(default=300, help_text="Readings stamped further ahead than this are rejected.")
    auto_create_sensors = models.BooleanField(default=True, help_text="Create devices and sensors on first sight of their data.")
    accept_tokenless_legacy = models.BooleanField(
        default=True, help_text="Accept legacy form posts without a token from known MACs (old firmware cannot send one); they are flagged."
    )

    class Meta:
        verbose_name_plural = "telemetry settings"

    @classmethod
    def current(cls) -> "TelemetrySettings":
        return cls.objects.order_by("pk").first() or cls.objects.create()


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class DeviceQuerySet(models.QuerySet):
    def for_token(self, raw: str):
        """The device a raw bearer token belongs to, or None. The lookup is by hash, and the
        hash is compared again in constant time, so timing tells nothing about other tokens."""
        if not raw or len(raw) > 200:
            return None
        digest = hash_token(raw)
        device = self.filter(token_hash=digest).first()
        if device is None or not hmac.compare_digest(device.token_hash, digest):
            return None
        return device

    def online(self):
        return self.filter(last_seen__gte=timezone.now() - online_window())

    def offline(self):
        return self.exclude(last_seen__gte=timezone.now() - online_window())


class Device(models.Model):
    class Kind(models.TextChoices):
        GATEWAY = "gateway", "Gateway"
        CONTROLLER = "controller", "Controller"
        SENSOR_NODE = "sensor_node", "Sensor node"
        COUNTER = "counter", "Counter"
        LOCK = "lock", "Lock"

    device_id = models.CharField(max_length=100, unique=True, help_text="The id the device reports itself as.")
    name = models.CharField(max_length=150, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.GATEWAY)
    mac = models.CharField(max_length=17, unique=True, null=True, blank=True)
    firmware = models.CharField(max_length=50, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True, db_index=True)  # online/offline filters
    created_at = models.DateTimeField(auto_now_add=True)
    # HTTP identity: a device proves itself with a bearer token; only its SHA-256 is kept.
    token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    token_created_at = models.DateTimeField(null=True, blank=True)
    token_last_used_at = models.DateTimeField(null=True, blank=True)
    last_handshake_at = models.DateTimeField(null=True, blank=True)
    provisioning_reset_at = models.DateTimeField(null=True, blank=True, help_text="Set by an admin: the next handshake by MAC gets a new token.")
    assigned_at = models.DateTimeField(null=True, blank=True, help_text="When an admin registered the device; unset: unregistered.")
    status = models.JSONField(default=dict, blank=True, help_text="Latest status the device reported: counters, RTC/SD, uptime, Wi-Fi.")
    legacy_tokenless_at = models.DateTimeField(null=True, blank=True, help_text="Last legacy post accepted without a token.")

    objects = DeviceQuerySet.as_manager()

    class Meta:
        ordering = ["device_id"]

    def __str__(self):
        return self.name or self.device_id

    @property
    def online(self) -> bool:
        return self.last_seen is not None and self.last_seen >= timezone.now() - online_window()

    @property
    def assigned(self) -> bool:
        return self.assigned_at is not None

    def issue_token(self) -> str:
        """A new random token (32 bytes); the old one stops working. Returns the raw token, which
        is shown once and never stored."""
        raw = secrets.token_urlsafe(32)
        self.token_hash = hash_token(raw)
        self.token_created_at = timezone.now()
        self.token_last_used_at = None
        self.provisioning_reset_at = None
        return raw

    def revoke_token(self) -> None:
        self.token_hash = None
        self.token_created_at = None


class Sensor(models.Model):
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="sensors")
    key = models.CharField(max_length=100, help_text="The sensor's id within its device, as it reports it.")
    type = models.CharField(max_length=50, blank=True, help_text="temperature, humidity, pressure, power…")
    unit = models.CharField(max_length=20, blank=True)
    label = models.CharField(max_length=150, blank=True)
    min_value = models.FloatField(null=True, blank=True, help_text="Lowest value the sensor can report; below is rejected.")
    max_value = models.FloatField(null=True, blank=True, help_text="Highest value the sensor can report; above is rejected.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["device__device_id", "key"]
        constraints = [
            models.UniqueConstraint(fields=["device", "key"], name="sensor_unique_device_key"),
            models.CheckConstraint(
                condition=models.Q(min_value__isnull=True) | models.Q(max_value__isnull=True) | models.Q(min_value__lte=models.F("max_value")),
                name="sensor_range_ordered",
            ),
        ]

    def __str__(self):
        return self.label or f"{self.device.device_id}/{self.key}"


class Reading(models.Model):
    """One value of one sensor at one instant.

    The primary key (sensor_id, ts) is the dedup rule and also the index every range query uses
    (WHERE sensor_id = %s AND ts BETWEEN …: an index range scan in time order, no sort). No
    surrogate id: readings are the biggest table, and an id column and its index would cost
    space and write time for nothing.
    """

    pk = models.CompositePrimaryKey("sensor_id", "ts")
    sensor = models.ForeignKey(Sensor, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+")  # the primary key (sensor_id, …) serves sensor lookups
    ts = models.DateTimeField()
    value = models.FloatField()

    class Meta:
        indexes = [
            # BRIN on time: tiny, and enough for the retention purge and the rollup scans, which
            # read time ranges across all sensors of a table filled in time order.
            BrinIndex(fields=["ts"], name="reading_ts_brin"),
        ]


class RollupBase(models.Model):
    """Aggregates of one sensor over one bucket; avg is sum / count."""

    sensor = models.ForeignKey(Sensor, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+")  # the primary key (sensor_id, …) serves sensor lookups
    bucket = models.DateTimeField()
    count = models.IntegerField()
    sum = models.FloatField()
    min = models.FloatField()
    max = models.FloatField()
    last_value = models.FloatField()
    last_ts = models.DateTimeField()

    class Meta:
        abstract = True

    @property
    def avg(self) -> float:
        return self.sum / self.count if self.count else 0.0


class HourlyRollup(RollupBase):
    pk = models.CompositePrimaryKey("sensor_id", "bucket")  # range scans per sensor, like Reading


class DailyRollup(RollupBase):
    pk = models.CompositePrimaryKey("sensor_id", "bucket")


class DirtyHour(models.Model):
    """An hour of a sensor that received readings since it was last rolled up.

    The ingest path marks hours here; the rollup task recomputes exactly those hours from raw
    readings (so a late reading updates the bucket it falls in, and re-running changes nothing).
    """

    pk = models.CompositePrimaryKey("sensor_id", "bucket")
    sensor = models.ForeignKey(Sensor, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+")  # the primary key (sensor_id, …) serves sensor lookups
    bucket = models.DateTimeField()


class DeadLetter(models.Model):
    """Input that could not be stored as a reading, kept with the reason (never silently dropped)."""

    class Source(models.TextChoices):
        MQTT = "mqtt", "MQTT"
        HTTP = "http", "HTTP"
        WEBHOOK = "webhook", "Webhook"
        BULK = "bulk", "Bulk upload"
        INTERNAL = "internal", "Internal"

    source = models.CharField(max_length=10, choices=Source.choices)
    topic = models.CharField(max_length=300, blank=True, help_text="MQTT topic or HTTP path it came on.")
    payload = models.TextField(help_text="The raw input, as received.")
    reason = models.CharField(max_length=40, db_index=True)
    device_ref = models.CharField(max_length=100, blank=True, db_index=True, help_text="device id or MAC the input claimed, if any")
    detail = models.CharField(max_length=300, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self):
        return f"{self.reason}: {self.detail or self.payload[:60]}"


class DeviceEvent(models.Model):
    """A usage event a device reported (a button press on a counting machine), stored once.

    event_id is unique: a repeat, even 50 copies at once, creates nothing (the constraint
    decides, not a check before the insert). Events of an unregistered device are stored too and
    count once an admin registers it.
    """

    class Treatment(models.TextChoices):
        BASIC = "BASIC", "Basic"
        STANDARD = "STANDARD", "Standard"
        PREMIUM = "PREMIUM", "Premium"

    event_id = models.CharField(max_length=100, unique=True)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="events")
    event = models.CharField(max_length=50, default="treatment")
    treatment = models.CharField(max_length=10, choices=Treatment.choices)
    counter = models.BigIntegerField(null=True, blank=True)
    ts = models.DateTimeField(help_text="When the device says it happened.")
    firmware = models.CharField(max_length=50, blank=True)
    source = models.CharField(max_length=10, default="api", help_text="api (JSON events) or legacy (form posts)")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ts", "-id"]
        indexes = [models.Index(fields=["device", "-ts"], name="event_device_time")]  # the device page's recent events

    def __str__(self):
        return self.event_id

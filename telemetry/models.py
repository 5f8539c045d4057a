"""The time-series core: devices, sensors, readings, rollups and rejected input.

Lives in every tenant's schema. Depends on nothing else of Fieldwatch: portal apps bind these
devices to their own objects (assets, machines, locks).
"""

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

    class Meta:
        verbose_name_plural = "telemetry settings"

    @classmethod
    def current(cls) -> "TelemetrySettings":
        return cls.objects.order_by("pk").first() or cls.objects.create()


class DeviceQuerySet(models.QuerySet):
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

    objects = DeviceQuerySet.as_manager()

    class Meta:
        ordering = ["device_id"]

    def __str__(self):
        return self.name or self.device_id

    @property
    def online(self) -> bool:
        return self.last_seen is not None and self.last_seen >= timezone.now() - online_window()


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
    sensor = models.ForeignKey(Sensor, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
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

    sensor = models.ForeignKey(Sensor, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
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
    sensor = models.ForeignKey(Sensor, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
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
    detail = models.CharField(max_length=300, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self):
        return f"{self.reason}: {self.detail or self.payload[:60]}"

"""The time-series core: devices, sensors, readings, rollups and rejected input.

Lives in every tenant's schema. Depends on nothing else of Fieldwatch: portal apps bind these
devices to their own objects (assets, machines, locks).
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.contrib.postgres.indexes import BrinIndex
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models, transaction
from django.utils import timezone


def online_window() -> timedelta:
    """Seen within this long means online: the tenant's setting (5 minutes unless an admin changed
    it), read through the ingest path's per-process cache of the settings row."""
    from telemetry.ingest import current_rules

    return timedelta(seconds=current_rules().online_window_seconds)


class TelemetrySettings(models.Model):
    """This tenant's telemetry rules (one row per tenant schema; see TelemetrySettings.current())."""

    raw_retention_days = models.PositiveIntegerField(
        default=90, help_text="Raw readings older than this are deleted; rollups are kept."
    )
    future_window_seconds = models.PositiveIntegerField(
        default=300, help_text="Readings stamped further ahead than this are rejected."
    )
    auto_create_sensors = models.BooleanField(
        default=True, help_text="Create devices and sensors on first sight of their data."
    )
    online_window_seconds = models.PositiveIntegerField(
        default=300, help_text="A device heard from within this many seconds is online (every page and list)."
    )
    reprovision_by_mac = models.BooleanField(
        default=False,
        help_text="A known MAC address that handshakes without its token gets a fresh one (the old one is revoked, "
        "the device flagged and the change audited). Off: an administrator resets provisioning first.",
    )
    access_log_retention_days = models.PositiveIntegerField(
        default=90, help_text="Lock access logs older than this are archived to CSV in storage, then deleted."
    )
    accept_tokenless_legacy = models.BooleanField(
        default=True,
        help_text="Accept legacy form posts without a token from known MACs (old firmware cannot send one); they are flagged.",
    )
    dead_letter_retention_days = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Dead letters older than this are deleted (daily).",
    )

    class Meta:
        verbose_name_plural = "telemetry settings"

    def __str__(self):
        return f"telemetry settings of {getattr(connection, 'schema_name', 'this tenant')}"

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
    notes = models.TextField(blank=True, max_length=2000, help_text="Notes for the people who look after it.")
    last_seen = models.DateTimeField(null=True, blank=True, db_index=True)  # online/offline filters
    created_at = models.DateTimeField(auto_now_add=True)
    # HTTP identity: a device proves itself with a bearer token; only its SHA-256 is kept.
    token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    token_created_at = models.DateTimeField(null=True, blank=True)
    token_last_used_at = models.DateTimeField(null=True, blank=True)
    last_handshake_at = models.DateTimeField(null=True, blank=True)
    provisioning_reset_at = models.DateTimeField(
        null=True, blank=True, help_text="Set by an admin: the next handshake by MAC gets a new token."
    )
    assigned_at = models.DateTimeField(
        null=True, blank=True, help_text="When an admin registered the device; unset: unregistered."
    )
    status = models.JSONField(
        default=dict, blank=True, help_text="Latest status the device reported: counters, RTC/SD, uptime, Wi-Fi."
    )
    reprovisioned_at = models.DateTimeField(
        null=True, blank=True, help_text="Last time a handshake by MAC alone replaced the token (re-provision by MAC)."
    )
    legacy_tokenless_at = models.DateTimeField(
        null=True, blank=True, help_text="Last legacy post accepted without a token."
    )

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

    @property
    def counts_usage(self) -> bool:
        """A counting device (it handshakes over the device API and posts usage events, which
        count once it is registered); a gateway that only publishes telemetry is not one."""
        return self.kind == self.Kind.COUNTER or self.last_handshake_at is not None

    def issue_token(self) -> str:
        """A new random token (32 bytes); the old one stops working. Returns the raw token, which
        is shown once and never stored."""
        raw = secrets.token_urlsafe(32)
        self.token_hash = hash_token(raw)
        self.token_created_at = timezone.now()
        self.token_last_used_at = None
        self.provisioning_reset_at = None
        self._key_change = raw  # announced once saved (telemetry.signals.device_key_changed)
        return raw

    def revoke_token(self) -> None:
        self.token_hash = None
        self.token_created_at = None
        self._key_change = ""


def announce_key_change(sender, instance: Device, update_fields=None, **kwargs) -> None:
    """A device saved with a token issued or revoked since: tell whoever cares (a lock's token is
    also its MQTT password), inside the saving transaction, once per change."""
    if update_fields is not None and "token_hash" not in update_fields:
        return  # the new token is not in this save
    key = instance.__dict__.pop("_key_change", None)
    if key is not None:
        from telemetry.signals import device_key_changed

        device_key_changed.send(sender=Device, device=instance, key=key or None)


models.signals.post_save.connect(announce_key_change, sender=Device, dispatch_uid="telemetry-device-key")


class MqttCredential(models.Model):
    """A device's (or a lock's) credentials for the MQTT broker: a username unique across the
    broker (device ids repeat between tenants, so it names the tenant: "<slug>.<device id>") and a
    secret shown once; only its SHA-256 is kept. The broker learns the secret when it is issued
    (Mosquitto's dynamic security) or asks Fieldwatch (EMQX's HTTP authentication)."""

    device = models.OneToOneField(Device, on_delete=models.CASCADE, related_name="mqtt_credential")
    username = models.CharField(max_length=160, unique=True)
    secret_hash = models.CharField(max_length=64)
    issued_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    broker_lost_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When Mosquitto was found without this client (its state lost): the secret is kept only hashed, "
        "so it cannot be given back; a new one (a lock: a new key) lets the device in again.",
    )

    def __str__(self):
        return self.username

    @staticmethod
    def username_for(tenant_slug: str, device_id: str) -> str:
        return f"{tenant_slug}.{device_id}"  # slugs hold no dot: the first one splits

    @classmethod
    def issue(cls, device: Device, username: str, raw: str | None = None) -> tuple["MqttCredential", str]:
        """New credentials (or a new secret for the existing ones, which then stop working);
        returns them and the raw secret, to be shown once. `raw`: a secret the device already
        holds (seed 004's locks present their device key)."""
        raw = raw or secrets.token_urlsafe(24)
        credential, _ = cls.objects.update_or_create(
            device=device,
            defaults={
                "username": username,
                "secret_hash": hash_token(raw),
                "issued_at": timezone.now(),
                "revoked_at": None,
                "broker_lost_at": None,
            },
        )
        return credential, raw

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def matches(self, raw: str) -> bool:
        return self.active and bool(raw) and len(raw) <= 200 and hmac.compare_digest(self.secret_hash, hash_token(raw))

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])


class Sensor(models.Model):
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="sensors")
    key = models.CharField(max_length=100, help_text="The sensor's id within its device, as it reports it.")
    type = models.CharField(max_length=50, blank=True, help_text="temperature, humidity, pressure, power…")
    unit = models.CharField(max_length=20, blank=True)
    label = models.CharField(max_length=150, blank=True)
    min_value = models.FloatField(
        null=True, blank=True, help_text="Lowest value the sensor can report; below is rejected."
    )
    max_value = models.FloatField(
        null=True, blank=True, help_text="Highest value the sensor can report; above is rejected."
    )
    precision = models.PositiveSmallIntegerField(
        default=2, help_text="Decimal places pages and charts show (CSV keeps the value as stored)."
    )
    enabled = models.BooleanField(
        default=True, help_text="Readings of a disabled sensor are kept as dead letters, not stored."
    )
    on_dashboard = models.BooleanField(
        default=False, help_text="A key sensor: its latest value is on the dashboard, under its site."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["device__device_id", "key"]
        constraints = [
            models.UniqueConstraint(fields=["device", "key"], name="sensor_unique_device_key"),
            models.CheckConstraint(
                condition=models.Q(min_value__isnull=True)
                | models.Q(max_value__isnull=True)
                | models.Q(min_value__lte=models.F("max_value")),
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
    sensor = models.ForeignKey(
        Sensor, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )  # the primary key (sensor_id, …) serves sensor lookups
    ts = models.DateTimeField()
    value = models.FloatField()

    class Meta:
        indexes = [
            # BRIN on time: tiny, and enough for the retention purge and the rollup scans, which
            # read time ranges across all sensors of a table filled in time order.
            BrinIndex(fields=["ts"], name="reading_ts_brin"),
        ]

    def __str__(self):
        return f"sensor {self.sensor_id} at {self.ts:%Y-%m-%d %H:%M:%S}: {self.value}"


class Aggregates(models.Model):
    """What a rollup keeps of a bucket, for one sensor or a group: avg is sum / count."""

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


class RollupBase(Aggregates):
    """Aggregates of one sensor over one bucket."""

    sensor = models.ForeignKey(
        Sensor, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )  # the primary key (sensor_id, …) serves sensor lookups

    class Meta:
        abstract = True


class HourlyRollup(RollupBase):
    pk = models.CompositePrimaryKey("sensor_id", "bucket")  # range scans per sensor, like Reading

    def __str__(self):
        return f"sensor {self.sensor_id}, hour {self.bucket:%Y-%m-%d %H:00}"


class DailyRollup(RollupBase):
    pk = models.CompositePrimaryKey("sensor_id", "bucket")

    def __str__(self):
        return f"sensor {self.sensor_id}, day {self.bucket:%Y-%m-%d}"


def members_digest(sensor_ids) -> str:
    """The name of a set of sensors, whatever the order or repeats it is given in."""
    return hashlib.sha256(",".join(map(str, sorted(set(sensor_ids)))).encode()).hexdigest()


class SensorGroup(models.Model):
    """A set of sensors whose combined aggregates are rolled up too (a site's sensors, say).

    telemetry.queries.aggregate(combine=True) over exactly this set reads one row per bucket from
    the group's rollups instead of one per sensor (a site of 100 sensors: 720 rows for 30 days of
    hours, not 72,000). The app that owns the grouping names it by `key` and keeps its members
    with SensorGroup.define(); roll_up() keeps the group's hours and days in step with its
    members' (recomputed in the same transaction) and builds a group defined since its last run,
    after which it is `ready`. Found by `digest` (members_digest of its members), so any caller
    combining the same sensors benefits.
    """

    key = models.CharField(max_length=100, unique=True, help_text="the owner's name for it, e.g. site:12")
    digest = models.CharField(max_length=64, db_index=True)  # aggregate(combine=True)'s lookup by members
    ready = models.BooleanField(default=False)  # rollups built from all of its members' history
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return self.key

    @classmethod
    def define(cls, key: str, sensor_ids) -> "SensorGroup":
        """Make `key` the group of exactly these sensors. Unchanged members keep the group and its
        rollups; new ones drop its rollups (rebuilt by the next roll_up(), combined queries read
        the members' rollups meanwhile). Locks the group row, as roll_up() does, so a rollup run
        in progress is never mixed with the new members."""
        members = sorted(set(sensor_ids))
        digest = members_digest(members)
        with transaction.atomic():
            group, created = cls.objects.select_for_update().get_or_create(key=key, defaults={"digest": digest})
            if not created and group.digest == digest:
                return group
            group.digest, group.ready, group.changed_at = digest, False, timezone.now()
            group.save(update_fields=["digest", "ready", "changed_at"])
            group.clear()
            SensorGroupMember.objects.bulk_create(
                [SensorGroupMember(group=group, sensor_id=sensor_id) for sensor_id in members]
            )
        return group

    def forget(self) -> None:
        """Delete the group, its members and its rollups."""
        with transaction.atomic():
            SensorGroup.objects.select_for_update().filter(pk=self.pk).first()
            self.clear()
            self.delete()

    def clear(self) -> None:
        with connection.cursor() as cursor:
            for table in ("telemetry_sensorgroupmember", "telemetry_grouphourlyrollup", "telemetry_groupdailyrollup"):
                cursor.execute(f"DELETE FROM {table} WHERE group_id = %s", [self.pk])


class SensorGroupMember(models.Model):
    pk = models.CompositePrimaryKey("sensor_id", "group_id")  # roll_up()'s lookup: the groups of a sensor
    sensor = models.ForeignKey(
        Sensor, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    group = models.ForeignKey(SensorGroup, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")

    def __str__(self):
        return f"sensor {self.sensor_id} in group {self.group_id}"


class GroupRollupBase(Aggregates):
    """Aggregates of a group's sensors together over one bucket: sums, min, max and count of its
    members' rollups of that bucket, and the newest last value (on a tie, the larger)."""

    group = models.ForeignKey(
        SensorGroup, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )  # the primary key (group_id, …) serves the range scans

    class Meta:
        abstract = True


class GroupHourlyRollup(GroupRollupBase):
    pk = models.CompositePrimaryKey("group_id", "bucket")

    def __str__(self):
        return f"group {self.group_id}, hour {self.bucket:%Y-%m-%d %H:00}"


class GroupDailyRollup(GroupRollupBase):
    pk = models.CompositePrimaryKey("group_id", "bucket")

    def __str__(self):
        return f"group {self.group_id}, day {self.bucket:%Y-%m-%d}"


class DirtyHour(models.Model):
    """An hour of a sensor that received readings since it was last rolled up.

    The ingest path marks hours here; the rollup task recomputes exactly those hours from raw
    readings (so a late reading updates the bucket it falls in, and re-running changes nothing).
    """

    pk = models.CompositePrimaryKey("sensor_id", "bucket")
    sensor = models.ForeignKey(
        Sensor, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )  # the primary key (sensor_id, …) serves sensor lookups
    bucket = models.DateTimeField()

    def __str__(self):
        return f"sensor {self.sensor_id}, hour {self.bucket:%Y-%m-%d %H:00}"


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
    device_ref = models.CharField(
        max_length=100, blank=True, db_index=True, help_text="device id or MAC the input claimed, if any"
    )
    detail = models.CharField(max_length=300, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self):
        return f"{self.reason}: {self.detail or self.payload[:60]}"

    @property
    def replayable(self) -> bool:
        """MQTT letters not yet replayed go through the topic handlers again (HTTP refusals were
        answered to the device, which sends again itself)."""
        return self.source == self.Source.MQTT and self.replayed_at is None


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
    # empty for a status report (a legacy post with mode=status): kept, but no usage
    treatment = models.CharField(max_length=10, choices=Treatment.choices, blank=True)
    counter = models.BigIntegerField(null=True, blank=True)
    ts = models.DateTimeField(help_text="When the device says it happened.")
    firmware = models.CharField(max_length=50, blank=True)
    source = models.CharField(max_length=10, default="api", help_text="api (JSON events) or legacy (form posts)")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ts", "-id"]
        indexes = [
            models.Index(fields=["device", "-ts"], name="event_device_time"),  # the device page's recent events
            # BRIN: events arrive in about time order, so a few pages of summaries find a range.
            # received_at: the usage rollup's scan for what arrived since its last run;
            # ts: the statistics' raw tail (events after the last rolled-up hour) across devices.
            BrinIndex(fields=["received_at"], name="event_received_brin"),
            BrinIndex(fields=["ts"], name="event_ts_brin"),
        ]

    def __str__(self):
        return self.event_id

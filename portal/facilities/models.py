import zoneinfo

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef
from django.utils import timezone

from telemetry.models import Device, Sensor, online_window

# MQTT topic levels are split on "/" and "+" and "#" are its wildcards: a tag holding one of
# them could never be published to (tenants/{slug}/sites/{site}/assets/{tag}/telemetry).
TOPIC_RESERVED = "/#+"


def validate_tag(value: str) -> None:
    refused = sorted({char for char in value if char in TOPIC_RESERVED})
    if refused:
        shown = " ".join(f"“{char}”" for char in refused)
        raise ValidationError(
            f"A tag cannot contain {shown}: tags are MQTT topic levels, where / + # have a meaning. "
            "Use letters, digits, “-” or “_” (e.g. CHILLER-001)."
        )
    if any(char.isspace() or not char.isprintable() for char in value):
        raise ValidationError("A tag cannot contain spaces or control characters (e.g. CHILLER-001).")


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a time zone name such as Europe/Lisbon or America/Sao_Paulo.")


class Site(models.Model):
    name = models.CharField(max_length=150, unique=True)
    address = models.CharField(max_length=300, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class AssetQuerySet(models.QuerySet):
    def with_online(self):
        """Annotate `online`: any device bound to the asset reported within the online window."""
        recent = DeviceBinding.objects.filter(
            asset=OuterRef("pk"), device__last_seen__gte=timezone.now() - online_window()
        )
        return self.annotate(online=Exists(recent))


class Asset(models.Model):
    class Type(models.TextChoices):
        CHILLER = "chiller", "Chiller"
        AHU = "ahu", "Air handling unit"
        FREEZER = "freezer", "Freezer"
        COLD_ROOM = "cold_room", "Cold room"
        BOILER = "boiler", "Boiler"
        PUMP = "pump", "Pump"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        OPERATIONAL = "operational", "Operational"
        MAINTENANCE = "maintenance", "In maintenance"
        FAULT = "fault", "Fault"
        DECOMMISSIONED = "decommissioned", "Decommissioned"

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="assets")
    tag = models.CharField(
        max_length=64,
        validators=[validate_tag],
        help_text="The asset's tag, as on its label and in MQTT topics (e.g. CHILLER-001); unique within its site.",
    )
    name = models.CharField(max_length=150, blank=True)
    type = models.CharField(max_length=20, choices=Type.choices, default=Type.OTHER)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPERATIONAL)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AssetQuerySet.as_manager()

    class Meta:
        ordering = ["site__name", "tag"]
        constraints = [models.UniqueConstraint(fields=["site", "tag"], name="asset_unique_site_tag")]
        indexes = [
            # the assets list filters by type and status and sorts by tag
            models.Index(fields=["type", "tag"], name="asset_type_tag"),
            models.Index(fields=["status", "tag"], name="asset_status_tag"),
            models.Index(fields=["tag"], name="asset_tag"),
        ]

    def __str__(self):
        # with the site: tags are unique per site only, and two CHILLER-001s must not look alike
        # in a menu (select_related("site") where many are listed)
        return f"{self.tag} {self.name}".strip() + f" · {self.site.name}"

    def sensors(self):
        """Sensors of every device bound to the asset (an old device and a new gateway alike)."""
        return (
            Sensor.objects.filter(device__binding__asset=self)
            .select_related("device")
            .order_by("device__device_id", "key")
        )


class DeviceBinding(models.Model):
    """A device installed on an asset. A device serves one asset at a time."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="bindings")
    device = models.OneToOneField(Device, on_delete=models.CASCADE, related_name="binding")
    bound_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["device__device_id"]

    def __str__(self):
        return f"{self.device} on {self.asset}"

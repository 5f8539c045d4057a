"""Service outlets (seed 003): outlets, their counting machines, and which device counted for
which machine when.

A device's usage events (telemetry.DeviceEvent) belong to the machine it was bound to at the
event's time: MachineDevice keeps every binding with its interval, so moving a device to another
machine leaves the history where it was. The database holds the rules: one active binding per
machine and one per device (partial unique indexes), an ended binding has an end after its start.
"""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from telemetry.models import Device


class OutletQuerySet(models.QuerySet):
    def with_counts(self):
        """Annotate machine_count: the machines on record (beside the owner's number_of_machines)."""
        return self.annotate(machine_count=models.Count("machines", distinct=True))


class Outlet(models.Model):
    name = models.CharField(max_length=150, unique=True)
    address = models.CharField(max_length=300, blank=True)
    contact_person = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    # the owner's own figures (seed 003), shown beside what Fieldwatch counts
    total_sva = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(100_000)], help_text="Total service advisors."
    )
    average_intage_services = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(1_000_000)],
        help_text="Average intake services, as the owner reports them.",
    )
    number_of_machines = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(10_000)],
        help_text="Machines at the outlet, as the owner reports them (pages show it beside the machines on record).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OutletQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class MachineQuerySet(models.QuerySet):
    def with_device(self):
        """Outlet and the active binding's device in two queries whatever the count (Machine.binding)."""
        active = MachineDevice.objects.filter(is_active=True).select_related("device")
        return self.select_related("outlet").prefetch_related(
            models.Prefetch("bindings", queryset=active, to_attr="active_bindings")
        )


class Machine(models.Model):
    outlet = models.ForeignKey(Outlet, on_delete=models.PROTECT, related_name="machines")
    name = models.CharField(max_length=150)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MachineQuerySet.as_manager()

    class Meta:
        ordering = ["outlet__name", "name"]
        constraints = [models.UniqueConstraint(fields=["outlet", "name"], name="machine_unique_name_per_outlet")]

    def __str__(self):
        return f"{self.outlet.name} / {self.name}" if self.outlet_id else self.name

    @property
    def binding(self) -> "MachineDevice | None":
        """The active binding (prefetched by MachineQuerySet.with_device() where lists need it)."""
        active = getattr(self, "active_bindings", None)
        if active is not None:
            return active[0] if active else None
        return self.bindings.filter(is_active=True).select_related("device").first()


class BindingConflict(Exception):
    """Another binding of the same machine or device was made at the same moment."""


def rebucket(device: Device, ended: list["MachineDevice"], at, first: bool) -> None:
    """Usage from `at` on now counts for other machines: mark those hours for the rollups (all of
    the device's hours when this is its first binding, which takes what it counted before)."""
    from portal.outlets.usage import mark_dirty

    mark_dirty(device.pk, None if first else at)
    for binding in ended:
        if binding.device_id != device.pk:
            mark_dirty(binding.device_id, at)


class MachineDevice(models.Model):
    """Device `device` counted for `machine` from assigned_date until deactivated_date (open while active)."""

    machine = models.ForeignKey(Machine, on_delete=models.PROTECT, related_name="bindings")
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="machine_bindings")
    is_active = models.BooleanField(default=True)
    assigned_date = models.DateTimeField(default=timezone.now)
    deactivated_date = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-assigned_date", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["machine"], condition=Q(is_active=True), name="machinedevice_one_active_per_machine"
            ),
            models.UniqueConstraint(
                fields=["device"], condition=Q(is_active=True), name="machinedevice_one_active_per_device"
            ),
            models.CheckConstraint(
                condition=Q(is_active=True, deactivated_date__isnull=True)
                | Q(is_active=False, deactivated_date__isnull=False, deactivated_date__gte=models.F("assigned_date")),
                name="machinedevice_active_xor_ended",
            ),
        ]
        # usage attribution: the bindings of a device in time order
        indexes = [models.Index(fields=["device", "assigned_date"], name="machinedevice_device_time")]

    def __str__(self):
        return f"{self.device} → {self.machine}"

    @classmethod
    def bind(cls, machine: Machine, device: Device, at=None) -> tuple["MachineDevice", list["MachineDevice"]]:
        """Bind `device` to `machine` from `at` (now): the active bindings of either end in the
        same transaction. Returns the new binding and the ended ones. BindingConflict when a
        concurrent bind of the same machine or device won (the partial unique indexes decide)."""
        at = at or timezone.now()
        current = cls.objects.filter(machine=machine, device=device, is_active=True).first()
        if current is not None:  # bound already: nothing ends, nothing starts
            return current, []
        try:
            with transaction.atomic():
                ended = list(
                    cls.objects.select_for_update()
                    .filter(Q(machine=machine) | Q(device=device), is_active=True)
                    .select_related("machine", "device")
                )
                first = not cls.objects.filter(device=device).exists()
                for binding in ended:
                    binding.end(at)
                created = cls.objects.create(machine=machine, device=device, assigned_date=at)
                rebucket(device, ended, at, first)
                return created, ended
        except IntegrityError as error:
            raise BindingConflict(str(error)) from None

    def end(self, at=None) -> None:
        """End the binding; its device's later usage counts for no machine (callers mark it)."""
        self.is_active = False
        self.deactivated_date = max(at or timezone.now(), self.assigned_date)
        self.save(update_fields=["is_active", "deactivated_date"])

    def unbind(self, at=None) -> None:
        """End the binding, and have the rollups move the device's usage since then off the machine."""
        from portal.outlets.usage import mark_dirty

        with transaction.atomic():
            self.end(at)
            mark_dirty(self.device_id, self.deactivated_date)


# --- usage rollups (portal.outlets.usage computes them; portal.outlets.stats reads them) -----------


class UsageRollup(models.Model):
    """Treatment events of one device for one machine in one bucket, and the counter's increase.

    machine is the machine the device was bound to at the events' time (null: bound to none), so a
    bucket in which a device moved has a row per machine. Rows are recomputed from raw events,
    never incremented (portal.outlets.usage), which makes every run idempotent.
    """

    device = models.ForeignKey(Device, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    machine = models.ForeignKey(
        Machine, null=True, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    treatment = models.CharField(max_length=10)
    bucket = models.DateTimeField(help_text="Start of the hour, day or month in the tenant's time zone.")
    events = models.IntegerField()
    counter_delta = models.BigIntegerField(help_text="How far the device's counter rose, across resets.")

    class Meta:
        abstract = True


def rollup_meta(name: str):
    """Indexes every rollup table has: the recompute's key (device first: it deletes and inserts a
    device's buckets), the statistics' scans by machine (outlet and machine filters) and by time
    (the whole tenant). Each carries the sums, so the statistics read the index alone (an
    index-only scan on pages autovacuum marked visible): a machine's year of days is a few index
    pages, not a heap page per row wherever the rows were written."""
    sums = ["events", "counter_delta"]
    return {
        "constraints": [
            # (unchanged: tenant schemas are cloned with their constraints renamed, so a migration
            # could not find this one by its name to alter it)
            models.UniqueConstraint(
                fields=["device", "bucket", "treatment", "machine"], name=f"{name}_key", nulls_distinct=False
            )
        ],
        "indexes": [
            models.Index(fields=["machine", "bucket"], name=f"{name}_machine_time", include=["treatment", *sums]),
            models.Index(fields=["bucket"], name=f"{name}_time", include=["machine", "treatment", *sums]),
        ],
    }


class UsageHourly(UsageRollup):
    Meta = type("Meta", (), rollup_meta("usagehourly"))

    def __str__(self):
        return f"{self.device_id} {self.treatment} hour {self.bucket:%Y-%m-%d %H:%M}"


class UsageDaily(UsageRollup):
    Meta = type("Meta", (), rollup_meta("usagedaily"))

    def __str__(self):
        return f"{self.device_id} {self.treatment} day {self.bucket:%Y-%m-%d}"


class UsageMonthly(UsageRollup):
    Meta = type("Meta", (), rollup_meta("usagemonthly"))

    def __str__(self):
        return f"{self.device_id} {self.treatment} month {self.bucket:%Y-%m}"


class UsageDirty(models.Model):
    """An hour of a device to recompute although no new event arrived in it: a binding changed
    (its events now belong to another machine) or events were flushed."""

    pk = models.CompositePrimaryKey("device_id", "bucket")
    device = models.ForeignKey(Device, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    bucket = models.DateTimeField()

    def __str__(self):
        return f"{self.device_id} hour {self.bucket:%Y-%m-%d %H:%M}"


class UsageCursor(models.Model):
    """How far the rollups have read (one row per tenant): events received before `received_before`
    are in the rollups; statistics read raw events from `closed_before` on."""

    received_before = models.DateTimeField(null=True)
    closed_before = models.DateTimeField(null=True)
    time_zone = models.CharField(max_length=64, blank=True, help_text="The zone the buckets were cut in.")
    rolled_at = models.DateTimeField(null=True)

    def __str__(self):
        return f"usage rolled up to {self.received_before}"

    @classmethod
    def current(cls) -> "UsageCursor":
        return cls.objects.order_by("pk").first() or cls.objects.create()

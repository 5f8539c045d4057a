import django_filters
from django.db.models import F, Q

from portal.core.filters import ListFilterSet
from telemetry.models import Device


def firmware_choices():
    # the versions this tenant's devices report, so the menu never offers one that matches nothing
    versions = Device.objects.exclude(firmware="").order_by("firmware").values_list("firmware", flat=True).distinct()
    return [(version, version) for version in versions]


class DeviceOrderingFilter(django_filters.OrderingFilter):
    """Sorts with never-seen devices (no last_seen) last in either direction, and device_id
    breaking ties so that pages of equal names or firmware stay stable."""

    def filter(self, qs, value):
        if value in django_filters.constants.EMPTY_VALUES:
            return qs
        ordering = []
        for param in value:
            if param:
                field = self.get_ordering_value(param)
                ordering.append(
                    F(field[1:]).desc(nulls_last=True) if field.startswith("-") else F(field).asc(nulls_last=True)
                )
        return qs.order_by(*ordering, "device_id")


class DeviceFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    kind = django_filters.ChoiceFilter(choices=Device.Kind.choices, empty_label="Any kind")
    status = django_filters.ChoiceFilter(
        choices=[("online", "Online"), ("offline", "Offline")],
        method="by_status",
        empty_label="Online or offline",
        label="Status",
    )
    firmware = django_filters.ChoiceFilter(choices=firmware_choices, empty_label="Any firmware")
    registration = django_filters.ChoiceFilter(
        choices=[("registered", "Registered"), ("unregistered", "Unregistered")],
        method="by_registration",
        empty_label="Registered or not",
        label="Registration",
    )
    sort = DeviceOrderingFilter(
        fields=(("device_id", "device_id"), ("name", "name"), ("last_seen", "last_seen"), ("firmware", "firmware")),
        label="Sort",
    )

    class Meta:
        model = Device
        fields = ["q", "kind", "status", "firmware", "registration"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(device_id__icontains=value) | Q(name__icontains=value) | Q(mac__icontains=value))

    def by_status(self, queryset, name, value):
        return queryset.online() if value == "online" else queryset.offline()

    def by_registration(self, queryset, name, value):
        # unregistered: devices that handshook over the device API and wait for an admin; one
        # that only reports over MQTT has nothing to wait for and is in neither list
        if value == "registered":
            return queryset.filter(assigned_at__isnull=False)
        return queryset.filter(assigned_at__isnull=True, last_handshake_at__isnull=False)

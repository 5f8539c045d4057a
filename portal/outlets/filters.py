"""The outlet and machine filters: one FilterSet per list, used by its page, its CSV and its JSON API."""

from datetime import timedelta

import django_filters
from django import forms
from django.db.models import Q
from django.utils import timezone

from portal.core.filters import DateFilter, ListFilterSet
from portal.core.lists import Column
from portal.outlets.models import Machine, Outlet
from portal.outlets.queries import counted_for
from portal.outlets.stats import local_midnight
from telemetry.models import DeviceEvent

ACTIVE_CHOICES = [("true", "Active"), ("false", "Inactive")]


def by_active(queryset, name, value):
    return queryset.filter(is_active=value == "true")


class OutletFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    is_active = django_filters.ChoiceFilter(
        choices=ACTIVE_CHOICES, method=lambda qs, name, value: by_active(qs, name, value), empty_label="Active or not"
    )
    sort = django_filters.OrderingFilter(
        fields=(("name", "name"), ("created_at", "created"), ("machine_count", "machines")), label="Sort"
    )

    class Meta:
        model = Outlet
        fields = ["q", "is_active"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(name__icontains=value) | Q(address__icontains=value) | Q(contact_person__icontains=value)
        )


class MachineFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    outlet_id = django_filters.ModelChoiceFilter(
        field_name="outlet", queryset=Outlet.objects.all(), empty_label="Any outlet", label="Outlet"
    )
    is_active = django_filters.ChoiceFilter(
        choices=ACTIVE_CHOICES, method=lambda qs, name, value: by_active(qs, name, value), empty_label="Active or not"
    )
    device_id = django_filters.CharFilter(method="by_device", label="Current device")
    sort = django_filters.OrderingFilter(
        fields=(("name", "name"), ("outlet__name", "outlet"), ("created_at", "created")), label="Sort"
    )

    class Meta:
        model = Machine
        fields = ["q", "outlet_id", "is_active", "device_id"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(outlet__name__icontains=value))

    def by_device(self, queryset, name, value):
        return queryset.filter(bindings__is_active=True, bindings__device__device_id=value)


class EventFilter(ListFilterSet):
    """The events list and seed 003's /api/events/ and /api/export/: by outlet, machine (what the
    event counted for at its time), device, treatment, the last N days or a range, without status."""

    q = django_filters.CharFilter(method="search", label="Search")
    outlet = django_filters.ModelChoiceFilter(
        queryset=Outlet.objects.all(), method="by_outlet", empty_label="Any outlet", label="Outlet"
    )
    machine = django_filters.ModelChoiceFilter(
        queryset=Machine.objects.select_related("outlet"),
        method="by_machine",
        empty_label="Any machine",
        label="Machine",
    )
    device = django_filters.CharFilter(field_name="device__device_id", label="Device id")
    treatment = django_filters.ChoiceFilter(choices=DeviceEvent.Treatment.choices, empty_label="Any treatment")
    days = django_filters.NumberFilter(method="last_days", label="Last N days", min_value=1, max_value=3660)
    start = DateFilter(method="from_date", label="From")
    end = DateFilter(method="to_date", label="To (included)")
    exclude_status = django_filters.BooleanFilter(
        method="without_status", label="Exclude status", widget=forms.CheckboxInput
    )
    sort = django_filters.OrderingFilter(fields=(("ts", "time"), ("received_at", "received")), label="Sort")

    class Meta:
        model = DeviceEvent
        fields = ["q", "outlet", "machine", "device", "treatment", "days", "start", "end", "exclude_status"]

    def filter_queryset(self, queryset):
        return super().filter_queryset(queryset).order_by(*(queryset.query.order_by or ["-ts", "-id"]))

    def search(self, queryset, name, value):
        return queryset.filter(Q(event_id__icontains=value) | Q(device__device_id__icontains=value))

    def by_outlet(self, queryset, name, value):
        return counted_for(queryset, Machine.objects.filter(outlet=value))

    def by_machine(self, queryset, name, value):
        return counted_for(queryset, Machine.objects.filter(pk=value.pk))

    def last_days(self, queryset, name, value):
        return queryset.filter(ts__gte=timezone.now() - timedelta(days=int(value)))

    def from_date(self, queryset, name, value):
        return queryset.filter(ts__gte=local_midnight(value, timezone.get_current_timezone()))

    def to_date(self, queryset, name, value):
        return queryset.filter(ts__lt=local_midnight(value + timedelta(days=1), timezone.get_current_timezone()))

    def without_status(self, queryset, name, value):
        return queryset.exclude(treatment="") if value else queryset


EVENT_COLUMNS = [
    Column("occurred_at", "ts"),
    Column("device_id", "device.device_id"),
    Column("event_id", "event_id"),
    Column("event", "event"),
    Column("treatment", "treatment"),
    Column("counter", "counter"),
    Column("machine", "machine_name"),
    Column("outlet", "outlet_name"),
    Column("source", "source"),
    Column("received_at", "received_at"),
]


class CountingDeviceFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    status = django_filters.ChoiceFilter(
        choices=[("online", "Online"), ("offline", "Offline"), ("unregistered", "Bound to no machine")],
        method="by_status",
        empty_label="All devices",
        label="Show",
    )
    sort = django_filters.OrderingFilter(
        fields=(("device_id", "device_id"), ("last_seen", "last_seen"), ("firmware", "firmware")), label="Sort"
    )

    class Meta:
        model = DeviceEvent.device.field.related_model
        fields = ["q", "status"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(device_id__icontains=value) | Q(name__icontains=value) | Q(mac__icontains=value))

    def by_status(self, queryset, name, value):
        if value == "unregistered":
            return queryset.filter(machine_id__isnull=True)
        return queryset.online() if value == "online" else queryset.offline()

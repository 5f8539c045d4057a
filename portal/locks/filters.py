import django_filters
from django.db.models import Q

from portal.core.filters import DateFilter, ListFilterSet
from portal.facilities.models import Site
from portal.locks.models import AccessLog, Lock
from telemetry.models import Device


class LockFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    status = django_filters.ChoiceFilter(choices=Lock.Status.choices, empty_label="Any state")
    online = django_filters.ChoiceFilter(
        choices=[("online", "Online"), ("offline", "Offline")],
        method="by_online",
        empty_label="Online or offline",
        label="Connection",
    )
    site = django_filters.ModelChoiceFilter(queryset=Site.objects.order_by("name"), empty_label="Any site")
    battery_below = django_filters.NumberFilter(field_name="battery", lookup_expr="lt", label="Battery below %")
    sort = django_filters.OrderingFilter(
        fields=(
            ("name", "name"),
            ("device__device_id", "lock_id"),
            ("battery", "battery"),
            ("device__last_seen", "last_seen"),
            ("last_access", "last_access"),
        ),
        label="Sort",
    )

    class Meta:
        model = Lock
        fields = ["q", "status", "online", "site", "battery_below"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(name__icontains=value) | Q(device__device_id__icontains=value) | Q(location__icontains=value)
        )

    def by_online(self, queryset, name, value):
        online = Device.objects.online().values("pk")
        return queryset.filter(device__in=online) if value == "online" else queryset.exclude(device__in=online)


class AccessLogFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    lock = django_filters.ModelChoiceFilter(queryset=Lock.objects.order_by("name"), empty_label="Any lock")
    method = django_filters.ChoiceFilter(choices=AccessLog.Method.choices, empty_label="Any method")
    action = django_filters.ChoiceFilter(choices=AccessLog.Action.choices, empty_label="Lock or unlock")
    success = django_filters.ChoiceFilter(
        choices=[("yes", "Granted"), ("no", "Refused")],
        method="by_success",
        empty_label="Granted or refused",
        label="Outcome",
    )
    start = DateFilter(field_name="at", lookup_expr="date__gte", label="From (date)")
    end = DateFilter(field_name="at", lookup_expr="date__lte", label="To (date)")
    sort = django_filters.OrderingFilter(fields=(("at", "at"), ("lock__name", "lock")), label="Sort")

    class Meta:
        model = AccessLog
        fields = ["q", "lock", "method", "action", "success", "start", "end"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(holder__icontains=value)
            | Q(actor_email__icontains=value)
            | Q(reason__icontains=value)
            | Q(ip__startswith=value)
        )

    def by_success(self, queryset, name, value):
        return queryset.filter(success=value == "yes")

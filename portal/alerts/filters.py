import django_filters
from django.db.models import Q

from portal.alerts.models import Alert, AlertRule, Channel, Notification, Severity, Silence
from portal.alerts.targets import registry
from portal.core.filters import ListFilterSet
from portal.core.formatting import DateTimeText
from portal.facilities.models import Asset, Site


class AlertFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    status = django_filters.ChoiceFilter(
        choices=[("active", "Open or acknowledged"), *Alert.Status.choices],
        method="by_status",
        empty_label="Any status",
    )
    severity = django_filters.ChoiceFilter(choices=Severity.choices, empty_label="Any severity")
    site = django_filters.ModelChoiceFilter(queryset=Site.objects.all(), empty_label="Any site")
    asset = django_filters.ModelChoiceFilter(
        queryset=Asset.objects.select_related("site").order_by("tag", "site__name"), empty_label="Any asset"
    )
    rule = django_filters.ModelChoiceFilter(queryset=AlertRule.objects.all(), empty_label="Any rule")
    kind = django_filters.ChoiceFilter(choices=Alert.Kind.choices, empty_label="Any kind")
    since = django_filters.DateTimeFilter(field_name="opened_at", lookup_expr="gte", label="Opened from")
    until = django_filters.DateTimeFilter(field_name="opened_at", lookup_expr="lt", label="Opened before")
    sort = django_filters.OrderingFilter(
        fields=(("opened_at", "opened"), ("severity", "severity"), ("status", "status"), ("resolved_at", "resolved"))
    )

    class Meta:
        model = Alert
        fields = ["q", "status", "severity", "site", "asset", "rule", "kind", "since", "until"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("since", "until"):
            self.form.fields[name].widget = DateTimeText(self.form.fields[name].widget.attrs)

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(summary__icontains=value) | Q(subject_label__icontains=value) | Q(rule_name__icontains=value)
        )

    def by_status(self, queryset, name, value):
        return queryset.filter(resolved_at__isnull=True) if value == "active" else queryset.filter(status=value)


class RuleFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    severity = django_filters.ChoiceFilter(choices=Severity.choices, empty_label="Any severity")
    enabled = django_filters.ChoiceFilter(
        choices=[("yes", "Enabled"), ("no", "Disabled")], method="by_enabled", empty_label="Enabled or not"
    )
    target_kind = django_filters.ChoiceFilter(
        choices=lambda: [(k.code, k.label) for k in registry().values()], empty_label="Any target", label="Target"
    )
    sort = django_filters.OrderingFilter(fields=(("name", "name"), ("severity", "severity"), ("updated_at", "updated")))

    class Meta:
        model = AlertRule
        fields = ["q", "severity", "enabled", "target_kind"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(description__icontains=value))

    def by_enabled(self, queryset, name, value):
        return queryset.filter(enabled=value == "yes")


class SilenceFilter(ListFilterSet):
    status = django_filters.ChoiceFilter(
        choices=[("active", "Active"), ("scheduled", "Scheduled"), ("expired", "Expired")],
        method="by_status",
        empty_label="Any status",
    )
    q = django_filters.CharFilter(field_name="reason", lookup_expr="icontains", label="Reason")
    sort = django_filters.OrderingFilter(fields=(("starts_at", "starts"), ("ends_at", "ends")))

    class Meta:
        model = Silence
        fields = ["q", "status"]

    def by_status(self, queryset, name, value):
        from django.utils import timezone

        now = timezone.now()
        if value == "active":
            return queryset.filter(starts_at__lte=now, ends_at__gt=now)
        if value == "scheduled":
            return queryset.filter(starts_at__gt=now)
        return queryset.filter(ends_at__lte=now)


class NotificationFilter(ListFilterSet):
    status = django_filters.ChoiceFilter(choices=Notification.Status.choices, empty_label="Any status")
    channel = django_filters.ModelChoiceFilter(queryset=Channel.objects.all(), empty_label="Any channel")
    event = django_filters.ChoiceFilter(choices=Notification.Event.choices, empty_label="Any event")
    since = django_filters.DateTimeFilter(field_name="created_at", lookup_expr="gte", label="From")
    until = django_filters.DateTimeFilter(field_name="created_at", lookup_expr="lt", label="Before")
    sort = django_filters.OrderingFilter(fields=(("created_at", "created"), ("status", "status")))

    class Meta:
        model = Notification
        fields = ["status", "channel", "event", "since", "until"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("since", "until"):
            self.form.fields[name].widget = DateTimeText(self.form.fields[name].widget.attrs)

import django_filters
from django import forms
from django.db.models import Q

from portal.audit.models import AuditLog
from portal.core.filters import ListFilterSet


def recorded_actions() -> list[tuple[str, str]]:
    """The actions this tenant's log holds, so the menu never offers one that matches nothing."""
    actions = AuditLog.objects.order_by("action").values_list("action", flat=True).distinct()
    return [(action, action) for action in actions]


class AuditLogFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    action = django_filters.ChoiceFilter(empty_label="Any action", choices=lambda: recorded_actions())
    actor = django_filters.CharFilter(field_name="actor_email", lookup_expr="icontains", label="Actor")
    since = django_filters.DateFilter(field_name="created_at", lookup_expr="date__gte", label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = django_filters.DateFilter(field_name="created_at", lookup_expr="date__lte", label="To", widget=forms.DateInput(attrs={"type": "date"}))
    sort = django_filters.OrderingFilter(fields=(("created_at", "time"), ("action", "action"), ("actor_email", "actor")))

    class Meta:
        model = AuditLog
        fields = ["q", "action", "actor", "since", "until"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(object_repr__icontains=value) | Q(object_id=value) | Q(actor_email__icontains=value) | Q(action__icontains=value)
        )

import django_filters
from django.db.models import Q

from portal.audit.models import AuditLog
from portal.core.filters import ListFilterSet, date_range


def recorded_actions() -> list[tuple[str, str]]:
    """The actions this tenant's log holds, so the menu never offers one that matches nothing."""
    actions = AuditLog.objects.order_by("action").values_list("action", flat=True).distinct()
    return [(action, action) for action in actions]


class AuditLogFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    action = django_filters.ChoiceFilter(empty_label="Any action", choices=lambda: recorded_actions())
    actor = django_filters.CharFilter(field_name="actor_email", lookup_expr="icontains", label="Actor")
    sort = django_filters.OrderingFilter(
        fields=(("created_at", "time"), ("action", "action"), ("actor_email", "actor"))
    )

    class Meta:
        model = AuditLog
        fields = ["q", "action", "actor"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(object_repr__icontains=value)
            | Q(object_id=value)
            | Q(actor_email__icontains=value)
            | Q(action__icontains=value)
        )


AuditLogFilter.base_filters.update(date_range("created_at"))

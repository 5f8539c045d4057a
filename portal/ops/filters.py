import django_filters
from django.db.models import Q

from portal.core.filters import ListFilterSet
from portal.tenancy.models import Tenant


class TenantFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    is_active = django_filters.ChoiceFilter(
        choices=[("true", "Active"), ("false", "Suspended")],
        method="filter_active",
        label="Status",
        empty_label="Any status",
    )
    sort = django_filters.OrderingFilter(
        fields=(("name", "name"), ("slug", "slug"), ("created_at", "created"), ("member_count", "members"))
    )

    class Meta:
        model = Tenant
        fields = ["q", "is_active"]

    def filter_active(self, queryset, name, value):
        return queryset.filter(is_active=(value == "true"))

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(name__icontains=value) | Q(slug__icontains=value) | Q(domains__domain__icontains=value)
        ).distinct()

import django_filters
from django.db.models import Q

from portal.core.filters import ListFilterSet
from portal.tenancy.models import Membership, Role


class MembershipFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    role = django_filters.ChoiceFilter(choices=Role.choices, empty_label="Any role")
    sort = django_filters.OrderingFilter(
        fields=(("user__email", "email"), ("user__name", "name"), ("role", "role"), ("created_at", "joined")),
        label="Sort",
    )

    class Meta:
        model = Membership
        fields = ["q", "role"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(user__email__icontains=value) | Q(user__name__icontains=value))

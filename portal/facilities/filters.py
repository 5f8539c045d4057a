import django_filters
from django.db.models import Q

from portal.core.filters import ListFilterSet
from portal.facilities.models import Asset, Site


class SiteFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    sort = django_filters.OrderingFilter(
        fields=(("name", "name"), ("asset_count", "assets"), ("created_at", "created"))
    )

    class Meta:
        model = Site
        fields = ["q"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(address__icontains=value))


class AssetFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    site = django_filters.ModelChoiceFilter(queryset=Site.objects.all(), empty_label="Any site")
    type = django_filters.ChoiceFilter(choices=Asset.Type.choices, empty_label="Any type")
    status = django_filters.ChoiceFilter(choices=Asset.Status.choices, empty_label="Any status")
    online = django_filters.ChoiceFilter(
        choices=[("yes", "Online"), ("no", "Offline")],
        method="filter_online",
        empty_label="Online or not",
        label="Devices",
    )
    sort = django_filters.OrderingFilter(
        fields=(("tag", "tag"), ("name", "name"), ("site__name", "site"), ("type", "type"), ("status", "status"))
    )

    class Meta:
        model = Asset
        fields = ["q", "site", "type", "status", "online"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(tag__icontains=value) | Q(name__icontains=value))

    def filter_online(self, queryset, name, value):
        return queryset.filter(online=(value == "yes"))

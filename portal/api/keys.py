"""The tenant's API keys (admins): list, create, revoke; every change audited.

A new key's secret is shown once, in the answer to the POST that made it (not redirected, not
kept anywhere): only its hash is stored, so a lost key is revoked and replaced.
"""

import django_filters
from django import forms
from django.contrib import messages
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from portal.api.models import KEY_ROLES, ApiKey
from portal.audit.log import record
from portal.core.filters import ListFilterSet
from portal.core.lists import Column, list_response
from portal.tenancy.access import role_required
from portal.tenancy.models import Role

KEY_COLUMNS = [
    Column("name", "name"),
    Column("role", "role"),
    Column("prefix", "prefix"),
    Column("created_by", "created_by.email"),
    Column("created_at", "created_at"),
    Column("last_used_at", "last_used_at"),
    Column("revoked_at", "revoked_at"),
]


class ApiKeyFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    status = django_filters.ChoiceFilter(
        choices=[("active", "Active"), ("revoked", "Revoked")],
        method="by_status",
        empty_label="Active or revoked",
        label="Status",
    )
    sort = django_filters.OrderingFilter(
        fields=(("name", "name"), ("created_at", "created"), ("last_used_at", "last_used")), label="Sort"
    )

    class Meta:
        model = ApiKey
        fields = ["q", "status"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(prefix__icontains=value))

    def by_status(self, queryset, name, value):
        return queryset.filter(revoked_at__isnull=value == "active")


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. “Home Assistant, plant 2”.")
    role = forms.ChoiceField(
        choices=KEY_ROLES,
        initial="operator",
        required=False,
        help_text="What the key may do in the JSON APIs, as a member of that role (never an owner's actions).",
    )

    def clean_role(self):
        return self.cleaned_data["role"] or "operator"


@role_required(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def key_list(request):
    """The keys; a POST creates one and shows its secret in this answer only."""
    form = ApiKeyForm(request.POST or None)
    created = raw_key = None
    if request.method == "POST" and form.is_valid():
        created, raw_key = ApiKey.issue(form.cleaned_data["name"], request.user, form.cleaned_data["role"])
        record(
            request, "api_key.created", created, {"name": created.name, "prefix": created.prefix, "role": created.role}
        )
        form = ApiKeyForm()
    queryset = ApiKey.objects.select_related("created_by").order_by("-created_at")
    filterset = ApiKeyFilter(request.GET, queryset=queryset)
    response = list_response(
        request,
        filterset,
        "api/keys.html",
        KEY_COLUMNS,
        "api-keys",
        {"form": form, "created": created, "raw_key": raw_key, "api_host": request.get_host()},
    )
    if raw_key:
        response["Cache-Control"] = "no-store"  # the secret must not stay in a cache
    elif form.errors:
        response.status_code = 400
    return response


@role_required(Role.ADMIN)
@require_POST
def key_revoke(request, pk):
    key = get_object_or_404(ApiKey, pk=pk)
    # a conditional update: of two admins revoking at once, one revokes and is audited
    if ApiKey.objects.filter(pk=key.pk, revoked_at=None).update(revoked_at=timezone.now()):
        record(request, "api_key.revoked", key, {"name": key.name, "prefix": key.prefix})
        messages.success(request, f"API key “{key.name}” revoked: requests with it are refused from now on.")
    return redirect("api-key-list")

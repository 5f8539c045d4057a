import functools

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_tenants.utils import schema_context

from portal.audit.log import record
from portal.core.lists import Column, list_response
from portal.ops.filters import TenantFilter
from portal.ops.forms import TenantForm
from portal.tenancy.models import Tenant
from portal.tenancy.provisioning import create_tenant

TENANT_COLUMNS = [
    Column("name", "name"),
    Column("slug", "slug"),
    Column("schema", "schema_name"),
    Column("domain", "primary_domain"),
    Column("active", "is_active"),
    Column("members", "member_count"),
    Column("created", "created_at"),
]


def staff_required(view):
    @functools.wraps(view)
    @login_required
    def wrapped(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("The console is for Fieldwatch operators.")
        return view(request, *args, **kwargs)

    return wrapped


@staff_required
def tenant_list(request):
    queryset = Tenant.objects.customers().annotate(member_count=Count("memberships")).prefetch_related("domains")
    filterset = TenantFilter(request.GET, queryset=queryset.order_by("name"))
    return list_response(request, filterset, "ops/tenants.html", TENANT_COLUMNS, "tenants", {"form": TenantForm()})


@staff_required
def tenant_create(request):
    form = TenantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        tenant = create_tenant(data["name"], data["slug"], owner=data["owner_email"], request=request)
        messages.success(request, f"{tenant.name} is ready at {tenant.primary_domain()}.")
        return redirect("ops-tenant-list")
    return render(request, "ops/tenant_form.html", {"form": form}, status=400 if form.errors else 200)


@require_POST
@staff_required
def tenant_toggle(request, pk):
    tenant = get_object_or_404(Tenant.objects.customers(), pk=pk)
    tenant.is_active = not tenant.is_active
    tenant.save(update_fields=["is_active"])
    with schema_context(tenant.schema_name):
        record(request, "tenant.activated" if tenant.is_active else "tenant.suspended", tenant)
    state = "active again" if tenant.is_active else "suspended"
    messages.success(request, f"{tenant.name} is {state}.")
    return redirect("ops-tenant-list")

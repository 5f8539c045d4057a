"""Console pages for tenants: list with figures, detail, create, suspend/reactivate, domains, audit."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.db.models import Count
from django.http.request import validate_host
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_tenants.utils import schema_context

from portal.audit.filters import AuditLogFilter
from portal.audit.models import AuditLog
from portal.audit.views import AUDIT_COLUMNS
from portal.core.lists import Column, list_response
from portal.ops.access import staff_required
from portal.ops.filters import TenantFilter
from portal.ops.forms import DomainForm, TenantForm
from portal.ops.log import READS, record_ops
from portal.ops.usage import attach_usage, dead_letters_by_reason, usage_of
from portal.tenancy.models import Domain, Membership, Role, Tenant
from portal.tenancy.provisioning import create_tenant


def figure(name: str):
    return lambda tenant: getattr(usage_of(tenant), name)


TENANT_COLUMNS = [
    Column("name", "name"),
    Column("slug", "slug"),
    Column("schema", "schema_name"),
    Column("domain", "primary_domain"),
    Column("active", "is_active"),
    Column("members", "member_count"),
    *(Column(name, figure(name)) for name in ("sites", "assets", "devices", "readings_today", "open_alerts")),
    Column("last_activity", figure("last_activity")),
    Column("created", "created_at"),
]


def customer_or_404(pk: int) -> Tenant:
    return get_object_or_404(Tenant.objects.customers(), pk=pk)


@staff_required
def tenant_list(request):
    queryset = Tenant.objects.customers().annotate(member_count=Count("memberships")).prefetch_related("domains")
    filterset = TenantFilter(request.GET, queryset=queryset.order_by("name"))
    return list_response(
        request, filterset, "ops/tenants.html", TENANT_COLUMNS, "tenants", {"form": TenantForm()}, prepare=attach_usage
    )


@staff_required
def tenant_create(request):
    form = TenantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        started = timezone.now()
        tenant = create_tenant(data["name"], data["slug"], owner=data["owner_email"], request=request)
        seconds = round((timezone.now() - started).total_seconds(), 2)
        owner = data["owner_email"].email if data["owner_email"] else ""
        record_ops(request, "tenant.created", tenant, {"slug": tenant.slug, "owner": owner, "seconds": seconds})
        messages.success(request, f"{tenant.name} is ready at {tenant.primary_domain()} ({seconds} s).")
        return redirect("ops-tenant-detail", tenant.pk)
    return render(request, "ops/tenant_form.html", {"form": form}, status=400 if form.errors else 200)


@staff_required
def tenant_detail(request, pk):
    tenant = customer_or_404(pk)
    day_ago = timezone.now() - timedelta(days=1)
    members = Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__email")
    roles = dict(members.values_list("role").annotate(n=Count("id")))
    record_ops(request, "tenant.viewed", tenant)  # its members' names and emails are shown
    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        history = list(ops_entries_of(tenant).exclude(action__in=READS)[:10])
    context = {
        "t": tenant,
        "usage": usage_of(tenant),
        "domains": tenant.domains.order_by("-is_primary", "domain"),
        "domain_form": DomainForm(tenant=tenant),
        "members": members[:25],
        "member_count": sum(roles.values()),
        "role_counts": [(label, roles.get(value, 0)) for value, label in reversed(Role.choices)],
        "dead_letter_reasons": dead_letters_by_reason(tenant, day_ago),
        "history": history,
    }
    return render(request, "ops/tenant_detail.html", context)


def ops_entries_of(tenant):
    return AuditLog.objects.filter(object_type=Tenant._meta.label_lower, object_id=str(tenant.pk))


@require_POST
@staff_required
def tenant_suspend(request, pk):
    return set_active(request, customer_or_404(pk), False)


@require_POST
@staff_required
def tenant_reactivate(request, pk):
    return set_active(request, customer_or_404(pk), True)


def set_active(request, tenant: Tenant, active: bool):
    """Suspend or reactivate; the row is locked, so a repeated click changes (and logs) nothing."""
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if tenant.is_active == active:
            messages.info(request, f"{tenant.name} is already {'active' if active else 'suspended'}.")
            return redirect("ops-tenant-detail", tenant.pk)
        tenant.is_active = active
        tenant.save(update_fields=["is_active"])  # post_save: this process re-routes the hosts at once
    record_ops(
        request,
        "tenant.reactivated" if active else "tenant.suspended",
        tenant,
        {"is_active": [not active, active]},
        tell_tenant=True,
    )
    # its devices' broker clients are disabled (kicked off) or enabled again at once: portal.devices.receivers
    state = "active again" if active else "suspended: its people see a notice and its devices get 403"
    messages.success(request, f"{tenant.name} is {state}.")
    return redirect("ops-tenant-detail", tenant.pk)


@require_POST
@staff_required
def domain_add(request, pk):
    tenant = customer_or_404(pk)
    form = DomainForm(request.POST, tenant=tenant)
    if not form.is_valid():
        for error in form.errors["domain"]:
            messages.error(request, error)
        return redirect("ops-tenant-detail", tenant.pk)
    domain = Domain.objects.create(tenant=tenant, domain=form.cleaned_data["domain"], is_primary=False)
    record_ops(request, "tenant.domain_added", tenant, {"domain": domain.domain}, tell_tenant=True)
    messages.success(request, f"{tenant.name} is now also served at {domain.domain}.")
    if not validate_host(domain.domain, settings.ALLOWED_HOSTS):
        messages.warning(request, f"Add {domain.domain} to ALLOWED_HOSTS: until then this deployment refuses it.")
    return redirect("ops-tenant-detail", tenant.pk)


def domain_of(tenant: Tenant, domain_pk: int) -> Domain:
    return get_object_or_404(Domain, pk=domain_pk, tenant=tenant)


@require_POST
@staff_required
def domain_remove(request, pk, domain_pk):
    tenant = customer_or_404(pk)
    domain = domain_of(tenant, domain_pk)
    if domain.is_primary:
        messages.error(request, f"{domain.domain} is the primary domain: make another one primary first.")
        return redirect("ops-tenant-detail", tenant.pk)
    domain.delete()
    record_ops(request, "tenant.domain_removed", tenant, {"domain": domain.domain}, tell_tenant=True)
    messages.success(request, f"{domain.domain} no longer serves {tenant.name}.")
    return redirect("ops-tenant-detail", tenant.pk)


@require_POST
@staff_required
def domain_make_primary(request, pk, domain_pk):
    tenant = customer_or_404(pk)
    domain = domain_of(tenant, domain_pk)
    if not domain.is_primary:
        with transaction.atomic():
            previous = tenant.domains.filter(is_primary=True).values_list("domain", flat=True).first()
            domain.is_primary = True
            domain.save()  # DomainMixin.save() takes primary from the others in the same transaction
        record_ops(request, "tenant.domain_primary", tenant, {"primary": [previous, domain.domain]}, tell_tenant=True)
        messages.success(request, f"{domain.domain} is now {tenant.name}'s primary domain (links and invitations).")
    return redirect("ops-tenant-detail", tenant.pk)


@staff_required
def audit_log(request):
    """The console's own audit log (public schema): operators' actions across tenants."""
    filterset = AuditLogFilter(request.GET, queryset=AuditLog.objects.all())
    context = {"heading": "Console audit log"}
    return list_response(request, filterset, "audit/list.html", AUDIT_COLUMNS, "ops-audit-log", context)

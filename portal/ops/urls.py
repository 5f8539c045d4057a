from django.urls import path

from portal.ops import telemetry_views, views

urlpatterns = [
    path("ops/", views.tenant_list, name="ops-tenant-list"),
    path("ops/tenants/new/", views.tenant_create, name="ops-tenant-create"),
    path("ops/tenants/<int:pk>/", views.tenant_detail, name="ops-tenant-detail"),
    path("ops/tenants/<int:pk>/suspend/", views.tenant_suspend, name="ops-tenant-suspend"),
    path("ops/tenants/<int:pk>/reactivate/", views.tenant_reactivate, name="ops-tenant-reactivate"),
    path("ops/tenants/<int:pk>/domains/", views.domain_add, name="ops-domain-add"),
    path("ops/tenants/<int:pk>/domains/<int:domain_pk>/remove/", views.domain_remove, name="ops-domain-remove"),
    path("ops/tenants/<int:pk>/domains/<int:domain_pk>/primary/", views.domain_make_primary, name="ops-domain-primary"),
    path("ops/audit/", views.audit_log, name="ops-audit-list"),
    # seed 001's addresses, without the trailing slash as it writes them, and with it
    path("ops/telemetry", telemetry_views.telemetry_query, name="ops-telemetry-query"),
    path("ops/telemetry/", telemetry_views.telemetry_query),
    path("ops/telemetry/drilldown", telemetry_views.telemetry_drilldown, name="ops-telemetry-drilldown"),
    path("ops/telemetry/drilldown/", telemetry_views.telemetry_drilldown),
    path("ops/telemetry/export", telemetry_views.telemetry_export, name="ops-telemetry-export"),
    path("ops/telemetry/export/", telemetry_views.telemetry_export),
    path("ops/ingest/", telemetry_views.ingest_health, name="ops-ingest-health"),
    path("ops/ingest/live/", telemetry_views.ingest_health_live, name="ops-ingest-live"),
]

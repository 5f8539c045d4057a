from django.urls import path

from portal.ops import views

urlpatterns = [
    path("ops/", views.tenant_list, name="ops-tenant-list"),
    path("ops/tenants/new/", views.tenant_create, name="ops-tenant-create"),
    path("ops/tenants/<int:pk>/toggle/", views.tenant_toggle, name="ops-tenant-toggle"),
]

"""URLs of a tenant host (<slug>.<base domain>)."""

from django.urls import include, path

from portal.core.urls import health_urlpatterns, tenant_urlpatterns
from portal.tenancy.urls import switch_urlpatterns

urlpatterns = [
    path("", include("portal.api.urls")),  # first: device requests are the hot path
    *health_urlpatterns,
    *tenant_urlpatterns,
    *switch_urlpatterns,
    path("", include("portal.tenancy.urls")),
    path("", include("portal.audit.urls")),
    path("", include("portal.devices.urls")),
    path("", include("portal.facilities.urls")),
    path("", include("portal.alerts.urls")),
    path("", include("portal.locks.urls")),
    path("", include("portal.outlets.urls")),
    path("accounts/", include("allauth.urls")),
]

handler400 = "portal.core.errors.bad_request"
handler403 = "portal.core.errors.permission_denied"
handler404 = "portal.core.errors.page_not_found"
handler500 = "portal.core.errors.server_error"

"""URLs of the public site (the base domain): landing, sign-up, sign-in, operator console."""

from django.urls import include, path

from portal.core.urls import health_urlpatterns, public_urlpatterns
from portal.tenancy.urls import switch_urlpatterns

urlpatterns = [
    *health_urlpatterns,
    *public_urlpatterns,
    *switch_urlpatterns,
    path("", include("portal.ops.urls")),
    path("accounts/", include("allauth.urls")),
]

handler400 = "portal.core.errors.bad_request"
handler403 = "portal.core.errors.permission_denied"
handler404 = "portal.core.errors.page_not_found"
handler500 = "portal.core.errors.server_error"

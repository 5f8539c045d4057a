"""URLs of the public site (the base domain): landing, sign-up, sign-in, operator console."""

from django.urls import include, path

from portal.api import toolkit
from portal.core.urls import health_urlpatterns, public_urlpatterns
from portal.devices import emqx
from portal.facilities import webhook
from portal.ops.access import activate_totp
from portal.tenancy.urls import switch_urlpatterns

urlpatterns = [
    # the broker's one webhook URL for every tenant (seed 001's rule posts to /ingest)
    path("ingest", webhook.ingest, name="public-ingest-webhook"),
    path("ingest/", webhook.ingest),
    *health_urlpatterns,
    # EMQX's HTTP authentication and authorisation (portal.devices.emqx), on the lean path
    path("api/mqtt/auth", emqx.authenticate, name="devices-emqx-auth"),
    path("api/mqtt/acl", emqx.authorize, name="devices-emqx-acl"),
    # seed 000's sign-up of an organisation (portal.api.cookies), JSON like every API
    path("", include(toolkit.urls(toolkit.public_api()), namespace="fieldwatch-public-api")),
    *public_urlpatterns,
    *switch_urlpatterns,
    path("", include("portal.ops.urls")),
    # ahead of allauth's own: enrolling on the public site also counts as presenting the factor
    path("accounts/2fa/totp/activate/", activate_totp, name="ops-activate-totp"),
    path("accounts/", include("allauth.urls")),
]

handler400 = "portal.core.errors.bad_request"
handler403 = "portal.core.errors.permission_denied"
handler404 = "portal.core.errors.page_not_found"
handler500 = "portal.core.errors.server_error"

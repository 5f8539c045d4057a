from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.urls import reverse


def on_public_site(request) -> bool:
    tenant = getattr(request, "tenant", None)
    return tenant is not None and tenant.is_public


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request):
        """Open sign-up (which creates an organisation) exists only on the public site, and only
        while FIELDWATCH_PUBLIC_SIGNUP is on. On a tenant host people join by invitation."""
        return settings.PUBLIC_SIGNUP and on_public_site(request)

    def get_login_redirect_url(self, request):
        """Staff signing in on the public site land on the console (which asks for their second
        factor), not on the list of organisations they are rarely a member of."""
        if request.user.is_staff and on_public_site(request):
            return reverse("ops-tenant-list")
        return super().get_login_redirect_url(request)

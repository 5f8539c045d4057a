from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request):
        """Open sign-up (which creates an organisation) exists only on the public site, and only
        while FIELDWATCH_PUBLIC_SIGNUP is on. On a tenant host people join by invitation."""
        tenant = getattr(request, "tenant", None)
        return settings.PUBLIC_SIGNUP and tenant is not None and tenant.is_public

from django.conf import settings
from django.utils.functional import SimpleLazyObject

from portal.tenancy.models import Membership, Role


def tenancy(request):
    """What every page's layout needs: the tenant, the user's role in it and their other tenants."""
    tenant = getattr(request, "tenant", None)
    membership = getattr(request, "membership", None)
    user = getattr(request, "user", None)

    def others() -> list:
        if tenant is None or user is None or not user.is_authenticated:
            return []
        memberships = Membership.objects.filter(user=user, tenant__is_active=True).select_related("tenant")
        return [m.tenant for m in memberships.order_by("tenant__name") if m.tenant_id != tenant.pk]

    # lazy: only the navbar asks, so fragments (htmx partials, live answers) cost no query for it
    other_tenants = SimpleLazyObject(others)
    return {
        "tenant": tenant,
        "is_public_site": tenant is None or tenant.is_public,
        "membership": membership,
        "can_operate": bool(membership and membership.allows(Role.OPERATOR)),
        "can_admin": bool(membership and membership.allows(Role.ADMIN)),
        "other_tenants": other_tenants,
        "base_domain": settings.BASE_DOMAIN,
        "public_signup": settings.PUBLIC_SIGNUP,
    }

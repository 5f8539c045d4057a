from django.conf import settings

from portal.tenancy.models import Membership, Role


def tenancy(request):
    """What every page's layout needs: the tenant, the user's role in it and their other tenants."""
    tenant = getattr(request, "tenant", None)
    membership = getattr(request, "membership", None)
    user = getattr(request, "user", None)
    other_tenants = []
    if tenant is not None and user is not None and user.is_authenticated:
        other_tenants = [
            m.tenant
            for m in Membership.objects.filter(user=user, tenant__is_active=True).select_related("tenant").order_by("tenant__name")
            if m.tenant_id != tenant.pk
        ]
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

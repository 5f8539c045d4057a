"""Role checks for tenant views. TenantAccessMiddleware has already refused non-members."""

import functools

from django.core.exceptions import PermissionDenied

from portal.tenancy.models import Role

ROLE_DENIED = {
    Role.OPERATOR: "Operators and above may do this; your role is read-only.",
    Role.ADMIN: "Only administrators of this organisation may do this.",
    Role.OWNER: "Only owners of this organisation may do this.",
}


def role_required(role: str):
    def decorator(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            membership = getattr(request, "membership", None)
            if membership is None or not membership.allows(role):
                raise PermissionDenied(ROLE_DENIED.get(role, "You may not do this."))
            return view(request, *args, **kwargs)

        return wrapped

    return decorator

"""Role checks for tenant views. TenantAccessMiddleware has already refused non-members.

What each role may do (each role also does everything of the roles below it):

- viewer: read every page and export its CSV.
- operator: act on devices and data: register or unregister a device, rotate or revoke its
  token, reset its provisioning, install a device on an asset or remove it, edit its sensors
  and notes, replay dead letters, acknowledge alerts and silence them.
- admin: manage configuration and people: sites, assets, alert rules and channels, telemetry
  settings, the organisation's settings, API keys, members and invitations, the audit log.
- owner: also make or remove owners.

tests/tenancy/test_role_matrix.py checks every action for every role.
"""

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

"""Creating a tenant: schema (cloned from the migrated template), domain, owner, first audit row."""

import time

from django.db import connection, transaction
from django_tenants.utils import schema_context

from portal.audit.log import record
from portal.tenancy.models import Domain, Membership, Role, Tenant


def create_tenant(name: str, slug: str, owner=None, request=None) -> Tenant:
    """Make a ready tenant.

    1. Tenant row; django-tenants clones TENANT_BASE_SCHEMA into the new schema and fakes the
       migrations (seconds however many migrations exist).
    2. Primary domain <slug>.<base domain>.
    3. The owner's membership, if an owner is given.
    4. An audit row in the new schema.

    Raises ValidationError for a slug whose schema is reserved or exists (Tenant.slug_problem).
    """
    started = time.monotonic()
    with transaction.atomic():
        # The last word for every entry (sign-up, console, command): never adopt an existing schema.
        Tenant.validate_new_slug(slug)
        tenant = Tenant(name=name, slug=slug, schema_name=Tenant.schema_for_slug(slug))
        tenant.save(verbosity=0)
        Domain.objects.create(domain=Tenant.domain_for_slug(slug), tenant=tenant, is_primary=True)
        if owner is not None:
            Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
    connection.set_schema_to_public()
    with schema_context(tenant.schema_name):
        record(request, "tenant.created", tenant, {"seconds": round(time.monotonic() - started, 3)})
    return tenant

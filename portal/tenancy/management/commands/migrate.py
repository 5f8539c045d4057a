"""`migrate`: django-tenants' migrate_schemas, then the tenant template schema.

New tenants are cloned from TENANT_BASE_SCHEMA, so that schema must carry every tenant
migration; keeping it current here means no deployment (or test database) can forget it.
"""

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django_tenants.management.commands.migrate_schemas import MigrateSchemasCommand
from django_tenants.utils import schema_exists


class Command(MigrateSchemasCommand):
    def handle(self, *args, **options):
        super().handle(*args, **options)
        full_run = not options.get("schema_name") and not options.get("app_label") and not options.get("plan")
        if full_run and not options.get("tenant"):
            ensure_public_tenant()
            connection.set_schema_to_public()
            # the database cache's table, whichever cache this process uses: another may use it
            call_command("createcachetable", settings.CACHE_BACKENDS["database"][1], verbosity=0)
        if full_run:
            refuse_tenants_on_reserved_schemas()
        if full_run and not options.get("shared"):
            migrate_template(verbosity=options.get("verbosity", 1))


def ensure_public_tenant() -> None:
    """The public schema's tenant row and its domain (the base domain) route the public site."""
    from portal.tenancy.models import Domain, Tenant

    public, _ = Tenant.objects.get_or_create(
        schema_name=settings.PUBLIC_SCHEMA_NAME, defaults={"name": "Fieldwatch", "slug": "public"}
    )
    Domain.objects.update_or_create(tenant=public, is_primary=True, defaults={"domain": settings.BASE_DOMAIN})


def refuse_tenants_on_reserved_schemas() -> None:
    """A customer tenant on the template (or a system schema) would be cloned into every new tenant."""
    from portal.tenancy.models import Tenant, schema_is_reserved

    adopted = [t.slug for t in Tenant.objects.customers() if schema_is_reserved(t.schema_name)]
    if adopted:
        raise CommandError(
            f"tenants {', '.join(adopted)} own a reserved schema (the template, public or a system schema): "
            "move their data out and delete them before creating any other tenant"
        )


def migrate_template(verbosity: int = 1) -> None:
    template = settings.TENANT_BASE_SCHEMA
    if not schema_exists(template):
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{template}"')
    call_command("migrate_schemas", tenant=True, schema_name=template, interactive=False, verbosity=verbosity)

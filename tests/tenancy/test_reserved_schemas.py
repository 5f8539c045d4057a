"""No tenant may take the template schema (or public, or a system schema, or one that exists):
django-tenants adopts an existing schema, and what a tenant on the template stores is cloned into
every tenant created after it. Each entry refuses: public sign-up, the console, `create_tenant`."""

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from helpers import sign_in_staff

from portal.accounts.models import User
from portal.tenancy.management.commands.migrate import refuse_tenants_on_reserved_schemas
from portal.tenancy.models import Tenant
from portal.tenancy.provisioning import create_tenant

SIGNUP = {
    "organisation": "Template Thief",
    "email": "thief@example.com",
    "password1": "a-long-enough-passphrase",
    "password2": "a-long-enough-passphrase",
}

RESERVED = ["tenant_template", "tenant-template", "public", "pg-catalog", "pg-toast", "information-schema"]


def customer_schemas():
    return set(Tenant.objects.customers().values_list("schema_name", flat=True))


@pytest.mark.parametrize("slug", RESERVED)
def test_signup_cannot_take_a_reserved_schema(public_client, db, slug):
    response = public_client.post("/accounts/signup/", SIGNUP | {"slug": slug})
    assert response.status_code == 200
    assert "Choose another" in response.content.decode()
    assert not User.objects.filter(email="thief@example.com").exists()
    assert customer_schemas() == {"acme", "globex"}


def test_signup_named_like_the_template_gets_a_free_address(public_client, db):
    response = public_client.post("/accounts/signup/", SIGNUP | {"organisation": "Tenant Template", "slug": ""})
    assert response.status_code == 302
    tenant = Tenant.objects.get(memberships__user__email="thief@example.com")
    assert tenant.slug == "tenant-template-2"
    assert tenant.schema_name == "tenant_template_2"


@pytest.mark.parametrize("slug", RESERVED)
def test_console_cannot_create_a_tenant_on_a_reserved_schema(public_client, people, slug):
    sign_in_staff(public_client, people["staff"])
    response = public_client.post("/ops/tenants/new/", {"name": "Thief", "slug": slug})
    assert response.status_code == 400
    assert customer_schemas() == {"acme", "globex"}


def test_command_refuses_the_template(db):
    with pytest.raises(CommandError, match="slug"):
        call_command("create_tenant", "tenant_template")
    assert customer_schemas() == {"acme", "globex"}


def test_create_tenant_itself_refuses_a_schema_that_exists(db):
    with connection.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "stray"')
    with pytest.raises(ValidationError, match="taken"):
        create_tenant("Stray", "stray")
    with pytest.raises(ValidationError, match="reserved"):
        create_tenant("Thief", "tenant-template")
    assert customer_schemas() == {"acme", "globex"}


def test_two_slugs_cannot_share_a_schema(db):
    # "acme_" is no host name; "glo-bex" and "glo_bex" would have been one schema
    assert Tenant.slug_problem("glo_bex")
    create_tenant("Glo Bex", "glo-bex")
    assert Tenant.slug_problem("glo-bex") == "This address is taken."


def test_migrate_refuses_a_database_where_a_tenant_owns_the_template(db):
    Tenant.objects.bulk_create([Tenant(name="Thief", slug="thief", schema_name="tenant_template")])
    with pytest.raises(CommandError, match="thief"):
        refuse_tenants_on_reserved_schemas()


def test_the_test_database_has_no_tenant_on_a_reserved_schema(db):
    refuse_tenants_on_reserved_schemas()

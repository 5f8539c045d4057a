from django.core import mail
from django_tenants.utils import schema_context

from portal.accounts.models import User
from portal.audit.models import AuditLog
from portal.tenancy.models import Membership, Role, Tenant

SIGNUP = {
    "organisation": "Initech Refrigeration",
    "slug": "",
    "email": "peter@initech.example",
    "password1": "a-long-enough-passphrase",
    "password2": "a-long-enough-passphrase",
}


def test_public_signup_creates_an_organisation_owned_by_the_user(public_client, db):
    response = public_client.post("/accounts/signup/", SIGNUP)
    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="initech-refrigeration")
    assert tenant.schema_name == "initech_refrigeration"
    assert tenant.primary_domain() == "initech-refrigeration.localhost"
    user = User.objects.get(email="peter@initech.example")
    assert Membership.objects.get(user=user, tenant=tenant).role == Role.OWNER
    with schema_context(tenant.schema_name):
        assert AuditLog.objects.filter(action="tenant.created").exists()
    assert "Confirm" in mail.outbox[-1].subject or "confirm" in mail.outbox[-1].body.lower()


def test_signup_with_a_taken_address_is_a_form_error(public_client, db):
    response = public_client.post("/accounts/signup/", SIGNUP | {"slug": "acme"})
    assert response.status_code == 200
    assert "This address is taken" in response.content.decode()
    assert not User.objects.filter(email="peter@initech.example").exists()


def test_public_signup_can_be_turned_off(public_client, db, settings):
    settings.PUBLIC_SIGNUP = False
    response = public_client.post("/accounts/signup/", SIGNUP)
    assert b"Sign-up is by invitation" in response.content
    assert not Tenant.objects.filter(slug="initech-refrigeration").exists()


def test_no_open_signup_on_a_tenant_host(acme_client, db):
    response = acme_client.post("/accounts/signup/", SIGNUP)
    assert b"Sign-up is by invitation" in response.content
    assert not User.objects.filter(email="peter@initech.example").exists()

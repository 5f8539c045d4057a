"""Personas and hosts shared by every test.

The test database is made once per session by our `migrate` (public schema, tenant template,
public tenant). Two tenants, acme and globex, and their people are created once per session and
committed; each test then runs inside a transaction that is rolled back.
"""

import pytest
from allauth.account.models import EmailAddress
from django.core.cache import cache
from django.db import connection
from django.test import Client
from helpers import PASSWORD, sign_in, sign_in_staff, site

from portal.tenancy.middleware import forget_hosts
from telemetry.ingest import clear_caches

pytest_plugins = ["brokers"]  # a real Mosquitto (the `broker` fixture) for bridge and browser tests


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    from portal.accounts.models import User
    from portal.tenancy.models import Membership, Role, Tenant
    from portal.tenancy.provisioning import create_tenant

    with django_db_blocker.unblock():
        tenants = {slug: create_tenant(slug.title(), slug) for slug in ("acme", "globex")}
        people = {
            "acme_owner": ("acme", Role.OWNER),
            "acme_admin": ("acme", Role.ADMIN),
            "acme_operator": ("acme", Role.OPERATOR),
            "acme_viewer": ("acme", Role.VIEWER),
            "globex_owner": ("globex", Role.OWNER),
            "outsider": (None, None),
        }
        for name, (slug, role) in people.items():
            user = User.objects.create_user(f"{name}@example.com", PASSWORD, name=name.replace("_", " ").title())
            EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
            if slug:
                Membership.objects.create(user=user, tenant=tenants[slug], role=role)
        User.objects.create_user("staff@example.com", PASSWORD, is_staff=True)
        # an operator for the browser: verified, not enrolled in TOTP (the browser test enrols it once)
        operator = User.objects.create_user("operator@example.com", PASSWORD, is_staff=True, name="Olga Operator")
        EmailAddress.objects.create(user=operator, email=operator.email, verified=True, primary=True)
        # acme's owner also operates globex: the tenant switcher has somewhere to go
        Membership.objects.create(
            user=User.objects.get(email="acme_owner@example.com"), tenant=tenants["globex"], role=Role.OPERATOR
        )
        assert Tenant.objects.customers().count() == 2
        connection.set_schema_to_public()


@pytest.fixture(autouse=True)
def clean_state():
    cache.clear()  # rate limits and hand-off nonces live in the cache
    clear_caches()  # sensor ids and rules of rolled-back tests must not be reused
    forget_hosts()  # a tenant suspended in a rolled-back test is active again
    connection.set_schema_to_public()
    yield
    connection.set_schema_to_public()


def user(email_prefix):
    from portal.accounts.models import User

    return User.objects.get(email=f"{email_prefix}@example.com")


@pytest.fixture
def acme(db):
    from portal.tenancy.models import Tenant

    return Tenant.objects.get(slug="acme")


@pytest.fixture
def globex(db):
    from portal.tenancy.models import Tenant

    return Tenant.objects.get(slug="globex")


@pytest.fixture
def people(db):
    names = ["acme_owner", "acme_admin", "acme_operator", "acme_viewer", "globex_owner", "outsider"]
    return {name: user(name) for name in names} | {"staff": user("staff")}


@pytest.fixture
def acme_client():
    return Client(HTTP_HOST="acme.localhost")


@pytest.fixture
def globex_client():
    return Client(HTTP_HOST="globex.localhost")


@pytest.fixture
def public_client():
    return Client(HTTP_HOST="localhost")


@pytest.fixture
def as_acme(acme_client, people):
    """Sign the acme client in as one of the personas: as_acme("acme_admin")."""

    def login(name: str) -> Client:
        return sign_in(acme_client, people[name], "acme")

    return login


@pytest.fixture
def staff_client(public_client, people):
    """The public site as staff, enrolled in TOTP and past the second factor."""
    return sign_in_staff(public_client, people["staff"])


@pytest.fixture
def in_acme(db):
    """Run the test inside acme's schema, as the callers of the telemetry core do."""
    from django_tenants.utils import schema_context

    with schema_context("acme"):
        yield


# --- a real server for tests that need one (browser, API fuzzing) -----------------------------


@pytest.fixture(scope="session")
def server_port(django_db_setup):
    """The site on a free port against the test database, for the session (helpers.site)."""
    with site() as port:
        yield port


def pytest_sessionfinish(session, exitstatus):
    """The fuzz tests' request counts per endpoint, for the record (test-artifacts/fuzz-counts.json)."""
    from fuzzing import write_counts

    write_counts()

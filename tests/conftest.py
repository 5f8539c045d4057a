"""Personas and hosts shared by every test.

The test database is made once per session by our `migrate` (public schema, tenant template,
public tenant). Two tenants, acme and globex, and their people are created once per session and
committed; each test then runs inside a transaction that is rolled back.
"""

import os
import sys

import pytest
from allauth.account.models import EmailAddress
from django.core.cache import cache
from django.db import connection
from django.test import Client
from helpers import PASSWORD, database_url_for_tests, free_port, serving, sign_in

from portal.tenancy.middleware import forget_hosts
from telemetry.ingest import clear_caches


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
        # acme's owner also operates globex: the tenant switcher has somewhere to go
        Membership.objects.create(user=User.objects.get(email="acme_owner@example.com"), tenant=tenants["globex"], role=Role.OPERATOR)
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
def in_acme(db):
    """Run the test inside acme's schema, as the callers of the telemetry core do."""
    from django_tenants.utils import schema_context

    with schema_context("acme"):
        yield


# --- a real server for tests that need one (browser, API fuzzing) -----------------------------


@pytest.fixture(scope="session")
def server_port(django_db_setup):
    """Start the site on a free port against the test database; yield the port; stop it.

    Steps: build DATABASE_URL from the test database's settings, start runserver (test settings,
    DEBUG=1), wait for /health/ on the public host, and terminate the process at the end of the
    session (before pytest-django drops the test database).
    """
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": database_url_for_tests(),
        "FIELDWATCH_TESTING": "1",  # test settings, as in this process: the personas' password hasher
        "DATABASE_CONN_MAX_AGE": "0",  # no idle connection keeps the test database from being dropped
        "DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"]
    with serving(command, env, port):
        yield port

"""Helpers the tests import (fixtures live in conftest.py)."""

from django.test import Client

from portal.tenancy.middleware import SESSION_TENANT_KEY

PASSWORD = "correct-horse-battery-staple"


def sign_in(client: Client, person, schema_name: str) -> Client:
    """Sign a test client in on a host, as a real sign-in there would (session bound to its tenant)."""
    client.force_login(person, backend="django.contrib.auth.backends.ModelBackend")
    session = client.session
    session[SESSION_TENANT_KEY] = schema_name
    session.save()
    return client

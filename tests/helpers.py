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


def database_url_for_tests() -> str:
    """DATABASE_URL of the test database, for the real processes (server, worker) a test starts."""
    from urllib.parse import quote

    from django.conf import settings

    db = settings.DATABASES["default"]
    host = db.get("HOST") or db.get("OPTIONS", {}).get("host", "")
    port = db.get("PORT") or db.get("OPTIONS", {}).get("port", 5432)
    auth = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    if host.startswith("/"):  # a unix socket directory (the embedded server)
        return f"postgresql://{auth}@/{db['NAME']}?host={quote(host)}&port={port}"
    return f"postgresql://{auth}@{host}:{port}/{db['NAME']}"

"""What the benches that start their own servers share: a bench database and a free port."""

import socket
from urllib.parse import urlparse


def ensure_database(url: str) -> bool:
    """CREATE DATABASE when the bench database does not exist yet; True when this call made it."""
    import psycopg
    from psycopg import sql

    name = urlparse(url).path.lstrip("/")
    with psycopg.connect(admin_url(url), autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None:
            return False
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def admin_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/postgres"


def drop_database(url: str) -> None:
    """DROP DATABASE, ending the connections still open to it (this process's, a server's)."""
    from contextlib import suppress

    import psycopg
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections
    from psycopg import sql

    with suppress(ImproperlyConfigured):  # Django never set up: nothing of ours is open
        connections.close_all()
    name = urlparse(url).path.lstrip("/")
    with psycopg.connect(admin_url(url), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def use_bench_database(name: str, keep: bool = False) -> str:
    """Point DATABASE_URL at this bench's own database (unless one is given) and create it: every
    bench runs on a fresh machine without set-up, and never on the development database. A
    database the bench made is dropped when it exits (unless `keep`); one it was given stays."""
    import atexit
    import os

    url = os.environ.setdefault("DATABASE_URL", f"postgresql://postgres@127.0.0.1:5432/fieldwatch_{name}")
    if ensure_database(url) and not keep:
        atexit.register(drop_database, url)
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def drop_tenants(**lookup) -> None:
    """Drop the bench's tenants (schema and all), e.g. drop_tenants(slug="bench-pages")."""
    from django.db import connection

    from portal.tenancy.models import Tenant

    connection.set_schema_to_public()
    for tenant in Tenant.objects.filter(**lookup):
        tenant.delete(force_drop=True)


def signed_in_client(tenant, email: str):
    """A test client signed in as a viewer of `tenant` (made a member if need be), its session
    bound to the tenant as a sign-in binds it: pages measured as a person sees them."""
    from django.conf import settings
    from django.test import Client

    from portal.accounts.models import User
    from portal.tenancy.middleware import SESSION_TENANT_KEY
    from portal.tenancy.models import Membership, Role

    user, _ = User.objects.get_or_create(email=email)
    Membership.objects.get_or_create(user=user, tenant=tenant, defaults={"role": Role.VIEWER})
    client = Client(HTTP_HOST=f"{tenant.slug}.{settings.BASE_DOMAIN}")
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    session = client.session
    session[SESSION_TENANT_KEY] = tenant.schema_name
    session.save()
    return client

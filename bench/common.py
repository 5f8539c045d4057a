"""What the benches that start their own servers share: a bench database and a free port."""

import socket
from urllib.parse import urlparse


def ensure_database(url: str) -> None:
    """CREATE DATABASE when the bench database does not exist yet."""
    import psycopg
    from psycopg import sql

    name = urlparse(url).path.lstrip("/")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


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

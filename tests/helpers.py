"""Helpers the tests import (fixtures live in conftest.py)."""

import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

from django.test import Client

from portal.tenancy.middleware import SESSION_TENANT_KEY

ROOT = Path(__file__).resolve().parents[1]
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
    from django.db import connection

    return database_url(connection.settings_dict)


def database_url(db: dict) -> str:
    """A DATABASE_URL for a Django DATABASES entry, such as dj-database-url parses it back.

    OPTIONS become query parameters: the embedded PostgreSQL's URL puts its socket directory
    and port there (?host=<dir>&port=5432), which land in OPTIONS, not HOST/PORT.
    """
    user = quote(db.get("USER") or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    host, port = db.get("HOST") or "", str(db.get("PORT") or "")
    options = {key: str(value) for key, value in (db.get("OPTIONS") or {}).items()}
    if host.startswith("/"):  # a socket directory stays out of the netloc, as in embedded_db
        options |= {"host": host} | ({"port": port} if port else {})
        host = port = ""
    netloc = f"{user}{password}@{host}" + (f":{port}" if port else "")
    query = f"?{urlencode(options)}" if options else ""
    return f"postgresql://{netloc}/{quote(db['NAME'])}{query}"


def count_in(schema: str, model, **filters) -> int:
    from django_tenants.utils import schema_context

    with schema_context(schema):
        return model.objects.filter(**filters).count()


def wait_for(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# --- real servers started by tests ------------------------------------------------------------
START_TIMEOUT = 30  # seconds for a server to answer /health/


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(port: int, process: subprocess.Popen) -> None:
    """Poll /health/ on the public host (localhost) until it answers 200."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health/", headers={"Host": f"localhost:{port}"})
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the test server exited with {process.returncode}; see its output above")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the test server did not answer /health/ within {START_TIMEOUT}s")


@contextmanager
def serving(command: list[str], env: dict, port: int):
    """Run a server process from the checkout until it answers /health/; stop it on exit."""
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        wait_until_healthy(port, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""Helpers the tests import (fixtures live in conftest.py)."""

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from portal.tenancy.middleware import SESSION_TENANT_KEY

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct-horse-battery-staple"
# Huey's Redis mode and the Redis rate limits are tested on a database number of their own
REDIS_URL = os.environ.get("FIELDWATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def needs_redis():
    """A pytest mark that skips a module when no Redis answers at REDIS_URL."""
    import pytest
    import redis

    try:
        available = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        available = False
    return pytest.mark.skipif(not available, reason=f"no Redis at {REDIS_URL}")


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
    with schema_context(schema):
        return model.objects.filter(**filters).count()


def stored_rows(schema: str) -> dict[str, set[str]]:
    """Every row of every tenant table in `schema`, and of the public tables of tenancy and
    accounts (memberships, invitations, people): {table: {row as text}}."""
    from django.apps import apps
    from django.conf import settings
    from django_tenants.utils import schema_context

    tenant_labels = {app.rsplit(".", 1)[-1] for app in settings.TENANT_APPS} - {"contenttypes"}
    with schema_context(schema):
        tenant = {
            model._meta.db_table: {repr(row) for row in model.objects.values_list()}
            for label in tenant_labels
            for model in apps.get_app_config(label).get_models()
        }
    public = {
        model._meta.db_table: {repr(row) for row in model.objects.values_list()}
        for label in ("tenancy", "accounts")
        for model in apps.get_app_config(label).get_models()
    }
    return tenant | public


@contextmanager
def unchanged(schema: str = "acme"):
    """Assert that what the block does (a refused request) changed no stored row."""
    before = stored_rows(schema)
    yield
    after = stored_rows(schema)
    changes = {
        table: {"gone": before[table] - after[table], "new": after[table] - before[table]}
        for table in before
        if before[table] != after[table]
    }
    assert not changes, f"a refused request changed stored rows: {changes}"


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


def sign_in_staff(client: Client, person, *, enrolled: bool = True, second_factor: bool = True) -> Client:
    """Sign staff in on the public site: enrolled in TOTP, with a session that presented it
    (as allauth's two-factor stage records it), unless told otherwise."""
    from allauth.account.internal.flows.login import (
        _AUTHENTICATION_METHODS_USER_SESSION_KEY,
        AUTHENTICATION_METHODS_SESSION_KEY,
    )
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    if enrolled and not Authenticator.objects.filter(user=person, type=Authenticator.Type.TOTP).exists():
        TOTP.activate(person, generate_totp_secret())
    sign_in(client, person, "public")
    if second_factor:
        session = client.session
        session[AUTHENTICATION_METHODS_SESSION_KEY] = [{"method": "mfa", "at": time.time(), "type": "totp"}]
        session[_AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(person.pk)
        session.save()
    return client


# --- committed work, for tests whose other processes or threads must see it ---------------------


def committed(work):
    """Run `work` on a connection of its own and commit it (the test's connection is inside a
    transaction that is rolled back, which the bridge's threads would never see)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = work()
        except Exception as error:  # re-raised in the test's thread
            outcome["error"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def in_bridgetest(work):
    def run():
        with schema_context("bridgetest"):
            return work()

    return committed(run)


@contextmanager
def site(**env):
    """Run the site on a free port against the test database; yield the port; stop it.

    Steps: build DATABASE_URL from the test database's settings, start runserver (test settings,
    DEBUG=1, `env` on top), wait for /health/ on the public host, and terminate the process on
    exit (before pytest-django drops the test database).
    """
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": database_url_for_tests(),
        "FIELDWATCH_TESTING": "1",  # test settings, as in this process: the personas' password hasher
        "DATABASE_CONN_MAX_AGE": "0",  # no idle connection keeps the test database from being dropped
        "DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"]
    with serving(command, env, port):
        yield port

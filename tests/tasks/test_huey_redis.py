"""Huey in its production shape: a real `run_huey` worker on a real Redis, running tenant tasks.

Data must be committed for the worker (another process) to see it, so this test commits its
rows under django_db_blocker and removes them at the end.
"""

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.utils import timezone
from django_tenants.utils import schema_context
from helpers import REDIS_URL, database_url_for_tests, needs_redis

ROOT = Path(__file__).resolve().parents[2]
pytestmark = needs_redis()


@pytest.fixture
def worker_env(django_db_setup):
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return env | {"DATABASE_URL": database_url_for_tests(), "REDIS_URL": REDIS_URL, "HUEY_IMMEDIATE": "0", "DEBUG": "1"}


@pytest.fixture
def worker(worker_env):
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_huey", "-w", "1"],
        cwd=ROOT,
        env=worker_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    process.terminate()
    process.wait(timeout=10)


def enqueue(env, code: str) -> str:
    """Enqueue from a separate process, as the web process would, and wait for the result."""
    script = f"import django; django.setup()\n{code}"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def old_audit_rows(django_db_blocker):
    from portal.audit.models import AuditLog

    long_ago = timezone.now() - timedelta(days=1000)
    with django_db_blocker.unblock():
        for schema in ("acme", "globex"):
            with schema_context(schema):
                row = AuditLog.objects.create(action="test.ancient")
                AuditLog.objects.filter(pk=row.pk).update(created_at=long_ago)
        yield
        for schema in ("acme", "globex"):
            with schema_context(schema):
                AuditLog.objects.filter(action="test.ancient").delete()


def ancient_rows(django_db_blocker) -> dict:
    from portal.audit.models import AuditLog

    with django_db_blocker.unblock():
        counts = {}
        for schema in ("acme", "globex"):
            with schema_context(schema):
                counts[schema] = AuditLog.objects.filter(action="test.ancient").count()
        return counts


@pytest.mark.django_db  # also makes pytest-django create the test database when this file runs alone
def test_settings_pick_redis_huey_when_redis_url_is_set(worker_env):
    assert enqueue(worker_env, "from huey.contrib.djhuey import HUEY; print(type(HUEY).__name__)") == "RedisHuey"


def test_a_tenant_task_runs_in_its_tenant_only_and_is_idempotent(worker, worker_env, old_audit_rows, django_db_blocker):
    call = "from portal.audit.tasks import purge_old_audit_rows as t; print(t('acme').get(blocking=True, timeout=30))"
    assert enqueue(worker_env, call) == "1"
    assert ancient_rows(django_db_blocker) == {"acme": 0, "globex": 1}
    assert enqueue(worker_env, call) == "0"  # running again changes nothing


def test_the_periodic_fan_out_enqueues_one_task_per_active_tenant(
    worker, worker_env, old_audit_rows, django_db_blocker
):
    fan_out = "from portal.audit.tasks import purge_old_audit_rows as t; print(t.fan_out.call_local())"
    assert enqueue(worker_env, fan_out) == "2"
    deadline = time.monotonic() + 30
    while ancient_rows(django_db_blocker) != {"acme": 0, "globex": 0}:
        assert time.monotonic() < deadline, "the worker did not purge both tenants"
        time.sleep(0.2)


def test_a_lock_command_expires_at_its_deadline_by_its_own_scheduled_task(worker_env, django_db_blocker):
    """Issue 14: a command unanswered past its timeout is expired by the Huey task scheduled for
    its deadline, not up to a minute later by the sweep: the worker runs with periodic tasks off
    (`-n`), so only the scheduled task can expire it. A 2 s timeout, the command issued by another
    process as the web process would."""
    from lock_builders import make_lock, remove_lock_and_traces

    from portal.locks.models import LockCommand

    env = worker_env | {"FIELDWATCH_LOCK_COMMAND_TIMEOUT_SECONDS": "2"}
    lock_id = f"huey-door-{time.monotonic_ns()}"
    with django_db_blocker.unblock(), schema_context("acme"):
        lock = make_lock(lock_id, "Huey door")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_huey", "-w", "1", "-n"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        issued = "from django_tenants.utils import schema_context\nfrom portal.locks.models import Lock, LockCommand\n"
        issued += f"with schema_context('acme'): print(LockCommand.issue(Lock.objects.get(pk={lock.pk}), 'unlock').pk)"
        pk = int(enqueue(env, issued))
        started = time.monotonic()
        with django_db_blocker.unblock():
            while True:
                with schema_context("acme"):
                    command = LockCommand.objects.get(pk=pk)
                if command.state == "expired":
                    break
                assert time.monotonic() - started < 40, f"still {command.state} after 40 s"
                time.sleep(0.2)
        assert "no answer from the lock within 2 s" in command.detail
        assert command.settled_at >= command.expires_at
    finally:
        process.terminate()
        process.wait(timeout=10)
        with django_db_blocker.unblock(), schema_context("acme"):
            remove_lock_and_traces(lock_id)

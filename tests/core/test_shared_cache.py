"""Without Redis the cache is the database's, shared by every process: two server processes
together let through the 5 wrong passwords a sign-in allows, not 5 each (issue 11 §4)."""

import os
import re
import sys

import pytest
import requests
from django.db import connection
from helpers import PASSWORD, database_url_for_tests, free_port, serving


def test_without_redis_production_settings_pick_the_database_cache():
    import subprocess

    env = os.environ | {"DEBUG": "1", "FIELDWATCH_TESTING": "0"}
    env.pop("REDIS_URL", None)
    code = "from django.conf import settings; print(settings.CACHES['default']['BACKEND'])"
    out = subprocess.run(
        [sys.executable, "-c", f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='portal.settings'; {code}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "django.core.cache.backends.db.DatabaseCache"


@pytest.fixture
def two_servers(django_db_setup, django_db_blocker):
    env = os.environ | {
        "DATABASE_URL": database_url_for_tests(),
        "FIELDWATCH_TESTING": "1",
        "FIELDWATCH_CACHE": "database",
        "DATABASE_CONN_MAX_AGE": "0",
        "DEBUG": "1",
    }
    ports = [free_port(), free_port()]
    commands = [
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"] for port in ports
    ]
    with serving(commands[0], env, ports[0]), serving(commands[1], env, ports[1]):
        yield ports
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM fieldwatch_cache")


def wrong_password(port: int) -> str:
    session = requests.Session()
    url = f"http://127.0.0.1:{port}/accounts/login/"
    page = session.get(url, headers={"Host": "acme.localhost"}, timeout=20)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        url,
        {"login": "acme_viewer@example.com", "password": PASSWORD + "-wrong", "csrfmiddlewaretoken": token},
        headers={"Host": "acme.localhost", "Referer": url},
        timeout=20,
    )
    assert answer.status_code in (200, 429), answer.status_code
    return "limited" if "Too many failed login attempts" in answer.text else "refused"


def test_two_processes_share_the_sign_in_limit(two_servers, db):
    answers = [wrong_password(two_servers[n % 2]) for n in range(10)]
    assert answers == ["refused"] * 5 + ["limited"] * 5

"""Production start-up refuses development secrets: run Django as a deployment would."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_django(**env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "SECRET_KEY_FILE"}} | env
    code = "import django; django.setup(); print('started')"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environ | {"DJANGO_SETTINGS_MODULE": "portal.settings"},
        capture_output=True,
        text=True,
    )


def test_production_refuses_a_missing_secret_key():
    result = start_django(DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_refuses_the_development_secret_key():
    result = start_django(DEBUG="0", SECRET_KEY="fieldwatch-development-only-secret-key-do-not-use-in-production")
    assert "SECRET_KEY" in result.stderr and result.returncode != 0


def test_production_starts_with_a_real_secret_key():
    result = start_django(DEBUG="0", SECRET_KEY="x" * 50)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


def test_secret_key_can_come_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("y" * 50)
    assert start_django(DEBUG="0", SECRET_KEY_FILE=str(secret)).returncode == 0


def test_a_bad_boolean_is_refused():
    result = start_django(DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_email_url_forms():
    from portal.settings import email_settings

    assert email_settings("console:")["EMAIL_BACKEND"].endswith("console.EmailBackend")
    smtp = email_settings("smtp+tls://mailer%40example.com:s%3Acret@smtp.example.com:2587")
    assert smtp["EMAIL_HOST"] == "smtp.example.com" and smtp["EMAIL_PORT"] == 2587
    assert smtp["EMAIL_HOST_USER"] == "mailer@example.com" and smtp["EMAIL_HOST_PASSWORD"] == "s:cret"
    assert smtp["EMAIL_USE_TLS"] and not smtp["EMAIL_USE_SSL"]
    assert email_settings("smtps://mail.example.com")["EMAIL_PORT"] == 465


def test_a_bad_email_url_is_refused():
    import pytest
    from django.core.exceptions import ImproperlyConfigured

    from portal.settings import email_settings

    with pytest.raises(ImproperlyConfigured, match="EMAIL_URL"):
        email_settings("http://mail.example.com")

"""Bulk uploads under real faults (issue 11 §2b): the task queue down (Redis refusing
connections) and a body cut short on the wire (a client that closes its socket mid-body)."""

import gzip
import json
import socket

import pytest
from api.bulk_helpers import equipment, gz, make_key, post
from django_tenants.utils import schema_context
from huey import RedisHuey
from huey.contrib.djhuey import HUEY

from portal.api.models import ApiKey, BulkJob


def test_a_large_upload_while_the_queue_is_down_is_503_and_its_job_failed(
    acme_client, db, settings, tmp_path, monkeypatch
):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.BULK_INLINE_BYTES = 100
    down = RedisHuey("fieldwatch-down", url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    monkeypatch.setattr(HUEY, "immediate", False)
    monkeypatch.setattr(HUEY, "storage", down.storage)
    response = post(acme_client, gz([equipment("eq-1", readings=30)]), make_key("acme"))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "queue_unavailable" and response["Retry-After"] == "60"
    with schema_context("acme"):
        job = BulkJob.objects.get()
    assert job.status == "failed" and job.error.startswith("queue_unavailable")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # the stored body is not left behind


@pytest.fixture
def live_key(server_port, django_db_blocker):
    """An API key of acme the live server sees (committed; deleted afterwards)."""
    with django_db_blocker.unblock():
        raw = make_key("acme", "bulk faults")
    yield raw
    with django_db_blocker.unblock(), schema_context("acme"):
        ApiKey.objects.filter(name="bulk faults").delete()
        BulkJob.objects.all().delete()


def send_cut_short(port: int, key: str, body: bytes, sent: int) -> bytes:
    """Announce the whole body, send `sent` bytes of it, close the sending side; the answer."""
    head = (
        f"POST /api/v1/telemetry/bulk HTTP/1.1\r\nHost: acme.localhost:{port}\r\nX-API-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body[:sent])
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_body_cut_short_on_the_wire_is_400_and_stores_nothing(server_port, live_key, db):
    items = [equipment(f"eq-{n}", readings=200) for n in range(5)]
    body = gzip.compress(json.dumps(items).encode())
    answer = send_cut_short(server_port, live_key, body, len(body) // 2)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"400", answer[:300]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] in ("incomplete_body", "truncated_gzip")
    with schema_context("acme"):
        assert not BulkJob.objects.exists()
        from telemetry.models import Reading

        assert not Reading.objects.exists()

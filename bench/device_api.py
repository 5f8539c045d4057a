"""Events per second on POST /api/device/events/ under gunicorn, with 0 errors and 0 duplicates.

    .venv/bin/python bench/device_api.py [--seconds 15] [--connections 50] [--workers 2] [--threads 16]

Steps: create and migrate the bench database (DATABASE_URL, default fieldwatch_devbench); make a
bench tenant and a device with a token; start gunicorn (DEBUG=0, a 50-character SECRET_KEY, the
bench host allowed, rate limit out of the way) on a free port; drive it from this process over
loopback with an asyncio load generator: `--connections` keep-alive HTTP/1.1 connections, each
sending one event after another, half of them repeats of event_ids sent earlier; stop gunicorn,
count the rows, drop the tenant.

Checked afterwards: every answer was 200 with the ack of its own event_id (errors), and the
table holds exactly one row per distinct event_id sent (duplicates; missing rows count too).

Also printed: CPU milliseconds per request spent in the gunicorn workers and in the load
generator, which say where the time goes on a machine shared with other work.

gunicorn shape: on this 2-core machine (which also runs PostgreSQL and the load generator) the
gthread worker with 2 processes × 16 threads was the fastest of those tried (2×8, 2×16, 3×8,
4×4, 4×2, 6×2 gthread and 8 sync workers): one process per core, threads to cover the waits on
PostgreSQL. More processes only add context switches and cache misses on two cores; sync
workers cannot keep connections alive. Goal ≥ 1,500 events/s.
"""

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DEBUG", "1")  # this process only sets up and counts; gunicorn runs with DEBUG=0
os.environ.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/fieldwatch_devbench")

SLUG = "bench-devapi"
PATH = "/api/device/events/"


from common import drop_tenants, ensure_database, free_port  # noqa: E402

ensure_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from portal.tenancy.models import Tenant  # noqa: E402
from portal.tenancy.provisioning import create_tenant  # noqa: E402
from telemetry.models import Device, DeviceEvent  # noqa: E402


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def drop_bench_tenant() -> None:
    drop_tenants(slug=SLUG)


def start_gunicorn(port: int, host: str, args) -> subprocess.Popen:
    env = os.environ | {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(38)[:50],
        "ALLOWED_HOSTS": f"{host},localhost,127.0.0.1",
        "SECURE_COOKIES": "0",
        "FIELDWATCH_DEVICE_RATE": "1000000000/60",  # measure the endpoint, not the limiter's refusals
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    command = [str(Path(sys.executable).parent / "gunicorn"), "portal.wsgi", "--bind", f"127.0.0.1:{port}",
               "--workers", str(args.workers), "--log-level", "warning"]
    if args.worker_class == "gthread":
        command += ["--worker-class", "gthread", "--threads", str(args.threads)]
    else:
        command += ["--worker-class", args.worker_class]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(f"GET /health/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return process
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not answer /health/ within 30 s")


class Load:
    """The shared state of the connections: event ids handed out, answers counted."""

    def __init__(self, token: str, host: str, port: int, seconds: float, prefix: str = "bench"):
        self.token, self.host, self.port, self.prefix = token, host, port, prefix
        self.sent: list[str] = []  # event ids sent at least once
        self.requests = self.errors = 0
        self.first_errors: list[str] = []
        self.deadline = time.monotonic() + seconds
        self.random = random.Random(7)

    def next_event(self) -> str:
        """Half new event ids, half repeats of ids sent before (repeats may still be in flight)."""
        if self.sent and self.random.random() < 0.5:
            return self.random.choice(self.sent)
        event_id = f"{self.prefix}-{len(self.sent):09}"
        self.sent.append(event_id)
        return event_id

    def request_bytes(self, event_id: str) -> bytes:
        n = int(event_id.rsplit("-", 1)[1])
        body = json.dumps({"device_id": "bench-counter", "firmware": "1.0.0", "event_id": event_id, "event": "treatment",
                           "treatment": ("BASIC", "STANDARD", "PREMIUM")[n % 3], "counter": n,
                           "ts": f"2025-09-16T12:{n // 60 % 60:02}:{n % 60:02}Z"}).encode()
        head = (f"POST {PATH} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        return head.encode() + body

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(text)

    async def connection(self) -> None:
        """One keep-alive connection sending requests one after another until the deadline."""
        reader = writer = None
        while time.monotonic() < self.deadline:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            event_id = self.next_event()
            writer.write(self.request_bytes(event_id))
            try:
                status, headers, body = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                self.error(f"{event_id}: connection lost: {error!r}")
                writer.close()
                reader = writer = None
                continue
            self.requests += 1
            if status != 200 or json.loads(body) != {"ack": True, "event_id": event_id}:
                self.error(f"{event_id}: {status} {body[:200]!r}")
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()


async def read_response(reader) -> tuple[int, dict, bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 response with Content-Length."""
    status_line = await reader.readuntil(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    headers = {}
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return status, headers, body


async def drive(load: Load, connections: int) -> float:
    started = time.monotonic()
    await asyncio.gather(*(load.connection() for _ in range(connections)))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-bulk", action="store_true", help="only the events figures, not bench/bulk_upload.py after them")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"])
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    drop_bench_tenant()
    tenant = create_tenant("Bench device API", SLUG)
    host = Tenant.domain_for_slug(SLUG)
    with schema_context(tenant.schema_name):
        device = Device.objects.create(device_id="bench-counter", mac="02:00:00:BE:AC:01", kind=Device.Kind.COUNTER)
        token = device.issue_token()
        device.save()
    connection.close()  # nothing of this process holds the database while gunicorn runs

    port = free_port()
    process = start_gunicorn(port, host, args)
    try:
        asyncio.run(drive(Load(token, host, port, 1.0, prefix="warm"), args.connections))  # connections, caches
        load = Load(token, host, port, args.seconds)
        workers = children(process.pid)
        server_cpu, client_cpu = cpu_seconds(workers), time.process_time()
        elapsed = asyncio.run(drive(load, args.connections))
        server_cpu, client_cpu = cpu_seconds(workers) - server_cpu, time.process_time() - client_cpu
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)

    try:
        with schema_context(tenant.schema_name):
            stored = DeviceEvent.objects.filter(event_id__startswith="bench-").count()
        distinct = len(set(load.sent))
        duplicates = abs(stored - distinct)  # a missing row would count here too
    finally:
        drop_bench_tenant()

    rate = load.requests / elapsed
    print(f"gunicorn {args.worker_class} workers={args.workers}" + (f" threads={args.threads}" if args.worker_class == "gthread" else "")
          + f"; {args.connections} connections, {elapsed:.1f} s")
    print(f"{load.requests} requests, {distinct} distinct event ids ({load.requests - distinct} repeats), "
          f"{stored} rows stored for them")
    print(f"CPU per request: gunicorn workers {server_cpu / load.requests * 1000:.2f} ms, "
          f"load generator {client_cpu / load.requests * 1000:.2f} ms (PostgreSQL not counted)")
    for text in load.first_errors:
        print(f"  error: {text}")
    print(f"figure device_events_rate {rate:.0f} events/s goal 1500")
    print(f"figure device_events_errors {load.errors} count goal 0")
    print(f"figure device_events_duplicates {duplicates} count goal 0")
    if not args.skip_bulk:
        # the other half of this API's figures: a 50 MB gzip bulk upload, end to end
        subprocess.run([sys.executable, str(ROOT / "bench" / "bulk_upload.py")], check=True,
                       env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"})


if __name__ == "__main__":
    main()

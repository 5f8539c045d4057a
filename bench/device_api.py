"""Unique events stored per second on POST /api/device/events/ under gunicorn, over many devices,
with 0 errors and 0 duplicates.

    .venv/bin/python bench/device_api.py [--seconds 10] [--rounds 3] [--devices 500] [--repeats 0.1]
                                         [--connections 50] [--workers 2] [--threads 16]
                                         [--cache redis|database] [--redis-url URL] [--skip-bulk]

Steps: create and migrate the bench database (DATABASE_URL, default fieldwatch_devbench); make a
bench tenant and `--devices` devices with tokens; start gunicorn (DEBUG=0, a 50-character
SECRET_KEY, the bench host allowed, rate limit out of the way but still counted, in Redis as
deployed (REDIS_URL, or --redis-url; --cache database for a set-up without Redis)) on a free port; drive it from
this process over loopback with an asyncio load generator: `--connections` keep-alive HTTP/1.1
connections, each sending one event after another, each from the next device in turn (so every
device's last_seen is written every 5 s, as a fleet's would be), a `--repeats` share of them
repeats of event_ids sent earlier (a device retrying after a lost ack; they store nothing);
`--rounds` rounds, the best kept; stop gunicorn, count the rows, drop the tenant.

The goal is on unique events stored per second (device_events_rate); requests per second,
repeats included, are printed beside it (device_requests_rate).

Checked afterwards: every answer was 200 with the ack of its own event_id (errors), and the
table holds exactly one row per distinct event_id sent (duplicates; missing rows count too).

Also printed: CPU milliseconds per request spent in the gunicorn workers, in PostgreSQL (the
bench database's backends) and in the load generator, which say where the time goes on a
machine shared with other work.

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

SLUG = "bench-devapi"
PATH = "/api/device/events/"


from common import drop_tenants, free_port, use_bench_database

use_bench_database("devbench")

import django

django.setup()

from django.core.management import call_command
from django.db import connection
from django_tenants.utils import schema_context

from portal.tenancy.models import Tenant
from portal.tenancy.provisioning import create_tenant
from telemetry.models import Device, DeviceEvent


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


def backend_pids() -> list[int]:
    """PostgreSQL backends serving the bench database (gunicorn's connections), by a connection of its own."""
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows]


def drop_bench_tenant() -> None:
    drop_tenants(slug=SLUG)


def start_gunicorn(port: int, host: str, args) -> subprocess.Popen:
    env = os.environ | {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(38)[:50],
        "ALLOWED_HOSTS": f"{host},localhost,127.0.0.1",
        "SECURE_COOKIES": "0",
        "FIELDWATCH_DEVICE_RATE": "1000000000/60",  # measure the endpoint, not the limiter's refusals
        # the cache the rate limit counts in, as deployed (compose.yaml): Redis; or the database's
        **({"REDIS_URL": args.redis_url} if args.cache == "redis" else {"FIELDWATCH_CACHE": "database"}),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "portal.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--log-level",
        "warning",
    ]
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
    """The shared state of the connections: devices taking turns, event ids handed out, answers counted."""

    def __init__(
        self, tokens: list[tuple[str, str]], host: str, port: int, seconds: float, repeats: float, prefix: str
    ):
        self.tokens, self.host, self.port, self.prefix, self.repeats = tokens, host, port, prefix, repeats
        self.sent: list[tuple[int, str]] = []  # (device index, event id) sent at least once
        self.requests = self.errors = self.turn = 0
        self.first_errors: list[str] = []
        self.deadline = time.monotonic() + seconds
        self.random = random.Random(7)

    def next_event(self) -> tuple[int, str]:
        """The next device's new event, or (a `repeats` share) a repeat of an event sent before
        by the device that sent it (repeats may still be in flight)."""
        if self.sent and self.random.random() < self.repeats:
            return self.random.choice(self.sent)
        self.turn = (self.turn + 1) % len(self.tokens)
        event = (self.turn, f"{self.prefix}-{len(self.sent):09}")
        self.sent.append(event)
        return event

    def request_bytes(self, device: int, event_id: str) -> bytes:
        device_id, token = self.tokens[device]
        n = int(event_id.rsplit("-", 1)[1])
        body = json.dumps(
            {
                "device_id": device_id,
                "firmware": "1.0.0",
                "event_id": event_id,
                "event": "treatment",
                "treatment": ("BASIC", "STANDARD", "PREMIUM")[n % 3],
                "counter": n,
                "ts": f"2025-09-16T12:{n // 60 % 60:02}:{n % 60:02}Z",
            }
        ).encode()
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
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
            device, event_id = self.next_event()
            writer.write(self.request_bytes(device, event_id))
            try:
                status, headers, body = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                self.error(f"{event_id}: connection lost: {error!r}")
                writer.close()
                reader = writer = None
                continue
            self.requests += 1
            if status != 200 or body != b'{"ack": true, "event_id": "%s"}' % event_id.encode():
                self.error(f"{event_id}: {status} {body[:200]!r}")
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()


async def read_response(reader) -> tuple[int, dict, bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 response with Content-Length."""
    status_line = await reader.readuntil(b"\r\n")
    if b" " not in status_line:
        raise ConnectionError(f"not a status line: {status_line[:200]!r}")
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


def make_devices(count: int) -> list[tuple[str, str]]:
    """`count` provisioned counters: (device_id, token) each."""
    devices = [
        Device(
            device_id=f"bench-counter-{n:04}", mac=f"02:00:00:BE:{n // 256:02X}:{n % 256:02X}", kind=Device.Kind.COUNTER
        )
        for n in range(count)
    ]
    tokens = [device.issue_token() for device in devices]
    Device.objects.bulk_create(devices)
    return [(device.device_id, token) for device, token in zip(devices, tokens, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip-bulk", action="store_true", help="only the events figures, not bench/bulk_upload.py after them"
    )
    parser.add_argument("--seconds", type=float, default=10, help="seconds of load per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of load; the best is kept")
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--repeats", type=float, default=0.1, help="share of requests that repeat an event sent before")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"])
    parser.add_argument(
        "--cache",
        default="redis",
        choices=["redis", "database"],
        help="where the rate limit counts: Redis as deployed (--redis-url), or the database cache of a set-up without Redis",
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    drop_bench_tenant()
    tenant = create_tenant("Bench device API", SLUG)
    host = Tenant.domain_for_slug(SLUG)
    with schema_context(tenant.schema_name):
        tokens = make_devices(args.devices)
    connection.close()  # nothing of this process holds the database while gunicorn runs

    port = free_port()
    process = start_gunicorn(port, host, args)
    rounds = []
    try:
        asyncio.run(drive(Load(tokens, host, port, 1.0, args.repeats, "warm"), args.connections))  # caches
        workers = children(process.pid)
        for n in range(args.rounds):
            load = Load(tokens, host, port, args.seconds, args.repeats, f"bench{n}")
            backends = backend_pids()
            server_cpu, db_cpu, client_cpu = cpu_seconds(workers), cpu_seconds(backends), time.process_time()
            elapsed = asyncio.run(drive(load, args.connections))
            server_cpu, db_cpu = cpu_seconds(workers) - server_cpu, cpu_seconds(backends) - db_cpu
            client_cpu = time.process_time() - client_cpu
            rounds.append((load, elapsed, server_cpu, db_cpu, client_cpu))
            print(
                f"  round {n + 1}: {len(set(load.sent)) / elapsed:.0f} unique events/s, "
                f"{load.requests / elapsed:.0f} requests/s; CPU per request: gunicorn {server_cpu / load.requests * 1000:.2f} ms, "
                f"PostgreSQL {db_cpu / load.requests * 1000:.2f} ms, load generator {client_cpu / load.requests * 1000:.2f} ms"
            )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)

    try:
        with schema_context(tenant.schema_name):
            stored = {
                prefix: DeviceEvent.objects.filter(event_id__startswith=f"{prefix}-").count()
                for prefix in (f"bench{n}" for n in range(args.rounds))
            }
    finally:
        drop_bench_tenant()

    errors = sum(load.errors for load, *_ in rounds)
    duplicates = sum(abs(stored[load.prefix] - len(set(load.sent))) for load, *_ in rounds)  # missing rows count too
    load, elapsed, server_cpu, db_cpu, client_cpu = max(rounds, key=lambda r: len(set(r[0].sent)) / r[1])
    distinct = len(set(load.sent))
    print(
        f"gunicorn {args.worker_class} workers={args.workers}"
        + (f" threads={args.threads}" if args.worker_class == "gthread" else "")
        + f"; {args.connections} connections, {args.devices} devices, best of {args.rounds} rounds of {args.seconds:.0f} s"
        + f"; rate limit counted in {args.cache}"
        + (f" at {args.redis_url}" if args.cache == "redis" else "")
    )
    print(
        f"best round: {load.requests} requests, {distinct} distinct event ids ({load.requests - distinct} repeats), "
        f"{stored[load.prefix]} rows stored for them, in {elapsed:.1f} s"
    )
    for text in [t for r in rounds for t in r[0].first_errors][:5]:
        print(f"  error: {text}")
    print(f"figure device_events_rate {distinct / elapsed:.0f} events/s goal 1500")
    print(f"figure device_requests_rate {load.requests / elapsed:.0f} requests/s goal -")
    print(f"figure device_events_cpu_gunicorn {server_cpu / load.requests * 1000:.2f} ms/request goal -")
    print(f"figure device_events_cpu_postgres {db_cpu / load.requests * 1000:.2f} ms/request goal -")
    print(f"figure device_events_errors {errors} count goal 0")
    print(f"figure device_events_duplicates {duplicates} count goal 0")
    if not args.skip_bulk:
        # the other half of this API's figures: a 50 MB gzip bulk upload, end to end
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "bulk_upload.py")],
            check=True,
            env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        )


if __name__ == "__main__":
    main()

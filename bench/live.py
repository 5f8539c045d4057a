"""Live pages: htmx polling of a "since" endpoint vs server-sent events, under gunicorn, behind nginx.

    .venv/bin/python bench/live.py [--viewers 10,40,100] [--seconds 20] [--nginx /usr/sbin/nginx]

Steps: make a bench tenant with an asset (a gateway, 10 sensors, an hour of readings) and a
signed-in viewer; start gunicorn as in production (gthread, 2 workers × 16 threads, DEBUG=0,
collected static files) on bench/live_wsgi.py (the portal plus a bench-only SSE endpoint) and
nginx in front of it (buffering off for the stream); a writer stores one new reading a second
through the ingest path. Then, for each number of viewers, for --seconds:

- polling: each viewer asks the asset page's live URL every 5 s with its cursor, as live.js does;
- SSE: each viewer holds one event stream open;

while a probe loads the asset page every 0.25 s, as one more person arriving would. Printed per
case: the probe's median and 95th percentile (ms) and failures (no answer within 5 s), how
many viewers were served at all, the delay from a reading's commit to a viewer seeing it, and
CPU milliseconds of the gunicorn workers per second of the case. nginx is taken from PATH or
--nginx (Debian's package nginx; `apt-get download nginx` and `dpkg -x` give a binary without
installing a service); without it the cases run straight against gunicorn.

Everything runs on loopback; every case is bounded by --seconds; the tenant is dropped at the end.
"""

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
SECRET = os.environ.setdefault("SECRET_KEY", "bench-live-" + secrets.token_urlsafe(40))
os.environ["DEBUG"] = "0"  # this process signs the session gunicorn reads: same settings, same key
os.environ.setdefault("SECURE_COOKIES", "0")

from common import drop_tenants, free_port, use_bench_database

use_bench_database("livebench")

import django

django.setup()

from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.db import close_old_connections
from django.utils import timezone
from django_tenants.utils import schema_context

from portal.accounts.models import User
from portal.core import live
from portal.facilities.models import Asset, DeviceBinding, Site
from portal.tenancy.middleware import SESSION_TENANT_KEY
from portal.tenancy.models import Membership, Role
from portal.tenancy.provisioning import create_tenant
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import Device

SLUG, EMAIL = "bench-live", "bench-live@example.com"
HOST = f"{SLUG}.{settings.BASE_DOMAIN}"
POLL_EVERY = 5.0  # seconds, as the asset page polls
PROBE_EVERY = 0.25
PROBE_TIMEOUT = 5.0
WORKERS, THREADS = 2, 16


# --- set-up ------------------------------------------------------------------------------------


def make_tenant() -> tuple[int, str]:
    """The bench tenant, its asset (returns its pk) and a viewer's session cookie."""
    tenant = create_tenant("Bench live", SLUG)
    with schema_context(tenant.schema_name):
        asset = Asset.objects.create(site=Site.objects.create(name="Bench"), tag="LIVE-1")
        now = timezone.now()
        ingest(
            [
                ReadingIn("bench-gw", f"t{n}", now - timedelta(minutes=m), 20 + n + m % 7, unit="°C")
                for n in range(10)
                for m in range(60)
            ],
            source="internal",
        )
        DeviceBinding.objects.create(asset=asset, device=Device.objects.get(device_id="bench-gw"))
    user, _ = User.objects.get_or_create(email=EMAIL)
    Membership.objects.get_or_create(user=user, tenant=tenant, defaults={"role": Role.VIEWER})
    session = SessionStore()
    session.update(
        {
            "_auth_user_id": str(user.pk),
            "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
            "_auth_user_hash": user.get_session_auth_hash(),
            SESSION_TENANT_KEY: tenant.schema_name,
        }
    )
    session.create()
    return asset.pk, f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def drop_bench_tenant() -> None:
    drop_tenants(slug=SLUG)
    User.objects.filter(email=EMAIL).delete()


def wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not listen on {port} within 30 s")


def start_gunicorn(port: int) -> subprocess.Popen:
    env = os.environ | {"ALLOWED_HOSTS": f"{HOST},127.0.0.1", "LOG_LEVEL": "WARNING", "DATABASE_CONN_MAX_AGE": "60"}
    subprocess.run(  # production serves collected, hashed static files (the asset page names them)
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "live_wsgi:application",
        "--pythonpath",
        str(ROOT / "bench"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(WORKERS),
        "--worker-class",
        "gthread",
        "--threads",
        str(THREADS),
        "--log-level",
        "warning",
        "--timeout",
        "120",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    wait_for_port(port, process, "gunicorn")
    return process


NGINX_CONF = """
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {folder}/body; proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi; uwsgi_temp_path {folder}/uwsgi; scgi_temp_path {folder}/scgi;
  upstream portal {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://portal; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_read_timeout 30s;
    }}
    location /bench-sse/ {{
      proxy_pass http://portal; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_buffering off; proxy_read_timeout 3600s;
    }}
  }}
}}
"""


def start_nginx(binary: str, port: int, upstream: int, folder: Path) -> subprocess.Popen:
    (folder / "nginx.conf").write_text(NGINX_CONF.format(folder=folder, port=port, upstream=upstream))
    command = [binary, "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(folder / "nginx.conf")]
    process = subprocess.Popen([*command, "-g", "daemon off;"], start_new_session=True)
    wait_for_port(port, process, "nginx")
    return process


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def cpu_seconds(root_pid: int) -> float:
    """User + system CPU of a process and its children (gunicorn's workers)."""
    pids = [root_pid] + [int(c) for c in Path(f"/proc/{root_pid}/task/{root_pid}/children").read_text().split()]
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Writer(threading.Thread):
    """One reading a second through the ingest path; remembers when each was committed."""

    def __init__(self, schema: str):
        super().__init__(daemon=True)
        self.schema, self.stopped = schema, threading.Event()
        self.committed: list[tuple[float, float]] = []  # (reading time as a cursor, when committed)

    def run(self):
        n = 0
        while not self.stopped.wait(1.0):
            ts = timezone.now()
            with schema_context(self.schema):
                ingest([ReadingIn("bench-gw", f"t{n % 10}", ts, 30 + n % 5, unit="°C")], source="internal")
            self.committed.append((ts.timestamp(), time.monotonic()))
            n += 1
        close_old_connections()


# --- load ------------------------------------------------------------------------------------


async def request(port: int, path: str, cookie: str, timeout: float) -> tuple[int, bytes]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nCookie: {cookie}\r\nHX-Request: true\r\n"
            f"Connection: close\r\n\r\n".encode()
        )
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class Case:
    def __init__(self, port, cookie, asset_pk, seconds, writer: Writer):
        self.port, self.cookie, self.asset_pk, self.writer = port, cookie, asset_pk, writer
        self.deadline = time.monotonic() + seconds
        self.probe_ms, self.probe_failures = [], 0
        self.delays, self.served, self.errors = [], set(), 0

    def seen(self, before: float, cursor: float, viewer: int) -> None:
        """A viewer learnt of the readings after `before` up to `cursor`: how late, for each."""
        self.served.add(viewer)
        now = time.monotonic()
        self.delays += [now - at for ts, at in list(self.writer.committed) if before < ts <= cursor]

    async def probe(self):
        while time.monotonic() < self.deadline:
            started = time.monotonic()
            try:
                status, _ = await request(self.port, f"/assets/{self.asset_pk}/", self.cookie, PROBE_TIMEOUT)
                if status != 200:
                    raise OSError(status)
                self.probe_ms.append((time.monotonic() - started) * 1000)
            except (OSError, TimeoutError, ValueError, IndexError):
                self.probe_failures += 1
            await asyncio.sleep(PROBE_EVERY)

    async def poller(self, viewer: int):
        await asyncio.sleep(POLL_EVERY * viewer / max(1, self.viewers))  # pages opened at different times
        cursor = live.epoch(timezone.now())
        while time.monotonic() < self.deadline:
            path = f"/assets/{self.asset_pk}/live/?range=24h&since={cursor}"
            try:
                status, body = await request(self.port, path, self.cookie, 10)
            except (OSError, TimeoutError):
                status, body = 0, b""
            if status == 200:
                before, cursor = cursor, body.split(b"since=", 1)[1].split(b'"', 1)[0].split(b"&", 1)[0].decode()
                self.seen(float(before), float(cursor), viewer)
            elif status == 204:
                self.served.add(viewer)
            else:
                self.errors += 1
            await asyncio.sleep(POLL_EVERY)

    async def streamer(self, viewer: int, schema: str):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            self.errors += 1
            return
        writer.write(f"GET /bench-sse/{schema}/{self.asset_pk}/ HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        cursor = None
        try:
            while (remaining := self.deadline - time.monotonic()) > 0:
                line = await asyncio.wait_for(reader.readline(), remaining)
                if not line:
                    break
                if line.startswith(b": connected"):
                    self.served.add(viewer)
                elif line.startswith(b"data: "):
                    newest = float(line[6:].strip())
                    if cursor is not None:  # the first event is the state on connecting, not news
                        self.seen(cursor, newest, viewer)
                    cursor = newest
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()

    async def run(self, mode: str, viewers: int, schema: str):
        self.viewers = viewers
        tasks = [self.probe()]
        if mode == "poll":
            tasks += [self.poller(n) for n in range(viewers)]
        else:
            tasks += [self.streamer(n, schema) for n in range(viewers)]
        await asyncio.gather(*tasks)


def warm_up(port: int, cookie: str, asset_pk: int) -> None:
    """Every thread's first request pays for imports and a database connection: not measured."""

    async def few():
        await asyncio.gather(*[request(port, f"/assets/{asset_pk}/", cookie, 60) for _ in range(WORKERS * THREADS)])

    asyncio.run(few())


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", default="10,40,100")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)  # a fresh bench database has no tables yet
    drop_bench_tenant()
    gunicorn = nginx = None
    folder = Path(tempfile.mkdtemp(prefix="bench-live-"))
    writer = None
    results = []
    try:
        asset_pk, cookie = make_tenant()
        schema = SLUG.replace("-", "_")
        upstream = free_port()
        gunicorn = start_gunicorn(upstream)
        port = upstream
        if Path(args.nginx).exists():
            port = free_port()
            nginx = start_nginx(args.nginx, port, upstream, folder)
        print(f"gunicorn gthread {WORKERS}×{THREADS} on {upstream}; " + (f"nginx on {port}" if nginx else "no nginx"))
        warm_up(port, cookie, asset_pk)
        writer = Writer(schema)
        writer.start()
        for viewers in [int(v) for v in args.viewers.split(",")]:
            for mode in ("poll", "sse"):
                case = Case(port, cookie, asset_pk, args.seconds, writer)
                cpu_before, started = cpu_seconds(gunicorn.pid), time.monotonic()
                asyncio.run(case.run(mode, viewers, schema))
                cpu = (cpu_seconds(gunicorn.pid) - cpu_before) / (time.monotonic() - started) * 1000
                time.sleep(2)  # let the streams' threads notice their clients left
                row = {
                    "mode": mode,
                    "viewers": viewers,
                    "probe_p50": percentile(case.probe_ms, 50),
                    "probe_p95": percentile(case.probe_ms, 95),
                    "probe_failures": case.probe_failures,
                    "probe_ok": len(case.probe_ms),
                    "served": len(case.served),
                    "delay_p50": statistics.median(case.delays) if case.delays else float("nan"),
                    "delay_p95": percentile(case.delays, 95),
                    "errors": case.errors,
                    "cpu_ms_per_s": cpu,
                }
                results.append(row)
                print(
                    f"  {mode:4} {viewers:4} viewers: probe p50 {row['probe_p50']:.0f} ms p95 {row['probe_p95']:.0f} ms, "
                    f"{row['probe_failures']} of {row['probe_failures'] + row['probe_ok']} probes unanswered; "
                    f"{row['served']} viewers served; update delay p50 {row['delay_p50']:.2f} s p95 {row['delay_p95']:.2f} s; "
                    f"{row['errors']} errors; gunicorn CPU {row['cpu_ms_per_s']:.0f} ms/s"
                )
    finally:
        if writer:
            writer.stopped.set()
            writer.join(5)
        for process in (nginx, gunicorn):
            if process is not None:
                stop(process)
        shutil.rmtree(folder, ignore_errors=True)
        drop_bench_tenant()
    print(f"load {os.getloadavg()[0]:.1f} (1 min)")
    for row in results:
        name = f"{row['mode']}_{row['viewers']}"
        print(f"figure {name}_probe_p95 {row['probe_p95']:.0f} ms goal -")
        print(f"figure {name}_probe_unanswered {row['probe_failures']} probes goal 0")
        print(f"figure {name}_viewers_served {row['served']} viewers goal {row['viewers']}")
        print(f"figure {name}_update_delay_p50 {row['delay_p50']:.2f} s goal -")
        print(f"figure {name}_update_delay_p95 {row['delay_p95']:.2f} s goal -")
        print(f"figure {name}_gunicorn_cpu {row['cpu_ms_per_s']:.0f} ms/s goal -")


if __name__ == "__main__":
    main()

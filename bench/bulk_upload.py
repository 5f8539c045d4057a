"""Readings per second for a 50 MB gzip bulk upload (seed 002), end to end on live processes.

    .venv/bin/python bench/bulk_upload.py [--mb 50] [--equipment-sensors 4] [--every 30]

Steps:
1. create and migrate the bench database (DATABASE_URL, default fieldwatch_bulkbench); make a
   bench tenant (create_tenant) and an API key;
2. write the upload to a temporary file, streaming: equipment after equipment, each with
   sensors (temperature, humidity, current, voltage) reporting every `--every` seconds over the
   last days, values as random walks, readings interleaved by instant as a gateway sends them,
   gzip level 6, until the compressed file reaches `--mb` MB;
3. start gunicorn (DEBUG=0, a 50-character SECRET_KEY, SECURE_COOKIES=0) and `manage.py
   run_huey` (HUEY_IMMEDIATE=0) on a free port, both on the same Redis database for the queue
   (REDIS_URL, default redis://127.0.0.1:6379/14, flushed at the end);
4. POST the file (Content-Encoding: gzip, X-API-Key) in 1 MB pieces; time the 202 (upload,
   streamed to storage, job queued); poll the status URL until the job is done or failed;
5. check every reading was written, none rejected; stop both processes, drop the tenant,
   delete the temporary file and whatever the job left in storage.

Prints `figure bulk_upload_rate <n> readings/s goal -` (readings written per second from the
first byte sent to the job's end) and `figure bulk_upload_mb <n> MB goal -`.
"""

import argparse
import contextlib
import gzip
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DEBUG", "1")  # this process only sets up and cleans up; the servers run with DEBUG=0
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")

SLUG = "bench-bulk"
PATH = "/api/v1/telemetry/bulk"
SENSOR_KINDS = [  # (sensor_tipo, start, step of the random walk, low, high)
    ("temperatura", -18.0, 0.15, -30.0, 10.0),
    ("umidade", 60.0, 0.5, 20.0, 99.0),
    ("corrente", 8.0, 0.2, 0.0, 30.0),
    ("tensao", 220.0, 0.4, 200.0, 240.0),
]


from common import drop_tenants, free_port, use_bench_database

use_bench_database("bulkbench")

import django

django.setup()

from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import schema_context

from portal.api.models import ApiKey
from portal.tenancy.provisioning import create_tenant
from telemetry.models import Reading


def drop_bench_tenant() -> None:
    drop_tenants(slug=SLUG)


def write_upload(
    path: Path, megabytes: float, sensors_per_equipment: int, every: int, rng: random.Random
) -> tuple[int, int]:
    """Write seed 002's JSON list, gzip level 6, until the file holds `megabytes`; returns
    (equipment, readings). Each equipment reports for the last `span` at `every` seconds."""
    target = int(megabytes * 1024 * 1024)
    readings_per_sensor = 10_000
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    instants = [
        (end - timedelta(seconds=every * (readings_per_sensor - i))).strftime("%Y-%m-%dT%H:%M:%SZ")
        for i in range(readings_per_sensor)
    ]
    equipment = readings = 0
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as out:
        out.write(b"[")
        while raw.tell() < target:
            sensors = [(str(uuid.uuid4()), *SENSOR_KINDS[n % len(SENSOR_KINDS)]) for n in range(sensors_per_equipment)]
            head = json.dumps({"equip_uuid": str(uuid.uuid4()), "equip_nome": f"Freezer {equipment + 1:04}"})[:-1]
            out.write(("," if equipment else "").encode() + head.encode() + b', "sensor": [')
            values = [start for _, _, start, _, _, _ in sensors]
            parts = []
            for stamp in instants:
                for n, (sensor_uuid, kind, _, step, low, high) in enumerate(sensors):
                    values[n] = min(high, max(low, values[n] + rng.gauss(0, step)))
                    parts.append(
                        f'{{"sensor_uuid": "{sensor_uuid}", "sensor_tipo": "{kind}", "valor": {values[n]:.2f}, "timestamp": "{stamp}"}}'
                    )
            out.write(",".join(parts).encode() + b"]}")
            equipment += 1
            readings += len(parts)
        out.write(b"]")
    return equipment, readings


def server_env() -> dict:
    return os.environ | {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(38)[:50],
        "SECURE_COOKIES": "0",
        "HUEY_IMMEDIATE": "0",
        "REDIS_URL": REDIS_URL,
        "PYTHONUNBUFFERED": "1",
    }


def start_processes(port: int, host: str, workers: int, log: Path) -> list[subprocess.Popen]:
    env = server_env()
    python = str(Path(sys.executable))
    web = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "portal.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "300",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    with open(log, "ab") as worker_log:  # the consumer logs every task; a file never fills up like a pipe
        worker = subprocess.Popen(
            [python, "manage.py", "run_huey"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for process in (web, worker):
            if process.poll() is not None:
                raise SystemExit(f"{process.args[0]} exited with {process.returncode}")
        try:
            status, _ = request("GET", port, host, "/health/")
            if status == 200:
                return [web, worker]
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not answer /health/ within 30 s")


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def request(method: str, port: int, host: str, path: str, headers=None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        body = response.read()
        return response.status, (
            json.loads(body) if body and response.getheader("Content-Type", "").startswith("application/json") else {}
        )
    finally:
        conn.close()


def upload(port: int, host: str, key: str, path: Path) -> tuple[int, dict]:
    """POST the file in 1 MB pieces, as curl --data-binary would stream it."""
    size = path.stat().st_size
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.putrequest("POST", PATH, skip_host=True)
        for name, value in {
            "Host": host,
            "X-API-Key": key,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Content-Length": str(size),
        }.items():
            conn.putheader(name, value)
        conn.endheaders()
        with open(path, "rb") as body:
            while piece := body.read(1024 * 1024):
                conn.send(piece)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def leftover_files(schema: str) -> Path:
    return Path(settings.MEDIA_ROOT) / "bulk" / schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50, help="compressed size of the upload")
    parser.add_argument("--equipment-sensors", type=int, default=4)
    parser.add_argument("--every", type=int, default=30, help="seconds between a sensor's readings")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()

    call_command("migrate", "--noinput", verbosity=0)
    drop_bench_tenant()
    tenant = create_tenant("Bench bulk", SLUG)
    with schema_context(tenant.schema_name):
        raw_key = ApiKey.issue("bench")[1]
    connection.close()
    host = f"{tenant.primary_domain()}"
    scratch = Path(tempfile.mkdtemp(prefix="fieldwatch-bulk-"))
    upload_path = scratch / "telemetry.json.gz"
    processes = []
    try:
        started = time.perf_counter()
        equipment, readings = write_upload(upload_path, args.mb, args.equipment_sensors, args.every, random.Random(42))
        megabytes = upload_path.stat().st_size / 1024 / 1024
        print(
            f"upload: {equipment} equipment × {args.equipment_sensors} sensors, {readings:,} readings, "
            f"{megabytes:.1f} MB gzip, written in {time.perf_counter() - started:.1f} s"
        )

        port = free_port()
        processes = start_processes(port, f"{host}:{port}", args.workers, scratch / "worker.log")
        sent = time.perf_counter()
        status, body = upload(port, f"{host}:{port}", raw_key, upload_path)
        accepted = time.perf_counter()
        if status != 202:
            raise SystemExit(f"expected 202, got {status}: {body}")
        print(f"202 after {accepted - sent:.2f} s: {body}")
        job, last_print = {}, 0.0
        while time.perf_counter() - sent < 1800:
            _, job = request("GET", port, f"{host}:{port}", body["status_url"], {"X-API-Key": raw_key})
            if job.get("status") in ("done", "failed"):
                break
            if time.perf_counter() - last_print > 10:
                last_print = time.perf_counter()
                print(f"  {time.perf_counter() - sent:6.1f} s {job.get('status')}: {job.get('progress')}")
            time.sleep(0.25)
        finished = time.perf_counter()
        if job.get("status") != "done":
            print((scratch / "worker.log").read_text()[-3000:])
            raise SystemExit(f"the job did not finish: {job}")
        progress = job["progress"]
        with schema_context(tenant.schema_name):
            stored = Reading.objects.count()
        connection.close()
        print(f"job done after {finished - accepted:.1f} s more: {progress}; {stored:,} readings in the table")
        if (progress["written"], progress["rejected"], stored) != (readings, 0, readings):
            raise SystemExit(f"expected {readings} readings written and none rejected")
        print(f"processing alone: {readings / (finished - accepted):,.0f} readings/s")
        print(f"figure bulk_upload_accept_seconds {accepted - sent:.2f} s goal -")
        print(f"figure bulk_upload_rate {readings / (finished - sent):.0f} readings/s goal -")
        print(f"figure bulk_upload_mb {megabytes:.0f} MB goal -")
    finally:
        stop(processes)
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(leftover_files(tenant.schema_name), ignore_errors=True)
        with contextlib.suppress(OSError):
            leftover_files(tenant.schema_name).parent.rmdir()  # bulk/, when nothing else is in it
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()  # the bench's own database number: queue and rate counters
        drop_bench_tenant()


if __name__ == "__main__":
    main()

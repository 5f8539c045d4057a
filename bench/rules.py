"""The alert engine's cost per ingest batch, and notification throughput, side by side.

    DATABASE_URL=... DEBUG=1 .venv/bin/python bench/rules.py [--rounds 5]

One bench tenant: 1,000 sensors (100 devices × 10). A batch is 5,000 readings: 200 of the
sensors × 25 instants 20 s apart, ending now, all inside the online window (older readings move
no live state, and the receiver would not hand them over), stored through the ingest path.
Measured, best of the rounds:

- no rule in the tenant: what the ingest process pays after a batch (the readings_stored
  receiver: index lookup, nothing enqueued);
- 1,000 rules (one threshold rule per sensor), none on the batch's sensors: the same receiver,
  which must find that nothing matches;
- 1,000 rules, 200 of them on the batch's sensors: what the ingest process pays to hand the
  batch over (the receiver, with the task really enqueued: Redis at BENCH_REDIS_URL,
  FIELDWATCH_TEST_REDIS_URL or REDIS_URL when one is set, else a SQLite queue in a temporary
  file; a queue of the bench's own, flushed), then the whole evaluation of the batch as the Huey
  task runs it (the task's body: the batch's readings read back, advisory locks, state load,
  5,000 steps, the state changes written with alerts, timeline and notifications to two channels). 2 %
  of the readings cross their threshold so some states move and alerts open; "steady" is the same
  batch evaluated again, when nothing changes;
- notifications: deliveries per second from one worker to a local webhook receiver (a process of
  its own, which checks every signature), each recorded with its attempt: to a receiver that keeps
  connections alive (HTTP/1.1, as real ones do) and, side by side, to one that closes them.

Goals (issue 13): under 2 ms per batch with no matching rule, under 50 ms with 1,000 rules. CPU
time (this process's) is printed beside wall time: on a shared, loaded machine wall time mostly
measures waiting for a core, for this process and for the PostgreSQL backend it talks to.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("HUEY_IMMEDIATE", "1")  # the receiver's enqueue runs in-process: no queue to drain

from common import use_bench_database

use_bench_database("rulesbench")
import django

django.setup()

from common import drop_tenants
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from portal.alerts import delivery, rules, tasks
from portal.alerts.models import (
    Alert,
    AlertEvent,
    AlertRule,
    Channel,
    Delivery,
    Notification,
    RuleCondition,
    RuleState,
)
from portal.alerts.receivers import readings_committed
from portal.tenancy.provisioning import create_tenant
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import Device, Sensor

SLUG = "bench-rules"
DEVICES, PER_DEVICE, TOUCHED, INSTANTS, SPACING = 100, 10, 200, 25, 20  # 25 instants 20 s apart


def make_sensors() -> list[int]:
    devices = Device.objects.bulk_create([Device(device_id=f"rb-{d:03}") for d in range(DEVICES)])
    Sensor.objects.bulk_create(
        [
            Sensor(device=d, key=f"t{s}", type="temperature", min_value=-40, max_value=120)
            for d in devices
            for s in range(PER_DEVICE)
        ]
    )
    return list(Sensor.objects.order_by("pk").values_list("pk", flat=True))


def make_rules(sensor_ids) -> None:
    made = AlertRule.objects.bulk_create(
        [
            AlertRule(name=f"rule {n}", target_kind="sensor", target_id=sid, for_seconds=120)
            for n, sid in enumerate(sensor_ids)
        ]
    )
    RuleCondition.objects.bulk_create([RuleCondition(rule=r, kind="above", threshold=30, hysteresis=0.5) for r in made])
    rules.bump_version()


def batch(sensor_ids, now, hot_every=50) -> dict:
    """{(sensor id, ts): value} as the ingest path hands it over; every 50th reading above 30."""
    rows = {}
    n = 0
    for i in range(INSTANTS):
        ts = now - timedelta(seconds=SPACING * (INSTANTS - 1 - i))
        for sid in sensor_ids:
            n += 1
            rows[(sid, ts)] = 35.0 if n % hot_every == 0 else 20.0 + (n % 7)
    return rows


def store(rows) -> None:
    """The batch through the ingest path (before any rule exists: nothing is evaluated yet)."""
    names = {pk: (device, key) for pk, device, key in Sensor.objects.values_list("pk", "device__device_id", "key")}
    result = ingest([ReadingIn(*names[sid], ts, value) for (sid, ts), value in rows.items()], source="bench")
    assert result.written == len(rows)


def as_task_args(rows) -> tuple:
    """The evaluation task's arguments, as the receiver enqueues them: sensors and span."""
    times = [ts.timestamp() for _, ts in rows]
    return sorted({sid for sid, _ in rows}), min(times), max(times), {}


def make_channels() -> None:
    """Where the opened alerts are routed: an email channel for admins and a webhook, both with a
    group wait (the dispatch waits for it, outside the measured batch), and one for criticals only."""
    Channel.objects.create(name="on call", kind="email", email_roles="admin,owner")
    Channel.objects.create(
        name="ops hook", kind="webhook", webhook_url="https://hooks.example.com/fw", webhook_secret="s" * 32
    )
    Channel.objects.create(name="criticals", kind="email", email_addresses="boss@example.com", severities="critical")


def bench_queue():
    """A Huey of the bench's own, so enqueued tasks neither run nor reach anybody's worker."""
    from huey import RedisHuey, SqliteHuey

    url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("FIELDWATCH_TEST_REDIS_URL") or settings.REDIS_URL
    if url:
        queue, kind = RedisHuey(f"fieldwatch-bench-rules-{os.getpid()}", url=url), "redis"
    else:
        queue, kind = SqliteHuey(filename=os.path.join(tempfile.mkdtemp(), "queue.sqlite3")), "sqlite"
    queue._registry.register(tasks.evaluate_batch.task_class)  # a message names its task: it must be known
    return queue, kind


CPU: dict[str, float] = {}


def best_ms(work, rounds: int, reset=None, name="") -> float:
    """Best wall time of the rounds, in ms; the best process CPU time is kept in CPU[name] (on a
    busy machine wall time includes waiting for a core, CPU time is what this process spent)."""
    times, cpu = [], []
    for _ in range(rounds):
        if reset:
            reset()
        started, started_cpu = time.perf_counter(), time.process_time()
        work()
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    CPU[name] = min(cpu)
    return min(times)


def reset_states() -> None:
    Notification.objects.all().delete()
    AlertEvent.objects.all().delete()
    Alert.objects.all().delete()
    RuleState.objects.all().delete()


SINK = """
import hashlib, hmac, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

secret, counts = sys.argv[1].encode(), {"good": 0, "bad": 0}

class Handler(BaseHTTPRequestHandler):
    protocol_version = sys.argv[2]

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        signed = self.headers["X-Fieldwatch-Timestamp"].encode() + b"." + body
        expected = "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()
        counts["good" if hmac.compare_digest(expected, self.headers["X-Fieldwatch-Signature"]) else "bad"] += 1
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        data = f"{counts['good']} {counts['bad']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_port, flush=True)
server.serve_forever()
"""


def notification_rate(count: int, protocol: str) -> tuple[float, float]:
    """(deliveries per second, CPU ms per delivery) to a receiver process speaking `protocol`;
    every delivery must be recorded sent, with one attempt, and arrive with a valid signature."""
    secret = "s" * 32
    sink = subprocess.Popen([sys.executable, "-c", SINK, secret, protocol], stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{sink.stdout.readline().strip()}/hook"
        channel = Channel.objects.create(
            name=f"bench hook {protocol}", kind="webhook", webhook_url=url, webhook_secret=secret
        )
        alert = Alert.objects.create(subject_key="sensor:0", severity="high", summary="bench", opened_at=timezone.now())
        deliveries = []
        for _ in range(count):
            made = Delivery.objects.create(channel=channel)
            Notification.objects.create(alert=alert, channel=channel, event="firing", delivery=made)
            deliveries.append(made.pk)
        started, started_cpu = time.perf_counter(), time.process_time()
        for pk in deliveries:
            assert delivery.deliver(pk) == Delivery.Status.SENT
        seconds, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        with urllib.request.urlopen(url) as answer:
            good, bad = map(int, answer.read().split())
        assert (good, bad) == (count, 0), f"the receiver got {good} signed and {bad} badly signed of {count}"
        assert Delivery.objects.filter(channel=channel, status="sent", attempts=1).count() == count
        alert.delete()
        return count / seconds, cpu * 1000 / count
    finally:
        sink.terminate()
        sink.wait()


def run(rounds: int, notifications: int) -> dict:
    now = timezone.now().replace(microsecond=0)
    sensor_ids = make_sensors()
    touched = sensor_ids[:TOUCHED]
    rows = batch(touched, now)
    store(rows)
    schema = connection.schema_name
    figures = {}
    rules.current_index()
    figures["no_rule"] = best_ms(
        lambda: readings_committed(None, schema=schema, rows=rows, rejected={}), rounds, name="no_rule"
    )
    make_rules(sensor_ids[TOUCHED:])  # 800 rules, on other sensors
    AlertRule.objects.bulk_create(
        [AlertRule(name=f"idle {n}", target_kind="sensor", target_id=sensor_ids[-1]) for n in range(200)]
    )
    rules.bump_version()
    rules.current_index()
    assert len(rules.current_index().by_sensor) == len(sensor_ids) - TOUCHED
    figures["no_match"] = best_ms(
        lambda: readings_committed(None, schema=schema, rows=rows, rejected={}), rounds, name="no_match"
    )
    AlertRule.objects.filter(name__startswith="idle").delete()
    make_rules(touched)
    make_channels()
    assert AlertRule.objects.count() == 1000
    index = rules.current_index()
    assert all(sid in index.by_sensor for sid in touched)
    queue, figures["queue"] = bench_queue()
    tasks.evaluate_batch.huey = queue
    try:
        figures["enqueue"] = best_ms(
            lambda: readings_committed(None, schema=schema, rows=rows, rejected={}), rounds, name="enqueue"
        )
        assert len(queue) == rounds, "the receiver enqueued one evaluation per batch"
    finally:
        queue.flush()
        tasks.evaluate_batch.huey = tasks.evaluate_rules.huey
    arguments = as_task_args(rows)
    changed = []

    def evaluate():
        changed.append(tasks.evaluate_batch.call_local(schema, *arguments))

    figures["eval"] = best_ms(evaluate, rounds, reset_states, name="eval")
    figures["eval_steady"] = best_ms(evaluate, rounds, name="eval_steady")
    figures["changed"] = changed[0]
    assert changed[-1] == 0, "the steady batch changes nothing"
    figures["alerts"] = Alert.objects.count()
    figures["notified"] = Notification.objects.count()
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receivers are on loopback
    figures["keepalive"] = notification_rate(notifications, "HTTP/1.1")
    figures["closing"] = notification_rate(notifications, "HTTP/1.0")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--notifications", type=int, default=300)
    args = parser.parse_args()
    settings.DEBUG = False  # no query log: production cost
    call_command("migrate", verbosity=0)  # a fresh bench database has no tables yet
    drop_tenants(slug=SLUG)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1, 5, 15 min)")
    try:
        tenant = create_tenant("Bench rules", SLUG)
        with schema_context(tenant.schema_name):
            figures = run(args.rounds, args.notifications)
    finally:
        drop_tenants(slug=SLUG)
    print(f"load at the end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print(
        f"{figures['changed']} states changed, {figures['alerts']} alerts opened and {figures['notified']} "
        f"notifications written by the evaluated batch; evaluation enqueued on a {figures['queue']} queue"
    )
    print(f"figure rules_batch_no_rule {figures['no_rule']:.3f} ms goal 2")
    print(f"figure rules_batch_no_matching_rule {figures['no_match']:.3f} ms goal 2")
    print(f"figure rules_batch_enqueue_matching {figures['enqueue']:.3f} ms goal -")
    print(f"figure rules_batch_1000_rules {figures['eval']:.1f} ms goal 50")
    print(f"figure rules_batch_1000_rules_steady {figures['eval_steady']:.1f} ms goal -")
    for name in ("no_rule", "no_match", "enqueue", "eval", "eval_steady"):
        print(f"figure rules_cpu_{name} {CPU[name]:.3f} ms goal -")
    for name in ("keepalive", "closing"):
        rate, cpu = figures[name]
        print(f"figure webhook_notifications_{name} {rate:.0f} per s goal -")
        print(f"figure webhook_cpu_per_notification_{name} {cpu:.2f} ms goal -")


if __name__ == "__main__":
    main()

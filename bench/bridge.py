"""MQTT → PostgreSQL throughput of `manage.py bridge`, next to a bare paho subscriber and a naive bridge.

    DATABASE_URL=... DEBUG=1 .venv/bin/python bench/bridge.py [--seconds 10] [--rounds 2]

Everything runs in one run, on loopback, against a Mosquitto of its own (the shipped
bridge/mosquitto.conf on a free port, persistence in a temp folder) and a bench tenant of its
own (dropped at the end, also on error). Every phase publishes from a separate process through
bridge.publish.Publisher (every return code checked, paced by the broker's acks), QoS 1 unless
said otherwise:

1. ceiling: a bare paho subscriber (MQTT 5, persistent session, auto-ack) in a subprocess that
   only counts, while single-reading messages are published as fast as Publisher allows; QoS 0
   too, for reference;
2. the real bridge: single-reading messages on tenants/<bench>/devices/<d>/sensors/<s>, each a
   unique (sensor, ts), counted as they commit in the bench tenant's telemetry_reading;
   publish-to-commit latency (the payload's value is its publish time; commits of a 10% sample
   are seen by a poll every 50 ms, so latencies are over by 25 ms on average) and CPU seconds of the bridge,
   Mosquitto and PostgreSQL (the bench database's backends) while it runs; then, once, a paced
   run at half that rate, for the latency of a bridge that keeps up;
3. catching up: a consumer subscribes, goes away, 30,000 messages queue for its persistent
   session, and it comes back and drains them, with no publisher running: the real bridge, and a
   naive bridge (a paho subscriber that saves each reading with Reading.objects.create(),
   autocommit, one INSERT per message, sensor ids cached in a dict, one search_path for its
   connection, auto-ack) on 10,000 for 5 s. Both run with DEBUG off, as in production, and both
   clocks start when the consumer connects (the queued messages flow from then on).
   bridge_vs_naive compares these two consumer speeds; bridge_vs_naive_live divides run 2's
   rate by the naive one, and is capped by the publisher (run 2 cannot beat the ceiling);
4. two bridges in one share group, against the one of run 2: single-reading messages are
   capped by the Python publisher on two cores, so share_group_speedup is context only;
5. SenML packs of 100 readings on the asset topic: readings/s, with one bridge and with two in a
   share group, where the bridge, not the publisher, is the bottleneck: the scale-out figure
   (share_group_batched_speedup, goal 1.5×), with every published reading checked stored
   (batched_lost) and the bridges' own counts checked for readings stored twice over
   (batched_duplicated, from their heartbeats).

Runs 1, 2, 4 and 5 take turns for --rounds rounds and each keeps its best, so a busy neighbour
on the machine skews them less. A rate is messages (or readings) committed / (time the last one
was seen committed − time the first was published), so a consumer slower than the publisher
is measured by how fast it drains the backlog.

On 2 cores the publisher, Mosquitto, the consumer and PostgreSQL all compete for CPU, and the
ceiling is mostly the publisher's speed: a Python paho publisher costs ~100 µs of CPU per QoS 1
message, the bare subscriber ~60. Every phase prints the CPU seconds of each process and those
the machine spent on work not ours (other people's jobs): read the figures with that in mind.
"""

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DEBUG", "1")

from common import use_bench_database

SLUG = "bench-bridge"
SINGLE_DEVICES, SINGLE_SENSORS = 10, 10  # 100 sensors for the single-reading topics
PACK_DEVICES, PACK_SIZE = 10, 100  # SenML: 10 devices of 100 sensors, one pack = one device's 100 readings
TOPIC_FILTER = "tenants/+/devices/+/sensors/+"
TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def single_topic(i: int) -> str:
    return f"tenants/{SLUG}/devices/d{i % SINGLE_DEVICES}/sensors/s{i // SINGLE_DEVICES % SINGLE_SENSORS}"


# --- roles run in subprocesses (no Django needed for the publisher and the counter) --------------


def role_publish(args) -> None:
    """Publish as fast as Publisher allows (or at --rate), for --seconds or --max messages."""
    from bridge.mqtt import broker_from_settings, connect, make_client
    from bridge.publish import Publisher

    broker = broker_from_settings(args.url, "5")
    client = make_client(broker, args.client_id, persistent=False)
    client.max_inflight_messages_set(args.inflight)
    connect(client, broker, persistent=False)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected():
        if time.monotonic() > deadline:
            raise SystemExit("publisher: no connection")
        time.sleep(0.01)
    publisher = Publisher(client)
    base = datetime.fromtimestamp(args.base, UTC)
    first = time.time()
    stop_at = time.monotonic() + args.seconds
    started = time.monotonic()
    n = 0
    while n < args.max and time.monotonic() < stop_at:
        if args.kind == "single":
            ts = (base + timedelta(milliseconds=n)).isoformat()
            topic = single_topic(n)
            payload = f'{{"value": {time.time():.6f}, "timestamp": "{ts}"}}'
        else:  # a SenML pack: one device, 100 sensors, 100 distinct instants 1 ms apart
            topic = f"tenants/{SLUG}/sites/S/assets/A/telemetry"
            records = [{"bn": f"p{n % PACK_DEVICES}", "bt": args.base + n}]
            value = round(time.time(), 6)
            records += [{"n": f"s{k}", "v": value, "t": k / 1000} for k in range(PACK_SIZE)]
            payload = json.dumps(records)
        publisher.publish(topic, payload, qos=args.qos)
        n += 1
        if args.rate:
            time.sleep(max(0.0, started + n / args.rate - time.monotonic()))
    last = time.time()
    if args.qos == 0:
        # QoS 0 publishes only queue in paho: a QoS 1 marker behind them tells when all went out
        publisher.publish("bench/marker", b"", qos=1)
    publisher.settle()
    settled = time.time()
    client.disconnect()
    client.loop_stop()
    print(
        json.dumps({"sent": n, "first": first, "last": last, "settled": settled, "cpu": time.process_time()}),
        flush=True,
    )


def role_count(args) -> None:
    """A bare subscriber: count messages; done once nothing came for --idle seconds."""
    from bridge.mqtt import broker_from_settings, connect, make_client

    broker = broker_from_settings(args.url, "5")
    client = make_client(broker, args.client_id, persistent=True)  # auto-ack
    state = {"count": 0, "first": 0.0, "last": 0.0}

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe(TOPIC_FILTER, qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        print("ready", flush=True)

    def on_message(client, userdata, message):
        now = time.time()
        if not state["count"]:
            state["first"] = now
        state["count"] += 1
        state["last"] = now

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    connect(client, broker, persistent=True, receive_maximum=20000)
    client.loop_start()
    started = time.time()
    while True:
        time.sleep(0.1)
        now = time.time()
        if state["count"] and now - state["last"] > args.idle:
            break
        if now - started > args.timeout:
            break
    client.disconnect()
    client.loop_stop()
    print(json.dumps(state | {"cpu": time.process_time()}), flush=True)


def role_naive(args) -> None:
    """The naive bridge: one ORM INSERT per message in paho's thread, auto-ack after it."""
    import django

    django.setup()
    from django.db import connection

    from bridge.mqtt import broker_from_settings, connect, make_client
    from portal.tenancy.models import Tenant
    from telemetry.formats import FormatError, parse_sensor_payload
    from telemetry.models import Reading, Sensor

    schema = Tenant.objects.get(slug=SLUG).schema_name
    connection.set_schema(schema)  # one search_path for the connection, as the real bridge's batches get
    sensor_ids = {(d, k): pk for d, k, pk in Sensor.objects.values_list("device__device_id", "key", "pk")}
    broker = broker_from_settings(args.url, "5")
    client = make_client(broker, args.client_id, persistent=True)  # auto-ack: paho acks when on_message returns

    def on_connect(client, userdata, flags, reason_code, properties):
        print(f"connected {time.time()}", flush=True)  # the queued messages start flowing now
        client.subscribe(f"tenants/{SLUG}/devices/+/sensors/+", qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        print("ready", flush=True)

    def on_message(client, userdata, message):
        parts = message.topic.split("/")
        try:
            reading = parse_sensor_payload(
                message.payload, parts[3], parts[5], topic=message.topic, now=datetime.now(UTC)
            )
        except FormatError:
            return
        Reading.objects.create(
            sensor_id=sensor_ids[(reading.device, reading.sensor)], ts=reading.ts, value=reading.value
        )

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    connect(client, broker, persistent=True)
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    client.loop_forever()


# --- the orchestrating process ------------------------------------------------------------------


def naive_connected_at(process: subprocess.Popen) -> float:
    """When the naive bridge connected, as it printed (after it was stopped)."""
    out, _ = process.communicate(timeout=10)
    return float([line for line in out.splitlines() if line.startswith("connected ")][-1].split()[1])


def cpu_of(pid: int) -> float | None:
    """utime + stime of a process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all cores, all processes, the kernel) since boot."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICK  # less idle and iowait


def wait_for_quiet(most: float, limit: float = 0.3) -> float:
    """Wait (at most `most` s) until other work on the machine busies under `limit` cores; returns the last load."""
    deadline = time.monotonic() + most
    while True:
        before = machine_busy()
        time.sleep(1)
        load = machine_busy() - before
        if load < limit or time.monotonic() > deadline:
            return load


class CpuMeter:
    """CPU seconds of the bench's processes, of PostgreSQL's backends on the bench database, and of
    whatever else ran on the machine meanwhile (other people's work, kernel time nobody is billed for)."""

    def __init__(self, poll_conn, pids: dict[str, int]):
        self.conn, self.pids = poll_conn, pids
        self.base, self.last = {}, {}

    def backends(self) -> dict[int, str]:
        rows = self.conn.execute(
            "SELECT pid, CASE WHEN datname IS NULL THEN 'other' ELSE 'db' END FROM pg_stat_activity "
            "WHERE (datname = current_database() OR datname IS NULL) AND pid <> pg_backend_pid()"
        ).fetchall()
        return {pid: f"pg:{kind}:{pid}" for pid, kind in rows}

    def start(self) -> None:
        self.base, self.last = {}, {}
        self.pids.setdefault("self_pg", self.conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        for name, pid in self.pids.items():
            self.base[name] = self.last[name] = cpu_of(pid) or 0.0
        for pid, name in self.backends().items():
            self.base[name] = self.last[name] = cpu_of(pid) or 0.0
        self.base["self"] = self.last["self"] = time.process_time()
        self.base["machine"] = self.last["machine"] = machine_busy()

    def sample(self) -> None:
        for name, pid in self.pids.items():
            value = cpu_of(pid)
            if value is not None:
                self.last[name] = value
        for pid, name in self.backends().items():
            value = cpu_of(pid)
            if value is not None:
                self.base.setdefault(name, 0.0)  # a backend started during the run
                self.last[name] = value
        self.last["self"] = time.process_time()
        self.last["machine"] = machine_busy()

    def used(self, **reported: float) -> dict[str, float]:
        """CPU seconds by process since start(); `reported`: what subprocesses said they used."""
        totals: dict[str, float] = dict(reported)
        for name, value in self.last.items():
            key = name.rsplit(":", 1)[0] if name.startswith("pg:") else name
            totals[key] = totals.get(key, 0.0) + value - self.base[name]
        machine = totals.pop("machine")
        totals["self"] = totals.get("self", 0.0) + totals.pop("self_pg", 0.0)  # the poll's backend is the poller's too
        totals["other"] = max(0.0, machine - sum(totals.values()))
        return totals


def cpu_line(used: dict[str, float], wall: float) -> str:
    names = {"pg:db": "postgres", "pg:other": "postgres_aux", "self": "bench_poller", "other": "not_ours"}
    return (
        ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in sorted(used.items()))
        + f" (of {CORES * wall:.1f} CPU s in {wall:.1f} s on {CORES} cores)"
    )


class Bench:
    def __init__(self, args):
        self.args = args
        self.processes: list[subprocess.Popen] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="fieldwatch-bridgebench-"))
        self.figures: list[tuple[str, float, str, str]] = []
        self.log_lines: list[str] = []

    # --- infrastructure -----------------------------------------------------------------------
    def spawn(self, argv, **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(argv, cwd=ROOT, **kwargs)
        self.processes.append(process)
        return process

    def start_mosquitto(self) -> None:
        import shutil
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = (ROOT / "bridge" / "mosquitto.conf").read_text()
        config = config.replace("listener 1883", f"listener {self.port} 127.0.0.1")
        data = self.tmp / "mosquitto"
        data.mkdir()
        data.chmod(0o777)  # mosquitto started as root drops to its own user before it saves its database there
        self.tmp.chmod(0o755)  # … and must reach its dynamic-security file in there
        config = config.replace("persistence_location /mosquitto/data/", f"persistence_location {data}/")
        # as deployed: anonymous access off, the dynamic security plugin deciding every client's
        # access (its admin made by `mosquitto_ctrl dynsec init`, the bridge's user applied as
        # `manage.py mqtt_sync` does); every client of the bench connects as the bridge's user
        plugin = next(
            (str(path) for path in Path("/usr/lib").glob("**/mosquitto_dynamic_security.so")),
            "mosquitto_dynamic_security.so",
        )
        state = data / "dynamic-security.json"
        config = config.replace("/usr/lib/mosquitto_dynamic_security.so", plugin)
        config = config.replace("/mosquitto/data/dynamic-security.json", str(state))
        (self.tmp / "mosquitto.conf").write_text(config)
        secret = secrets.token_hex(16)
        subprocess.run(
            ["mosquitto_ctrl", "dynsec", "init", str(state), "admin", f"admin-{secret}"],
            check=True,
            capture_output=True,
        )
        state.chmod(0o666)
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        log = open(self.tmp / "mosquitto.log", "ab")  # noqa: SIM115 (the broker's, for the run)
        self.mosquitto = self.spawn([binary, "-c", str(self.tmp / "mosquitto.conf")], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.mosquitto.poll() is not None:
                    tail = (self.tmp / "mosquitto.log").read_text(errors="replace")[-500:]
                    raise RuntimeError(f"mosquitto did not start: {tail}") from None
                time.sleep(0.05)
        from portal.devices.broker import DynamicSecurity, bridge_commands

        self.credentials = ("fieldwatch-bridge", f"bridge-{secret}")
        self.url = f"mqtt://{self.credentials[0]}:{self.credentials[1]}@127.0.0.1:{self.port}"
        DynamicSecurity(f"mqtt://admin:admin-{secret}@127.0.0.1:{self.port}").run(bridge_commands(self.url))

    def forget_session(self, client_id: str) -> None:
        """Drop a persistent session (and the messages the broker queues for it) after its client left."""
        from paho.mqtt.client import CallbackAPIVersion, Client, MQTTProtocolVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
        client.username_pw_set(*self.credentials)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 0
        client.connect("127.0.0.1", self.port, clean_start=True, properties=properties)
        client.loop_start()
        deadline = time.monotonic() + 5
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        client.disconnect()
        client.loop_stop()

    def python(self, *argv: str) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), *argv]

    def start_publisher(
        self, kind: str, qos: int = 1, seconds: float = 0, max_messages: int = 10**9, rate: float = 0, base: float = 0
    ) -> subprocess.Popen:
        argv = self.python(
            "--role",
            "publish",
            "--url",
            self.url,
            "--kind",
            kind,
            "--qos",
            str(qos),
            "--seconds",
            str(seconds or self.args.seconds),
            "--max",
            str(max_messages),
            "--rate",
            str(rate),
            "--base",
            str(base),
            "--client-id",
            f"bench-pub-{time.monotonic_ns()}",
            "--inflight",
            str(self.args.inflight),
        )
        return self.spawn(argv, stdout=subprocess.PIPE, text=True)

    @staticmethod
    def result_of(process: subprocess.Popen, timeout: float = 120) -> dict:
        out, _ = process.communicate(timeout=timeout)
        if process.returncode:
            raise RuntimeError(f"{process.args[3]} failed with {process.returncode}")
        return json.loads(out.strip().splitlines()[-1])

    def wait_line(self, process: subprocess.Popen, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if text in line:
                return
            if not line and process.poll() is not None:
                break
        raise RuntimeError(f"{process.args} never said {text!r}")

    def consumer_env(self) -> dict:
        """The real and the naive bridge run alike: DEBUG off (no query log), as in production."""
        secret = "bench-" + os.urandom(24).hex()
        return os.environ | {"MQTT_URL": self.url, "DEBUG": "0", "SECRET_KEY": secret, "PYTHONUNBUFFERED": "1"}

    def start_bridge(self, client_id: str, *extra: str, wait: bool = True) -> tuple[subprocess.Popen, Path]:
        log_path = self.tmp / f"{client_id}.log"
        with open(log_path, "ab") as log:
            process = self.spawn(
                [sys.executable, "manage.py", "bridge", "--client-id", client_id, *extra],
                env=self.consumer_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while wait and b"subscribed to" not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bridge did not subscribe: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        return process, log_path

    def stop(self, process: subprocess.Popen, client_id: str | None = None, sig=signal.SIGTERM) -> None:
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if client_id:
            self.forget_session(client_id)

    def stop_bridge(self, process, log_path: Path, client_id: str) -> None:
        self.stop(process, client_id)
        stats = [
            line
            for line in log_path.read_text().splitlines()
            if f"bridge {client_id}:" in line and " 0 msg/s" not in line
        ]
        self.log_lines += [f"  {line.split(' INFO ', 1)[-1]}" for line in stats]

    def cleanup(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.kill()
                process.wait()
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- the database -------------------------------------------------------------------------
    def setup_tenant(self) -> None:
        import psycopg
        from django.conf import settings
        from django_tenants.utils import schema_context

        from portal.tenancy.models import Tenant
        from portal.tenancy.provisioning import create_tenant
        from telemetry.models import Device, Sensor

        for tenant in Tenant.objects.filter(slug=SLUG):  # left behind by a run that was killed
            tenant.delete(force_drop=True)
        self.tenant = create_tenant("Bench Bridge", SLUG)
        with schema_context(self.tenant.schema_name):
            # the sensors exist, as in steady state: the runs measure readings, not first sight
            devices = Device.objects.bulk_create(
                [Device(device_id=f"d{d}") for d in range(SINGLE_DEVICES)]
                + [Device(device_id=f"p{d}") for d in range(PACK_DEVICES)]
            )
            Sensor.objects.bulk_create(
                [
                    Sensor(device=device, key=f"s{s}")
                    for device in devices[:SINGLE_DEVICES]
                    for s in range(SINGLE_SENSORS)
                ]
                + [Sensor(device=device, key=f"s{s}") for device in devices[SINGLE_DEVICES:] for s in range(PACK_SIZE)]
            )
            self.sensor_ids = {(d, k): pk for d, k, pk in Sensor.objects.values_list("device__device_id", "key", "pk")}
        self.sampled_sensors = [pk for (d, _), pk in self.sensor_ids.items() if d == "d0"]
        self.poll = psycopg.connect(settings.DATABASE_URL, autocommit=True)
        self.poll.execute(f'SET search_path TO "{self.tenant.schema_name}"')
        self.poll.execute("SET enable_seqscan = off")  # the polls read a few rows, by primary key

    def truncate(self) -> None:
        self.poll.execute("TRUNCATE telemetry_reading, telemetry_dirtyhour")

    def drop_tenant(self) -> None:
        from portal.tenancy.models import Tenant

        if getattr(self, "poll", None) is not None:
            self.poll.close()
        for tenant in Tenant.objects.filter(slug=SLUG):
            tenant.delete(force_drop=True)

    # --- measuring ----------------------------------------------------------------------------
    def follow(
        self,
        publisher: subprocess.Popen,
        kind: str,
        base: float,
        *,
        latency: bool = False,
        cpu: CpuMeter | None = None,
        timeout: float = 120,
    ):
        """Until everything published is committed, without counting rows all along (counting a
        growing table 20 times a second takes CPU from the bridge it measures): once the publisher
        is done, probe by primary key for the last reading of each of the last 20 messages. Each
        bridge commits its share in publish order, so when those are in, all are; one count confirms.

        latency: one bridge only. Every 50 ms, read the values (publish times) of the rows newly
        committed for device d0's sensors, a 10% sample of the messages spread over the run."""
        per_message = 1 if kind == "single" else PACK_SIZE
        hi, latencies, published, probes, started = datetime(1970, 1, 1, tzinfo=UTC), [], None, None, time.time()
        if cpu:
            cpu.start()
        next_cpu = time.monotonic() + 1
        while True:
            time.sleep(0.05)
            if latency:
                newest, values = self.poll.execute(
                    "SELECT max(ts), array_agg(value) FROM telemetry_reading WHERE sensor_id = ANY(%s) AND ts > %s",
                    [self.sampled_sensors, hi],
                ).fetchone()
                now = time.time()
                if newest:
                    hi = newest
                    latencies += [now - v for v in values]
            if cpu and time.monotonic() >= next_cpu:
                cpu.sample()
                next_cpu = time.monotonic() + 1
            now = time.time()
            if now - started > timeout:
                raise RuntimeError(f"not everything published was committed within {timeout} s")
            if published is None:
                if publisher.poll() is None:
                    continue
                published = self.result_of(publisher)
                probes = self.last_readings(kind, base, published["sent"])
            found = self.poll.execute(
                "SELECT count(*) FROM telemetry_reading JOIN unnest(%s::bigint[], %s::timestamptz[]) AS p(sensor_id, ts) "
                "USING (sensor_id, ts)",
                probes,
            ).fetchone()[0]
            if found == len(probes[0]):
                now = time.time()
                with self.poll.transaction():
                    self.poll.execute("SET LOCAL enable_seqscan = on")  # counting every row: a scan is cheapest
                    total = self.poll.execute("SELECT count(*) FROM telemetry_reading").fetchone()[0]
                if total >= published["sent"] * per_message:
                    if cpu:
                        cpu.sample()
                    return total, now - published["first"], published, latencies

    def last_readings(self, kind: str, base: float, sent: int) -> tuple[list[int], list[datetime]]:
        """(sensor ids, timestamps) of the last reading of each of the last 20 messages, exactly as
        the bridge will store them (the publisher derives them from the same float `base`)."""
        messages = range(max(0, sent - 20), sent)
        if kind == "single":
            start = datetime.fromtimestamp(base, UTC)
            return (
                [
                    self.sensor_ids[f"d{n % SINGLE_DEVICES}", f"s{n // SINGLE_DEVICES % SINGLE_SENSORS}"]
                    for n in messages
                ],
                [start + timedelta(milliseconds=n) for n in messages],
            )
        # SenML: bt + t, added as parse_senml adds them
        return (
            [self.sensor_ids[f"p{n % PACK_DEVICES}", f"s{PACK_SIZE - 1}"] for n in messages],
            [datetime.fromtimestamp((base + n) + (PACK_SIZE - 1) / 1000, tz=UTC) for n in messages],
        )

    def figure(self, name: str, value: float, unit: str, goal) -> None:
        self.figures.append((name, value, unit, goal))

    # --- the runs -----------------------------------------------------------------------------
    def ceiling(self, qos: int, seconds: float, max_messages: int) -> float:
        client_id = f"bench-counter-q{qos}-{time.monotonic_ns()}"
        counter = self.spawn(
            self.python("--role", "count", "--url", self.url, "--client-id", client_id),
            stdout=subprocess.PIPE,
            text=True,
        )
        self.wait_line(counter, "ready")
        cpu = CpuMeter(self.poll, {"mosquitto": self.mosquitto.pid})
        cpu.start()
        publisher = self.start_publisher("single", qos=qos, seconds=seconds, max_messages=max_messages, base=self.base)
        published = self.result_of(publisher)
        counted = self.result_of(counter)
        cpu.sample()
        self.forget_session(client_id)
        wall = counted["last"] - published["first"]
        rate = counted["count"] / wall
        publish_rate = published["sent"] / (published["last"] - published["first"])
        used = cpu.used(publisher=published["cpu"], subscriber=counted["cpu"])
        print(
            f"ceiling QoS {qos}: {published['sent']} published ({publish_rate:.0f}/s into paho), {counted['count']} received: "
            f"{rate:.0f} msg/s published → received"
        )
        print(f"  CPU s: {cpu_line(used, wall)}")
        return rate

    def single_bridge(self, paced: bool) -> dict:
        self.truncate()
        client_id = f"bench-bridge-{time.monotonic_ns()}"
        bridge, log_path = self.start_bridge(client_id, "--url", self.url)
        cpu = CpuMeter(self.poll, {"bridge": bridge.pid, "mosquitto": self.mosquitto.pid})
        publisher = self.start_publisher("single", base=self.base)
        total, elapsed, published, latencies = self.follow(publisher, "single", self.base, latency=True, cpu=cpu)
        rate = total / elapsed
        used = cpu.used(publisher=published["cpu"])
        quantiles = statistics.quantiles(latencies, n=100)
        result = {
            "rate": rate,
            "cpu": used,
            "p50": quantiles[49] * 1000,
            "p99": quantiles[98] * 1000,
            "messages": total,
        }
        print(f"bridge: {total} of {published['sent']} messages committed in {elapsed:.2f} s: {rate:.0f} msg/s")
        print(f"  CPU s: {cpu_line(used, elapsed)}; bridge {used['bridge'] / max(total, 1) * 1e6:.0f} µs/message")
        print(
            f"  latency publish → commit seen: p50 {result['p50']:.0f} ms, p99 {result['p99']:.0f} ms "
            f"(saturated: includes the wait in the publisher's own paho queue and the broker's backlog)"
        )
        if paced:
            # the same bridge at half that rate: the latency of a bridge that keeps up
            self.truncate()  # the bridge holds nothing now: every message was committed
            publisher = self.start_publisher("single", seconds=5, rate=rate / 2, base=self.base + 3600)
            total, _, _, latencies = self.follow(publisher, "single", self.base + 3600, latency=True)
            quantiles = statistics.quantiles(latencies, n=100)
            result["paced"] = (rate / 2, quantiles[49] * 1000, quantiles[98] * 1000)
            print(
                f"  paced at {rate / 2:.0f} msg/s: {total} committed, latency p50 {quantiles[49] * 1000:.0f} ms, "
                f"p99 {quantiles[98] * 1000:.0f} ms (bridge --max-age 0.2; commits seen by a 50 ms poll)"
            )
        self.stop_bridge(bridge, log_path, client_id)
        return result

    def catch_up(self, kind: str, messages: int, window: float | None = None) -> float:
        """A consumer's own speed, with no publisher competing for CPU: it subscribes, goes away
        (its persistent session stays), `messages` are published meanwhile, and it comes back and
        drains them. Both clocks start when the consumer connects (the queued messages flow from
        then on) and stop at the last commit seen (or after `window` seconds of commits)."""
        self.truncate()
        client_id = f"bench-{kind}-{time.monotonic_ns()}"
        log_path = self.tmp / f"{client_id}.log"
        if kind == "bridge":

            def start(wait: bool = True):
                return self.start_bridge(client_id, "--url", self.url, wait=wait)[0]
        else:

            def start(wait: bool = True):
                process = self.spawn(
                    self.python("--role", "naive", "--url", self.url, "--client-id", client_id),
                    stdout=subprocess.PIPE,
                    text=True,
                    env=self.consumer_env(),
                )
                if wait:
                    self.wait_line(process, "ready", timeout=30)
                return process

        self.stop(start())  # subscribed; its session now keeps what is published
        published = self.result_of(self.start_publisher("single", seconds=60, max_messages=messages, base=self.base))
        cpu_before = None
        consumer = start(wait=False)
        first, total, hi, started = None, 0, datetime(1970, 1, 1, tzinfo=UTC), time.time()
        while True:
            time.sleep(0.05)
            count, newest = self.poll.execute(
                "SELECT count(*), max(ts) FROM telemetry_reading WHERE ts > %s", [hi]
            ).fetchone()
            now = time.time()
            if count:
                total, hi = total + count, newest
            if first is None and total:
                first, cpu_before = now, cpu_of(consumer.pid)
            if first and (total >= published["sent"] or (window and now - first >= window)):
                break
            if now - started > 90:
                if first is None:
                    raise RuntimeError(f"the {kind} committed nothing in 90 s")
                print(f"  ! timed out: {total} of {published['sent']} committed")
                break
        cpu = (cpu_of(consumer.pid) or 0) - (cpu_before or 0)
        self.stop(consumer, client_id, signal.SIGTERM if kind == "bridge" else signal.SIGKILL)
        connected = self.connected_at(log_path) if kind == "bridge" else naive_connected_at(consumer)
        rate = total / (now - connected)
        print(
            f"{kind} catching up on {published['sent']} queued messages: {total} committed in {now - connected:.2f} s "
            f"from its connection ({first - connected:.2f} s to the first commit): {rate:.0f} msg/s, "
            f"{cpu / max(total, 1) * 1e6:.0f} µs CPU/message after the first commit"
        )
        return rate

    @staticmethod
    def connected_at(log_path: Path) -> float:
        """When the bridge last connected, from its log line's time (local time, milliseconds)."""
        line = [line for line in log_path.read_text().splitlines() if " connected to " in line][-1]
        stamp, millis = line[:23].split(",")
        return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000

    def share_group(self) -> float:
        self.truncate()
        ids = [f"bench-share-a-{time.monotonic_ns()}", f"bench-share-b-{time.monotonic_ns()}"]
        bridges = [self.start_bridge(client_id, "--url", self.url, "--share-group", "bench") for client_id in ids]
        time.sleep(1)
        cpu = CpuMeter(
            self.poll, {"bridge_a": bridges[0][0].pid, "bridge_b": bridges[1][0].pid, "mosquitto": self.mosquitto.pid}
        )
        publisher = self.start_publisher("single", base=self.base)
        total, elapsed, published, _ = self.follow(publisher, "single", self.base, cpu=cpu)
        for (bridge, log_path), client_id in zip(bridges, ids, strict=True):
            self.stop_bridge(bridge, log_path, client_id)
        rate = total / elapsed
        print(
            f"two bridges in a share group: {total} of {published['sent']} committed in {elapsed:.2f} s: {rate:.0f} msg/s"
        )
        print(f"  CPU s: {cpu_line(cpu.used(publisher=published['cpu']), elapsed)}")
        return rate

    def batched(self, bridges: int = 1) -> float:
        self.truncate()
        ids = [f"bench-packs-{n}-{time.monotonic_ns()}" for n in range(bridges)]
        extra = ("--share-group", "bench") if bridges > 1 else ()
        started = [self.start_bridge(client_id, "--url", self.url, *extra) for client_id in ids]
        if bridges > 1:
            time.sleep(1)
        names = ["bridge"] if bridges == 1 else [f"bridge_{chr(97 + n)}" for n in range(bridges)]
        cpu = CpuMeter(
            self.poll,
            {name: process.pid for name, (process, _) in zip(names, started, strict=True)}
            | {"mosquitto": self.mosquitto.pid},
        )
        base = self.base - 4 * 3600
        publisher = self.start_publisher("senml", seconds=self.args.seconds, max_messages=self.args.packs, base=base)
        total, elapsed, published, _ = self.follow(publisher, "senml", base, cpu=cpu)
        for (process, log_path), client_id in zip(started, ids, strict=True):
            self.stop_bridge(process, log_path, client_id)
        rate = total / elapsed
        used = cpu.used(publisher=published["cpu"])
        bridge_cpu = sum(used[name] for name in names)
        # lost: published readings not stored; duplicated: readings the bridges stored (or found
        # stored) beyond one per published reading, i.e. a message that went to both
        expected = published["sent"] * PACK_SIZE
        delivered = sum(self.bridge_totals(client_id)["readings"] for client_id in ids)
        self.batched_checks.append((max(0, expected - total), max(0, delivered - expected)))
        print(
            f"SenML packs of {PACK_SIZE}, {'one bridge' if bridges == 1 else f'{bridges} bridges in a share group'}: "
            f"{published['sent']} messages, {total} readings committed in {elapsed:.2f} s: {rate:.0f} readings/s ({rate / PACK_SIZE:.0f} msg/s)"
        )
        print(
            f"  CPU s: {cpu_line(used, elapsed)}; bridge {bridge_cpu / max(total, 1) * 1e6:.1f} µs/reading, "
            f"postgres {used.get('pg:db', 0) / max(total, 1) * 1e6:.1f} µs/reading"
        )
        return rate

    @staticmethod
    def bridge_totals(client_id: str) -> dict:
        """The totals a bridge wrote in its last heartbeat (it beats once more as it stops)."""
        from portal.core.models import ProcessHeartbeat

        return ProcessHeartbeat.objects.get(name=f"bridge:{client_id}").stats

    def quiet(self, most: float) -> None:
        load = wait_for_quiet(most)
        print(f"-- other work on the machine: {load:.2f} cores busy before this round")

    def run(self) -> None:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        self.base = time.time() - 3 * 3600  # readings a few hours old: within retention, never in the future
        self.setup_tenant()
        self.start_mosquitto()
        started = time.monotonic()
        ceilings, singles, shares, packs_runs, packs_shared_runs = [], [], [], [], []
        self.batched_checks: list[tuple[int, int]] = []
        for round_ in range(self.args.rounds):  # the contenders take turns; each keeps its best round
            self.quiet(self.args.wait_quiet)
            ceilings.append(self.ceiling(1, self.args.seconds, 10**9))
            singles.append(self.single_bridge(paced=round_ == 0))
            shares.append(self.share_group())
            packs_runs.append(self.batched())
            packs_shared_runs.append(self.batched(bridges=2))
        self.quiet(self.args.wait_quiet / 2)
        qos0 = self.ceiling(0, min(self.args.seconds, 8), 150_000)
        catch_up = self.catch_up("bridge", 30_000)
        naive = self.catch_up("naive", 10_000, window=5)
        packs, packs_shared = max(packs_runs), max(packs_shared_runs)
        print(
            "rounds, SenML readings/s: one bridge "
            + ", ".join(f"{r:.0f}" for r in packs_runs)
            + "; two in a share group "
            + ", ".join(f"{r:.0f}" for r in packs_shared_runs)
        )
        print("bridge log (per 5 s):")
        print("\n".join(self.log_lines))
        print(f"bench took {time.monotonic() - started:.0f} s")

        ceiling = max(ceilings)
        best = max(singles, key=lambda r: r["rate"])
        bridge, shared = best["rate"], max(shares)
        print(
            "rounds: ceiling "
            + ", ".join(f"{c:.0f}" for c in ceilings)
            + "; bridge "
            + ", ".join(f"{r['rate']:.0f}" for r in singles)
            + "; share group "
            + ", ".join(f"{r:.0f}" for r in shares)
            + " msg/s"
        )
        self.figure("ceiling_qos1", ceiling, "msg/s", "-")
        self.figure("ceiling_qos0", qos0, "msg/s", "-")
        self.figure("bridge_rate", bridge, "msg/s", "-")
        self.figure("bridge_vs_ceiling", bridge / ceiling * 100, "percent", 80)
        self.figure("bridge_catch_up_rate", catch_up, "msg/s", "-")
        self.figure("naive_rate", naive, "msg/s", "-")
        self.figure("bridge_vs_naive", catch_up / naive, "x", 10)
        self.figure("bridge_vs_naive_live", bridge / naive, "x", "-")
        self.figure("share_group_rate", shared, "msg/s", "-")
        # single-reading messages: capped by the Python publisher on two cores, context only
        self.figure("share_group_speedup", shared / bridge, "x", "-")
        self.figure("bridge_batched_rate", packs, "readings/s", 100000)
        self.figure("share_group_batched_rate", packs_shared, "readings/s", "-")
        self.figure("share_group_batched_speedup", packs_shared / packs, "x", 1.5)
        self.figure("batched_lost", sum(lost for lost, _ in self.batched_checks), "readings", 0)
        self.figure("batched_duplicated", sum(dup for _, dup in self.batched_checks), "readings", 0)
        self.figure("bridge_latency_p50", best["p50"], "ms", "-")
        self.figure("bridge_latency_p99", best["p99"], "ms", "-")
        paced = singles[0]["paced"]
        self.figure("bridge_latency_paced_p50", paced[1], "ms", "-")
        self.figure("bridge_latency_paced_p99", paced[2], "ms", "-")
        used = best["cpu"]
        for name, label in [
            ("bridge", "bridge"),
            ("mosquitto", "mosquitto"),
            ("pg:db", "postgres"),
            ("pg:other", "postgres_aux"),
            ("publisher", "publisher"),
            ("self", "bench_poller"),
            ("other", "not_ours"),
        ]:
            self.figure(f"cpu_{label}", used.get(name, 0.0), "s", "-")
        self.figure("cpu_bridge_per_message", used["bridge"] / best["messages"] * 1e6, "µs", "-")
        for name, value, unit, goal in self.figures:
            print(f"figure {name} {value:.{2 if value < 100 else 0}f} {unit} goal {goal}")


def main() -> None:
    use_bench_database("bridgebench")  # the roles it starts inherit DATABASE_URL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="seconds of publishing per phase")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds of ceiling / bridge / share group; each keeps its best"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=20,
        help="before each round, wait up to this many seconds for other work on the machine to calm down",
    )
    parser.add_argument("--packs", type=int, default=6000, help="at most this many SenML packs in a batched run")
    parser.add_argument(
        "--inflight",
        type=int,
        default=100,
        help="the publisher's paho max_inflight_messages: paho scans the in-flight messages on every "
        "PUBACK, so 1000 (as in the tests) costs the publisher ~2.5x the CPU per message of 50-200",
    )
    parser.add_argument("--role", choices=["main", "publish", "count", "naive"], default="main", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--client-id", help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="single", help=argparse.SUPPRESS)
    parser.add_argument("--qos", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--max", type=int, default=10**9, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--base", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--idle", type=float, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=120, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role != "main":
        {"publish": role_publish, "count": role_count, "naive": role_naive}[args.role](args)
        return

    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below on a plain kill too
    try:
        bench.run()
    finally:
        bench.cleanup()
        bench.drop_tenant()


if __name__ == "__main__":
    main()

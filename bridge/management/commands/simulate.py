"""`manage.py simulate`: live telemetry for the demo tenants' assets, over MQTT, so charts move,
and simulated locks that answer commands, report status and battery and accept synced codes
(bridge/simlock.py), sometimes failing or jamming (--lock-failures) so the demo shows every state.

Each device bound to an asset publishes SenML for its sensors on its asset's topic, with values
following the same daily cycle as the demo history. Bounded by --duration; paced to --rate
messages per second; every publish is checked (bridge/publish.py).
"""

import json
import math
import random
import signal
import time

from django.core.management.base import BaseCommand
from django.utils import timezone
from django_tenants.utils import schema_context

from bridge.mqtt import broker_from_settings, connect, make_client
from bridge.publish import Publisher
from bridge.simlock import SimLock, SimulatedLocks
from portal.facilities.demo import SENSOR_KINDS
from portal.facilities.models import DeviceBinding
from portal.tenancy.models import Tenant

LOCK_REPORT_SECONDS = 30  # each simulated lock's status and heartbeat


class Command(BaseCommand):
    help = "Publish simulated telemetry for the demo tenants' assets."

    def add_arguments(self, parser):
        parser.add_argument("--tenants", default="acme,globex", help="comma-separated tenant slugs")
        parser.add_argument("--rate", type=float, default=2.0, help="messages per second, all devices together")
        parser.add_argument("--devices", type=int, default=50, help="at most this many devices")
        parser.add_argument(
            "--duration", type=float, default=3600.0, help="stop after this many seconds (at most a day)"
        )
        parser.add_argument("--url", help="broker URL (default: MQTT_URL)")
        parser.add_argument(
            "--lock-failures",
            type=float,
            default=0.05,
            help="share of lock commands that fail, and of unlocks that jam",
        )
        parser.add_argument(
            "--web",
            default="http://127.0.0.1:8000",
            help="the web process, for simulated counting devices (seed 003's HTTP device API); '' for none",
        )
        parser.add_argument(
            "--no-incidents", action="store_true", help="never drive a chiller out of range or silent (see Incidents)"
        )

    def handle(self, *args, **options):
        duration = min(options["duration"], 86400)
        slugs = options["tenants"].split(",")
        targets = self.targets(slugs)[: options["devices"]]
        sim_locks = self.locks(slugs)
        if not targets and not sim_locks:
            self.stderr.write(
                "no devices bound to assets and no locks in these tenants: run `manage.py seed_demo` first"
            )
            return
        self.stop = False
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        broker = broker_from_settings(options["url"])
        client = make_client(broker, f"fieldwatch-simulator-{random.randrange(1 << 30)}", persistent=False)  # noqa: S311
        rate = options["lock_failures"]
        locks = SimulatedLocks(client, sim_locks, delay=0.1, failure_rate=rate, jam_rate=rate)
        client.on_connect = lambda *args: locks.subscribe()
        client.on_message = locks.on_message
        client.on_subscribe = locks.on_subscribe
        connect(client, broker, persistent=False)
        client.loop_start()
        # a lock that boots subscribes to its commands before it reports (its first status tells
        # the portal it is back, which sends again what it missed: portal.locks.topics.resend_on_return)
        if sim_locks and not locks.subscribed.wait(30):
            self.stderr.write("the simulated locks did not get their subscription acknowledged in 30 s")
        publisher = Publisher(client)
        interval = 1.0 / max(options["rate"], 0.01)
        started = time.monotonic()
        self.stdout.write(
            f"simulating {len(targets)} devices at {options['rate']} msg/s and {len(sim_locks)} locks for {duration:.0f}s"
        )
        n = 0
        incidents = Incidents(enabled=not options["no_incidents"])
        next_lock_report = time.monotonic()
        counters = self.counters(options["web"], slugs)
        while not self.stop and time.monotonic() - started < duration:
            if sim_locks and time.monotonic() >= next_lock_report:
                locks.report_all(started)
                next_lock_report = time.monotonic() + LOCK_REPORT_SECONDS
            if not targets:
                time.sleep(0.5)
                continue
            topic, device_id, sensors = targets[n % len(targets)]
            n += 1
            if counters and n % 4 == 0:  # a quarter of the pace goes to the counting devices
                counters[n % len(counters)].step()
            if incidents.silent(device_id):
                continue
            publisher.publish(topic, self.senml(device_id, sensors, incidents.offset(device_id)), qos=1)
            time.sleep(max(0.0, started + n * interval - time.monotonic()))
        publisher.settle()
        client.disconnect()
        client.loop_stop()
        self.stdout.write(f"published {publisher.sent} messages")
        for simulator in counters:
            self.stdout.write(f"counting devices: {simulator.sent} requests answered, {simulator.failed} failed")

    def counters(self, web: str, slugs) -> list:
        """Counting-device simulators for the tenants that have counting devices (globex's outlets)."""
        if not web:
            return []
        from portal.outlets.simulator import CounterSimulator

        simulators = [CounterSimulator(web, tenant.slug) for tenant in Tenant.objects.active().filter(slug__in=slugs)]
        return [simulator for simulator in simulators if simulator.devices]

    def targets(self, slugs):
        targets = []
        for tenant in Tenant.objects.active().filter(slug__in=slugs):
            with schema_context(tenant.schema_name):
                bindings = DeviceBinding.objects.select_related("asset__site", "device").prefetch_related(
                    "device__sensors"
                )
                for binding in bindings:
                    sensors = [s.key for s in binding.device.sensors.all() if s.key in SENSOR_KINDS]
                    if sensors:
                        topic = f"tenants/{tenant.slug}/sites/{binding.asset.site.name}/assets/{binding.asset.tag}/telemetry"
                        targets.append((topic, binding.device.device_id, sensors))
        return targets

    def locks(self, slugs) -> list[SimLock]:
        from portal.locks.models import Lock

        found = []
        for tenant in Tenant.objects.active().filter(slug__in=slugs):
            with schema_context(tenant.schema_name):
                for lock in Lock.objects.select_related("device"):
                    base = SimulatedLocks.base_for(lock.protocol, tenant.slug, lock.lock_id)
                    found.append(
                        SimLock(
                            lock.lock_id,
                            base,
                            status=lock.status if lock.status in ("locked", "unlocked") else "locked",
                        )
                    )
        return found

    @staticmethod
    def senml(device_id: str, sensors: list[str], offsets=None) -> str:
        now = timezone.now()
        phase = (now.hour + now.minute / 60) / 24 * 2 * math.pi
        records = [{"bn": device_id, "bt": round(now.timestamp(), 3)}]
        for key in sensors:
            _, unit, _, base, swing, noise, *_ = SENSOR_KINDS[key]
            value = base + swing * math.sin(phase - math.pi / 2) + random.gauss(0, noise)
            value += (offsets or {}).get(key, 0.0)
            records.append({"n": key, "u": unit, "v": round(value, 2)})
        return json.dumps(records)

    def on_signal(self, signum, frame):
        self.stop = True


class Incidents:
    """Trouble on a fixed 30-minute cycle, so the demo's alert rules open and resolve alerts.

    Minutes 5–9 of every half hour the main chillers' supply water runs 8 °C warm (above the
    demo's 10 °C rule, inside the sensor's range); minutes 15–28 their gateway is silent, longer
    than the online window, so the offline rule fires and resolves when it reports again.
    """

    CHILLERS = ("acme-gw-01", "globex-gw-01")
    WARM = {"supply_temp": 8.0, "room_temp": 4.0}

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def minute(self) -> int:
        return int(time.time() // 60) % 30

    def silent(self, device_id: str) -> bool:
        return self.enabled and device_id in self.CHILLERS and 15 <= self.minute() < 28

    def offset(self, device_id: str) -> dict:
        if self.enabled and device_id in self.CHILLERS and 5 <= self.minute() < 10:
            return self.WARM
        return {}

"""`manage.py simulate`: live telemetry for the demo tenants' assets, over MQTT, so charts move.

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
from portal.facilities.demo import SENSOR_KINDS
from portal.facilities.models import DeviceBinding
from portal.tenancy.models import Tenant


class Command(BaseCommand):
    help = "Publish simulated telemetry for the demo tenants' assets."

    def add_arguments(self, parser):
        parser.add_argument("--tenants", default="acme,globex", help="comma-separated tenant slugs")
        parser.add_argument("--rate", type=float, default=2.0, help="messages per second, all devices together")
        parser.add_argument("--devices", type=int, default=50, help="at most this many devices")
        parser.add_argument("--duration", type=float, default=3600.0, help="stop after this many seconds (at most a day)")
        parser.add_argument("--url", help="broker URL (default: MQTT_URL)")

    def handle(self, *args, **options):
        duration = min(options["duration"], 86400)
        targets = self.targets(options["tenants"].split(","))[: options["devices"]]
        if not targets:
            self.stderr.write("no devices bound to assets in these tenants: run `manage.py seed_demo` first")
            return
        self.stop = False
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        broker = broker_from_settings(options["url"])
        client = make_client(broker, f"fieldwatch-simulator-{random.randrange(1 << 30)}", persistent=False)
        connect(client, broker, persistent=False)
        client.loop_start()
        publisher = Publisher(client)
        interval = 1.0 / max(options["rate"], 0.01)
        started = time.monotonic()
        self.stdout.write(f"simulating {len(targets)} devices at {options['rate']} msg/s for {duration:.0f}s")
        n = 0
        while not self.stop and time.monotonic() - started < duration:
            topic, device_id, sensors = targets[n % len(targets)]
            publisher.publish(topic, self.senml(device_id, sensors), qos=1)
            n += 1
            time.sleep(max(0.0, started + n * interval - time.monotonic()))
        publisher.settle()
        client.disconnect()
        client.loop_stop()
        self.stdout.write(f"published {publisher.sent} messages")

    def targets(self, slugs):
        targets = []
        for tenant in Tenant.objects.active().filter(slug__in=slugs):
            with schema_context(tenant.schema_name):
                bindings = DeviceBinding.objects.select_related("asset__site", "device").prefetch_related("device__sensors")
                for binding in bindings:
                    sensors = [s.key for s in binding.device.sensors.all() if s.key in SENSOR_KINDS]
                    if sensors:
                        topic = f"tenants/{tenant.slug}/sites/{binding.asset.site.name}/assets/{binding.asset.tag}/telemetry"
                        targets.append((topic, binding.device.device_id, sensors))
        return targets

    @staticmethod
    def senml(device_id: str, sensors: list[str]) -> str:
        now = timezone.now()
        phase = (now.hour + now.minute / 60) / 24 * 2 * math.pi
        records = [{"bn": device_id, "bt": round(now.timestamp(), 3)}]
        for key in sensors:
            _, unit, _, base, swing, noise, *_ = SENSOR_KINDS[key]
            value = base + swing * math.sin(phase - math.pi / 2) + random.gauss(0, noise)
            records.append({"n": key, "u": unit, "v": round(value, 2)})
        return json.dumps(records)

    def on_signal(self, signum, frame):
        self.stop = True

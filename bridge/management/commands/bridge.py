"""`manage.py bridge`: MQTT telemetry into the database, loss-free (see bridge/service.py)."""

import logging
import signal
import socket
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from bridge.mqtt import broker_from_settings
from bridge.service import STATUS_EVERY, Bridge, Options

log = logging.getLogger("fieldwatch.bridge")


class Command(BaseCommand):
    help = "Run the MQTT bridge: subscribe to telemetry topics, write readings, ack after commit."

    def add_arguments(self, parser):
        parser.add_argument(
            "--client-id",
            default=f"fieldwatch-bridge-{socket.gethostname()}",
            help="stable MQTT client id: the broker keeps this client's session and queue",
        )
        parser.add_argument(
            "--share-group", default="", help="subscribe through $share/NAME/ so bridges split one stream (MQTT 5)"
        )
        parser.add_argument("--batch-size", type=int, default=5000, help="flush after this many readings")
        parser.add_argument("--max-age", type=float, default=0.2, help="flush a batch this many seconds old")
        parser.add_argument(
            "--receive-maximum", type=int, default=20000, help="unacknowledged messages the broker may send"
        )
        parser.add_argument("--url", help="broker URL (default: MQTT_URL)")
        parser.add_argument("--protocol", choices=["5", "3.1.1"], help="MQTT version (default: MQTT_PROTOCOL)")

    def handle(self, *args, **options):
        broker = broker_from_settings(options["url"], options["protocol"])
        if options["share_group"] and not broker.v5:
            raise CommandError("--share-group needs MQTT 5 (MQTT_PROTOCOL=5)")
        if options["receive_maximum"] < options["batch_size"]:
            raise CommandError(
                "--receive-maximum must cover --batch-size: the broker stops sending until a batch is acked"
            )
        self.shutdown = self.shutdown_forced = False
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        bridge = Bridge(
            broker,
            Options(
                options["client_id"],
                options["batch_size"],
                options["max_age"],
                options["share_group"],
                options["receive_maximum"],
            ),
        )
        bridge.start()
        next_report = time.monotonic() + STATUS_EVERY
        while not self.shutdown:
            bridge.step(timeout=min(bridge.options.max_age, 0.1))
            if time.monotonic() >= next_report:
                close_old_connections()
                bridge.report()
                next_report = time.monotonic() + STATUS_EVERY
        # stop taking messages; store and ack what we hold; the broker keeps the rest for us
        bridge.drain(forced=lambda: self.shutdown_forced)
        bridge.report()
        bridge.stop()
        log.info("bridge stopped: %s", bridge.totals.line())

    def on_signal(self, signum, frame):
        self.shutdown_forced = self.shutdown  # a second signal gives up on the final flush
        self.shutdown = True

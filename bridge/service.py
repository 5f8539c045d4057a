"""The bridge's work: MQTT messages in, committed readings out, acknowledged only after commit.

paho's network thread only puts each message on the inbox. The main loop takes messages into a
batch and flushes it when it holds `batch_size` readings or is `max_age` seconds old: messages are
decoded, grouped by tenant, stored in each tenant's schema (one transaction per tenant), and
only then acknowledged. A crash before the ack means the broker sends the messages again, and
the (sensor, ts) dedup of the ingest path absorbs the repeats: nothing lost, nothing doubled.
"""

import logging
import queue
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import OperationalError, close_old_connections, connection
from django.utils import timezone
from django_tenants.utils import schema_context

from bridge.mqtt import Broker, connect, make_client
from portal.core.models import ProcessHeartbeat
from portal.facilities.topics import SUBSCRIPTIONS, Message, decode, store
from portal.tenancy.models import Tenant
from telemetry.models import DeadLetter

log = logging.getLogger("fieldwatch.bridge")

TENANT_CACHE_SECONDS = 30
STATUS_EVERY = 5.0
TAKE_EVERY = 0.01  # seconds between takes from the inbox while a batch is open


@dataclass
class Options:
    client_id: str
    batch_size: int = 5000
    max_age: float = 0.2
    share_group: str = ""
    receive_maximum: int = 20000


@dataclass
class Pending:
    """A message taken from the broker and not yet acknowledged."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    generation: int  # which connection delivered it: a mid means nothing on another connection
    received: float
    message: Message | None = None


@dataclass
class Stats:
    messages: int = 0
    readings: int = 0
    dead_letters: int = 0
    batches: int = 0
    reconnects: int = 0
    errors: int = 0
    since: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        seconds = max(time.monotonic() - self.since, 1e-9)
        size = self.readings / self.batches if self.batches else 0
        return (f"{self.messages / seconds:.0f} msg/s, {self.readings / seconds:.0f} readings/s, "
                f"{size:.0f} readings/batch, {self.dead_letters} dead letters, {self.reconnects} reconnects, {self.errors} errors")


class TenantDirectory:
    """Tenant slug -> schema of an active tenant, looked up once per TENANT_CACHE_SECONDS."""

    def __init__(self):
        self.schemas: dict[str, str] = {}
        self.loaded = 0.0

    def schema_for(self, slug: str) -> str | None:
        if time.monotonic() - self.loaded > TENANT_CACHE_SECONDS:
            self.schemas = dict(Tenant.objects.active().values_list("slug", "schema_name"))
            self.loaded = time.monotonic()
        return self.schemas.get(slug)


class Bridge:
    def __init__(self, broker: Broker, options: Options):
        self.broker, self.options = broker, options
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.batch: list[Pending] = []
        self.batch_readings = 0
        self.generation = 0
        self.connected = False
        self.stats = Stats()
        self.totals = Stats()
        self.tenants = TenantDirectory()
        self.started_at = timezone.now()
        self.client = make_client(broker, options.client_id, persistent=True, manual_ack=True)
        self.client.on_connect = self.on_connect
        self.client.on_disconnect = self.on_disconnect
        self.client.on_message = self.on_message
        self.client.on_subscribe = self.on_subscribe

    # --- paho's thread ----------------------------------------------------------------------
    def on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        self.generation += 1
        self.connected = True
        prefix = f"$share/{self.options.share_group}/" if self.options.share_group else ""
        # subscribing here means a reconnect subscribes again (harmless on a kept session)
        client.subscribe([(prefix + topic, 1) for topic in SUBSCRIPTIONS])
        log.info("connected to %s:%s as %s (session %s)", self.broker.host, self.broker.port, self.options.client_id,
                 "resumed" if getattr(flags, "session_present", False) else "new")

    def on_subscribe(self, client, userdata, mid, reason_codes, properties):
        granted = [code for code in reason_codes if not code.is_failure]
        log.info("subscribed to %s of %s topics", len(granted), len(reason_codes))

    def on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected:
            self.stats.reconnects += 1
            self.totals.reconnects += 1
        self.connected = False
        log.warning("disconnected from the broker (%s); paho reconnects with backoff", reason_code)

    def on_message(self, client, userdata, message):
        self.inbox.put(Pending(message.mid, message.qos, message.topic, message.payload, self.generation, time.monotonic()))

    # --- the main loop's steps ----------------------------------------------------------------
    def start(self) -> None:
        connect(self.client, self.broker, persistent=True, receive_maximum=self.options.receive_maximum)
        self.client.loop_start()

    def collect(self, timeout: float) -> None:
        """Move messages from the inbox into the batch until it is full or `timeout` passes.

        Idle, it wakes on the first message; once a batch is open it takes what arrived every
        TAKE_EVERY seconds rather than waking for each message (a wake-up per message, with the
        GIL handed to and fro between this thread and paho's, cost more CPU than decoding it)."""
        deadline = time.monotonic() + timeout
        while self.batch_readings < self.options.batch_size:
            try:
                pending = self.inbox.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                if self.batch:
                    time.sleep(min(remaining, TAKE_EVERY))
                    continue
                try:
                    pending = self.inbox.get(timeout=remaining)
                except queue.Empty:
                    return
            pending.message = decode(pending.topic, pending.payload, timezone.now())
            self.batch.append(pending)
            self.batch_readings += max(1, len(pending.message.readings))

    def due(self) -> bool:
        if not self.batch:
            return False
        return self.batch_readings >= self.options.batch_size or time.monotonic() - self.batch[0].received >= self.options.max_age

    def flush(self) -> bool:
        """Store the batch, then acknowledge it. Returns False (batch kept) when the database
        failed, so the caller retries after a pause."""
        if not self.batch:
            return True
        by_tenant: dict[str | None, list[Message]] = defaultdict(list)
        try:
            for pending in self.batch:
                message = pending.message
                schema = self.tenants.schema_for(message.tenant_slug) if message.tenant_slug else None
                if schema is None and not message.reason:
                    message.reason, message.detail = "unknown_tenant", f"no active tenant {message.tenant_slug!r}"
                    message.readings = []
                by_tenant[schema].append(message)
            written = 0
            for schema, messages in by_tenant.items():
                if schema is None:  # no tenant to hold them: the public schema keeps them
                    DeadLetter.objects.bulk_create([m.dead_letter() for m in messages])
                    self.count_dead(len(messages))
                    continue
                with schema_context(schema):
                    result = store(messages)
                written += result.written + result.duplicates
                self.count_dead(result.rejected)
        except OperationalError as error:
            log.error("database unavailable, keeping %s messages for a retry: %s", len(self.batch), error)
            self.stats.errors += 1
            self.totals.errors += 1
            close_old_connections()
            connection.close()
            return False
        self.acknowledge()
        for stats in (self.stats, self.totals):
            stats.messages += len(self.batch)
            stats.readings += written
            stats.batches += 1
        self.batch, self.batch_readings = [], 0
        return True

    def count_dead(self, n: int) -> None:
        self.stats.dead_letters += n
        self.totals.dead_letters += n

    def acknowledge(self) -> None:
        for pending in self.batch:
            # a message from an earlier connection will be sent again; its mid is not ours to ack
            if pending.generation == self.generation and pending.qos > 0:
                self.client.ack(pending.mid, pending.qos)

    def report(self) -> None:
        line = self.stats.line()
        log.info("bridge %s: %s", self.options.client_id, line)
        stats = {"line": line, "messages": self.totals.messages, "readings": self.totals.readings,
                 "dead_letters": self.totals.dead_letters, "reconnects": self.totals.reconnects, "connected": self.connected}
        try:
            ProcessHeartbeat.beat(f"bridge:{self.options.client_id}", "bridge", self.started_at, stats, socket.gethostname(), None)
        except OperationalError:
            close_old_connections()
        self.stats = Stats()

    def stop(self) -> None:
        self.connected = False  # a disconnect we asked for is not a reconnect
        self.client.disconnect()
        self.client.loop_stop()

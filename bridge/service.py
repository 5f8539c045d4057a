"""The bridge's work: MQTT messages in, committed readings out, acknowledged only after commit.

paho's network thread only puts each message on the inbox. The main loop takes messages into a
batch, decoding each as it comes, and hands the batch over when it holds `batch_size` readings or
is `max_age` seconds old. The flush thread (its own database connection) groups it by tenant,
stores it in each tenant's schema (one transaction per tenant) and only then acknowledges it,
while the main loop decodes the next batch: decoding overlaps the COPY and the commit. One batch
is in flight at a time and one thread acks the batches, so their acks leave in the order the
messages came. A crash before the ack means the broker sends the messages again, and the
(sensor, ts) dedup of the ingest path absorbs the repeats: nothing lost, nothing doubled.

Which app decodes and stores a message is the topic-handler registry's business (bridge/registry.py):
batched handlers' messages take the path above; prompt handlers' messages (lock status, command
responses) go to the prompt lane (bridge/lanes.py) and never wait for a batch; apps' outboxes (lock
commands) are published by the outbox lane (bridge/outbox.py). Both lanes are threads with their own
database connections and ack after commit too.
"""

import logging
import queue
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import OperationalError, close_old_connections, connection
from django.utils import timezone
from django_tenants.utils import schema_context

from bridge.lanes import PromptLane
from bridge.mqtt import Broker, connect, make_client
from bridge.outbox import OutboxLane
from bridge.registry import Handler, Router
from portal.core.models import ProcessHeartbeat
from portal.tenancy.models import Tenant
from telemetry.deadletters import per_message
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
    handler: Handler | None = None  # the app's topic handler (bridge/registry.py); None: no app takes it
    message: object | None = None  # what the handler's decode() made of it


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
        return (
            f"{self.messages / seconds:.0f} msg/s, {self.readings / seconds:.0f} readings/s, "
            f"{size:.0f} readings/batch, {self.dead_letters} dead letters, {self.reconnects} reconnects, {self.errors} errors"
        )


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


class Flusher:
    """Stores batches on a thread of its own, one at a time, in the order they are handed over.

    `store(batch)` commits and acks a batch, returning False when the database failed; the
    flusher then keeps the batch and tries again every second (nothing is acked meanwhile),
    unless told to give up (a forced shutdown: the broker sends the unacked messages again)."""

    RETRY_SECONDS = 1.0

    def __init__(self, store):
        self.store = store
        self.changed = threading.Condition()
        self.batch: list | None = None  # handed over, not yet committed and acked
        self.stopping = False
        self.giving_up = False
        self.failure: Exception | None = None
        self.thread = threading.Thread(target=self.run, name="bridge-flush", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, batch: list, timeout: float | None = None) -> bool:
        """Hand `batch` over once the previous one is done; False if that takes longer than `timeout`."""
        with self.changed:
            if not self.changed.wait_for(lambda: self.batch is None, timeout):
                return False
            self.batch = batch
            self.changed.notify_all()
            return True

    def idle(self, timeout: float | None = None) -> bool:
        """Wait until the batch in flight is done (at most `timeout`); True if nothing is in flight."""
        with self.changed:
            return self.changed.wait_for(lambda: self.batch is None, timeout)

    def stop(self) -> None:
        with self.changed:
            self.stopping = True
            self.changed.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout=30)

    def run(self) -> None:
        try:
            while True:
                with self.changed:
                    self.changed.wait_for(lambda: self.batch is not None or self.stopping)
                    batch = self.batch
                if batch is None:
                    break
                while not self.store(batch) and not self.giving_up:
                    time.sleep(self.RETRY_SECONDS)  # the database is away: keep the batch, do not spin
                with self.changed:
                    self.batch = None
                    self.changed.notify_all()
        except Exception as error:  # a bug: the main loop raises it (nothing of the batch was acked)
            log.exception("the flush thread failed")
            self.failure = error
        finally:
            connection.close()  # this thread's own connection

    def check(self) -> None:
        """Raise what stopped the flush thread, if anything did (the process then exits and the
        broker sends the unacknowledged messages again to the next one)."""
        if self.failure is not None:
            raise RuntimeError("the bridge's flush thread failed") from self.failure


class Bridge:
    def __init__(self, broker: Broker, options: Options, router: Router | None = None):
        self.broker, self.options = broker, options
        self.router = router or Router()
        self.prompt = PromptLane(self)
        self.outbox = OutboxLane(self, self.router.outboxes)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.batch: list[Pending] = []
        self.batch_readings = 0
        self.generation = 0
        self.connected = False
        self.stats = Stats()
        self.totals = Stats()
        self.stats_lock = threading.Lock()  # the flush thread counts, the main loop reports
        self.flusher = Flusher(self.store)
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
        client.subscribe([(prefix + topic, 1) for topic in self.router.subscriptions])
        log.info(
            "connected to %s:%s as %s (session %s)",
            self.broker.host,
            self.broker.port,
            self.options.client_id,
            "resumed" if getattr(flags, "session_present", False) else "new",
        )

    def on_subscribe(self, client, userdata, mid, reason_codes, properties):
        granted = [code for code in reason_codes if not code.is_failure]
        log.info("subscribed to %s of %s topics", len(granted), len(reason_codes))

    def on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected:
            with self.stats_lock:
                self.stats.reconnects += 1
                self.totals.reconnects += 1
        self.connected = False
        log.warning("disconnected from the broker (%s); paho reconnects with backoff", reason_code)

    def on_message(self, client, userdata, message):
        handler = self.router.route(message.topic)
        pending = Pending(
            message.mid, message.qos, message.topic, message.payload, self.generation, time.monotonic(), handler
        )
        # prompt handlers (lock status, responses) never wait behind a telemetry batch
        (self.prompt if handler is not None and handler.prompt else self.inbox).put(pending)

    # --- the main loop's steps ----------------------------------------------------------------
    def start(self) -> None:
        connect(self.client, self.broker, persistent=True, receive_maximum=self.options.receive_maximum)
        self.client.loop_start()
        self.prompt.start()
        self.outbox.start()
        self.flusher.start()

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
            pending.message = self.router.decode(pending.handler, pending.topic, pending.payload, timezone.now())
            self.batch.append(pending)
            self.batch_readings += max(1, len(pending.message.readings))

    def due(self) -> bool:
        if not self.batch:
            return False
        return (
            self.batch_readings >= self.options.batch_size
            or time.monotonic() - self.batch[0].received >= self.options.max_age
        )

    def step(self, timeout: float) -> None:
        """Collect for up to `timeout`, and hand the batch to the flush thread once it is due.

        A batch due by age while the previous one still commits keeps collecting; a full one
        waits for the flush thread (the receive maximum then holds the broker back)."""
        self.flusher.check()
        self.collect(timeout)
        if not self.due():
            return
        if self.batch_readings >= self.options.batch_size:
            self.flusher.idle(timeout)
        if self.flusher.submit(self.batch, timeout=0):
            self.batch, self.batch_readings = [], 0

    def drain(self, forced) -> None:
        """Store and ack everything taken from the broker (on shutdown), then stop the flush
        thread; once `forced()` is true it gives up waiting for a database that is away."""

        def wait(done) -> None:
            while not done(0.1):
                self.flusher.check()
                if forced():
                    self.flusher.giving_up = True

        if self.batch:
            wait(lambda timeout: self.flusher.submit(self.batch, timeout))
            self.batch, self.batch_readings = [], 0
        wait(self.flusher.idle)
        self.flusher.stop()

    def flush(self) -> bool:
        """Store and ack the batch now and wait for it (for a caller with no main loop of its own,
        such as a test); the main loop uses step() and drain()."""
        if self.batch:
            self.flusher.submit(self.batch)
            self.batch, self.batch_readings = [], 0
        return self.flusher.idle()

    def store(self, batch: list[Pending]) -> bool:
        """Store a batch, then acknowledge it (on the flush thread). Returns False (nothing acked)
        when the database failed, so the flusher retries after a pause."""
        by_tenant: dict[tuple[str | None, Handler | None], list] = defaultdict(list)
        try:
            for pending in batch:
                message = pending.message
                schema = self.tenants.schema_for(message.tenant_slug) if message.tenant_slug else None
                if schema is None and not message.reason:
                    message.reason, message.detail = "unknown_tenant", f"no active tenant {message.tenant_slug!r}"
                    message.readings = []
                by_tenant[(schema, pending.handler if schema else None)].append(message)
            written = dead = 0
            for (schema, handler), messages in by_tenant.items():
                if schema is None:  # no tenant to hold them: the public schema keeps them
                    DeadLetter.objects.bulk_create(per_message([m.dead_letter() for m in messages]))
                    dead += len(messages)
                    continue
                with schema_context(schema):
                    result = handler.module.store(messages)
                written += result.written + result.duplicates
                dead += result.rejected
        except OperationalError as error:
            log.error("database unavailable, keeping %s messages for a retry: %s", len(batch), error)
            with self.stats_lock:
                self.stats.errors += 1
                self.totals.errors += 1
            close_old_connections()
            connection.close()
            return False
        self.acknowledge(batch)
        with self.stats_lock:
            for stats in (self.stats, self.totals):
                stats.messages += len(batch)
                stats.readings += written
                stats.dead_letters += dead
                stats.batches += 1
        return True

    def acknowledge(self, batch: list[Pending]) -> None:
        for pending in batch:
            self.ack_one(pending)

    def ack_one(self, pending: Pending) -> None:
        # a message from an earlier connection will be sent again; its mid is not ours to ack
        if pending.generation == self.generation and pending.qos > 0:
            self.client.ack(pending.mid, pending.qos)

    def report(self) -> None:
        with self.stats_lock:
            current, self.stats = self.stats, Stats()
        line = current.line()
        log.info("bridge %s: %s", self.options.client_id, line)
        stats = {
            "line": line,
            "messages": self.totals.messages,
            "readings": self.totals.readings,
            "dead_letters": self.totals.dead_letters,
            "reconnects": self.totals.reconnects,
            "connected": self.connected,
            "prompt_messages": self.prompt.handled,
            "outbox_published": self.outbox.published,
        }
        try:
            ProcessHeartbeat.beat(
                f"bridge:{self.options.client_id}", "bridge", self.started_at, stats, socket.gethostname(), None
            )
        except OperationalError:
            close_old_connections()

    def stop(self) -> None:
        self.flusher.stop()  # after drain() already stopped; finishes a batch in flight otherwise
        self.prompt.stop()  # finishes the message in hand; the broker keeps the rest for us
        self.outbox.stop()
        self.connected = False  # a disconnect we asked for is not a reconnect
        self.client.disconnect()
        self.client.loop_stop()

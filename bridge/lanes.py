"""The prompt lane: messages of prompt handlers (lock status, responses, access requests) handled one
by one as they arrive, in a thread of their own with its own database connection, so they never wait
behind a telemetry batch that is being collected or committed.

Same promise as the batched lane: a message is acknowledged only after its handler committed, so a
crash means the broker sends it again (handlers are idempotent: a response settles a command once,
a status older than the stored one changes nothing). Replies the handler returns are published with
QoS 1 before the ack. A database error keeps the message and retries it after a pause.

Batches: the lane takes what arrived together, up to BATCH_MAX messages and waiting at most
BATCH_WAIT after the first (so one lock's answer is late by a few milliseconds at most, and under a
flood the batch fills at once). A handler module with `handle_batch(messages, now)` (a list of
(topic, payload), returning each one's replies in order) gets its consecutive messages in one call,
one transaction per tenant (the locks' access requests: issue 14, 1,000 checks a second); the
others' messages are handled one by one. Replies are published, and the batch acked, after commit.
"""

import logging
import queue
import threading
import time

from django.db import OperationalError, close_old_connections, connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

log = logging.getLogger("fieldwatch.bridge")

RETRY_PAUSE = 1.0  # seconds after a database error before the same message is tried again
IDLE_WAKE = 0.2  # seconds between checks for shutdown while idle
BATCH_MAX = 200  # messages settled together at most
BATCH_WAIT = 0.005  # seconds a batch waits for more after its first message


class PromptLane:
    def __init__(self, bridge):
        self.bridge = bridge
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="bridge-prompt-lane", daemon=True)
        self.handled = 0
        self.batches = 0
        self.errors = 0

    def put(self, pending) -> None:
        self.inbox.put(pending)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the messages already taken, then stop (the broker keeps what was not acked)."""
        self.stopping.set()
        self.thread.join(timeout)

    def run(self) -> None:
        try:
            while True:
                try:
                    pending = self.inbox.get(timeout=IDLE_WAKE)
                except queue.Empty:
                    if self.stopping.is_set():
                        return
                    continue
                self.settle(self.collect(pending))
        finally:
            connection.close()  # this thread's own connection

    def collect(self, first) -> list:
        """`first` and what arrives within BATCH_WAIT of it, up to BATCH_MAX messages."""
        batch, deadline = [first], time.monotonic() + BATCH_WAIT
        while len(batch) < BATCH_MAX:
            try:
                batch.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def settle(self, batch: list) -> None:
        """Handle a collected batch: each run of one batching handler's messages together, the rest
        one by one, in the order they came."""
        for run in runs(batch):
            if len(run) > 1 and hasattr(run[0].handler.module, "handle_batch"):
                self.handle_batch(run)
            else:
                for one in run:
                    self.handle(one)

    def handle_batch(self, batch: list) -> None:
        """Consecutive messages of one handler, settled by its handle_batch; on a handler bug the
        batch is handled again one by one (each failing message then kept as a dead letter)."""
        while True:
            try:
                messages = [(pending.topic, pending.payload) for pending in batch]
                replies = batch[0].handler.module.handle_batch(messages, timezone.now())
                break
            except OperationalError as error:
                self.errors += 1
                log.error("database unavailable, retrying a batch of %s: %s", len(batch), error)
                close_old_connections()
                connection.close()
                if self.stopping.is_set():
                    return  # not acked: the broker sends them again after the restart
                time.sleep(RETRY_PAUSE)
            except Exception:
                self.errors += 1
                log.exception("handler %s failed on a batch of %s; one by one", batch[0].handler.name, len(batch))
                for pending in batch:
                    self.handle(pending)
                return
        if len(replies) != len(batch):
            raise RuntimeError(f"{batch[0].handler.name}.handle_batch answered {len(replies)} of {len(batch)}")
        for answers in replies:
            for topic, payload in answers:
                self.bridge.client.publish(topic, payload, qos=1)
        for pending in batch:
            self.bridge.ack_one(pending)
        self.handled += len(batch)
        self.batches += 1

    def handle(self, pending) -> None:
        while True:
            try:
                replies = pending.handler.module.handle(pending.topic, pending.payload, timezone.now())
                break
            except OperationalError as error:
                self.errors += 1
                log.error("database unavailable, retrying %s: %s", pending.topic, error)
                close_old_connections()
                connection.close()
                if self.stopping.is_set():
                    return  # not acked: the broker sends it again after the restart
                time.sleep(RETRY_PAUSE)
            except Exception as error:
                # a handler bug must not stop the lane nor loop on one message: it is logged, and the
                # message is kept as a dead letter (public schema) before it is acknowledged
                self.errors += 1
                log.exception("handler %s failed on %s", pending.handler.name, pending.topic)
                keep_failed(pending, error)
                replies = []
                break
        for topic, payload in replies or ():
            self.bridge.client.publish(topic, payload, qos=1)
        self.bridge.ack_one(pending)
        self.handled += 1


def runs(batch: list) -> list[list]:
    """The batch cut where the handler changes, order kept."""
    cut: list[list] = []
    for pending in batch:
        if cut and cut[-1][0].handler is pending.handler:
            cut[-1].append(pending)
        else:
            cut.append([pending])
    return cut


def keep_failed(pending, error: Exception) -> None:
    from telemetry.bounds import clean_text
    from telemetry.models import DeadLetter

    with schema_context("public"), transaction.atomic():
        DeadLetter.objects.create(
            source=DeadLetter.Source.MQTT,
            topic=pending.topic[:300],
            payload=clean_text(pending.payload.decode("utf-8", "replace")),
            reason="handler_error",
            detail=f"{type(error).__name__}: {error}"[:300],
        )

"""The outbox lane: what apps wrote to send (lock commands), published by the bridge with QoS 1.

An app writes rows to send in its tenant's schema and signals its OUTBOX_CHANNEL with
`pg_notify(channel, schema)` in the same transaction (PostgreSQL delivers it at commit, never for a
rolled-back row). This thread LISTENs on a connection of its own and, woken by a signal, asks the
app for what is due in that schema, publishes it, and marks it sent once the broker acknowledged it
(PUBACK). On every connection to the broker, and every SWEEP_SECONDS, it also sweeps every active tenant: a bridge restart
publishes whatever was still pending, and a signal lost while the bridge was away costs seconds.
Publishing twice is possible (the bridge died between PUBACK and marking sent); receivers
deduplicate by the request id the app put in the payload.
"""

import logging
import threading
import time

import psycopg
from django.db import OperationalError, close_old_connections, connection
from django_tenants.utils import schema_context

log = logging.getLogger("fieldwatch.bridge")

SWEEP_SECONDS = 10.0
BATCH = 200  # messages asked for per tenant and round
ACK_TIMEOUT = 5.0  # seconds to wait for the broker's PUBACK before leaving a message pending


class OutboxLane:
    def __init__(self, bridge, handlers):
        self.bridge = bridge
        self.handlers = {handler.outbox_channel: handler for handler in handlers}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="bridge-outbox", daemon=True)
        self.published = 0

    def start(self) -> None:
        if self.handlers:
            self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def run(self) -> None:
        listener = None
        next_sweep, swept_connection = 0.0, None
        try:
            while not self.stopping.is_set():
                try:
                    if listener is None or listener.closed:
                        listener = self.listen()
                        next_sweep = 0.0  # anything signalled while we were not listening
                    # sweep at once on every (re)connection to the broker, and every SWEEP_SECONDS
                    fresh = self.bridge.connected and swept_connection != self.bridge.generation
                    if fresh or (self.bridge.connected and time.monotonic() >= next_sweep):
                        swept_connection = self.bridge.generation
                        self.sweep()
                        next_sweep = time.monotonic() + SWEEP_SECONDS
                    for note in listener.notifies(timeout=0.5, stop_after=1):
                        self.send(self.handlers[note.channel], note.payload)
                except (OperationalError, psycopg.OperationalError) as error:
                    log.error("outbox: database unavailable: %s", error)
                    close_old_connections()
                    connection.close()
                    if listener is not None:
                        listener.close()
                    listener = None
                    self.stopping.wait(1.0)
        finally:
            if listener is not None:
                listener.close()
            connection.close()

    def listen(self) -> psycopg.Connection:
        """A connection of its own that only listens (Django's connection runs the queries)."""
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        listener = psycopg.connect(**params, autocommit=True)
        for channel in self.handlers:
            listener.execute(f'LISTEN "{channel}"')
        return listener

    def sweep(self) -> None:
        from portal.tenancy.models import Tenant  # the tenant directory: shared by every app

        close_old_connections()
        for schema in Tenant.objects.active().values_list("schema_name", flat=True):
            for handler in self.handlers.values():
                self.send(handler, schema)

    def send(self, handler, schema: str) -> None:
        """Publish what `handler` has due in `schema`, and mark sent what the broker acknowledged."""
        while not self.stopping.is_set() and self.bridge.connected:
            with schema_context(schema):
                due = handler.module.outgoing(BATCH)
            if not due:
                return
            infos = [(key, self.bridge.client.publish(topic, payload, qos=1)) for key, topic, payload in due]
            acked = []
            deadline = time.monotonic() + ACK_TIMEOUT
            for key, info in infos:
                while not info.is_published() and time.monotonic() < deadline and info.rc == 0:
                    time.sleep(0.001)
                if info.is_published():
                    acked.append(key)
            with schema_context(schema):
                handler.module.published(acked)
            self.published += len(acked)
            if len(acked) < len(due) or len(due) < BATCH:
                return  # the broker is slow or away (the rest waits for the next round), or all sent

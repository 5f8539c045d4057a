"""Publishing at volume without losing messages silently (the simulator, tests and benches).

paho's publish() does not raise when it cannot take a message: it returns an error code, for
instance once 65,535 QoS 1 messages await acknowledgement. Publisher checks every code, waits
and retries, and can wait until the broker acknowledged everything sent.
"""

import time

from paho.mqtt.client import Client, MQTTErrorCode

RETRYABLE = {MQTTErrorCode.MQTT_ERR_QUEUE_SIZE, MQTTErrorCode.MQTT_ERR_NO_CONN, MQTTErrorCode.MQTT_ERR_AGAIN}


class PublishFailed(Exception):
    pass


class Publisher:
    def __init__(self, client: Client, *, max_pending: int = 20000, timeout: float = 60):
        self.client, self.max_pending, self.timeout = client, max_pending, timeout
        self.pending = []
        self.sent = 0

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            if len(self.pending) >= self.max_pending:
                self.settle(keep=self.max_pending // 2)
            info = self.client.publish(topic, payload, qos=qos)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                if qos:
                    self.pending.append(info)
                self.sent += 1
                return
            if info.rc not in RETRYABLE or time.monotonic() > deadline:
                raise PublishFailed(f"publish to {topic} failed: {info.rc!r}")
            time.sleep(0.01)  # the client's queue is full or it is reconnecting: let it drain

    def settle(self, keep: int = 0) -> None:
        """Wait until at most `keep` published messages still await the broker's acknowledgement."""
        deadline = time.monotonic() + self.timeout
        while len(self.pending) > keep:
            self.drop_acknowledged()
            if len(self.pending) <= keep:
                return
            if time.monotonic() > deadline:
                raise PublishFailed(f"{len(self.pending)} messages were not acknowledged within {self.timeout}s")
            time.sleep(0.005)

    def drop_acknowledged(self) -> None:
        """Forget the acknowledged messages at the front. The broker acknowledges in publish
        order, so this looks at few messages each time; a pass over all of them every few
        milliseconds (each check takes a lock) held the GIL from paho's own network thread,
        which then read the acknowledgements late."""
        done = 0
        for info in self.pending:
            if not info.is_published():
                break
            done += 1
        del self.pending[:done]

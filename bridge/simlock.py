"""Simulated locks for the demo, the tests and bench/locks.py: they answer commands over MQTT.

Each lock subscribes to its command (and OTA) topic and, after `delay` seconds, publishes the
response the lock's firmware would: lock/unlock change its state (and a status follows), a code
sync stores the code hashes it was sent, an OTA reports progress then success, settings and time
sync are acknowledged. With `failure_rate` some locks and unlocks fail (a motor fault), with
`jam_rate` an unlock jams; the keypad's memory does not fail, so the demo's code syncs settle.
"""

import json
import random
import threading
import time
from dataclasses import dataclass, field

from django.utils import timezone


@dataclass
class SimLock:
    lock_id: str
    base: str  # "tenants/acme/locks/<id>" or "smartlock/<id>"
    status: str = "locked"
    battery: float = 100.0
    codes: dict = field(default_factory=dict)  # code id -> sync entry
    keypad_enabled: bool = True


class SimulatedLocks:
    def __init__(self, client, locks: list[SimLock], *, delay=0.05, failure_rate=0.0, jam_rate=0.0, rng=None):
        self.client, self.delay = client, delay
        self.failure_rate, self.jam_rate = failure_rate, jam_rate
        self.rng = rng or random.Random()  # noqa: S311 (a simulation, not a secret)
        self.locks = {f"{lock.base}/command": lock for lock in locks} | {f"{lock.base}/ota": lock for lock in locks}
        self.answered = 0
        self.lock = threading.Lock()
        self.subscribed = threading.Event()  # set at the broker's SUBACK: commands reach us from then on

    @staticmethod
    def base_for(protocol: str, tenant_slug: str, lock_id: str) -> str:
        return f"smartlock/{lock_id}" if protocol == "smartlock" else f"tenants/{tenant_slug}/locks/{lock_id}"

    def subscribe(self) -> None:
        if self.locks:
            self.client.subscribe([(topic, 1) for topic in self.locks])

    def on_subscribe(self, *args) -> None:
        self.subscribed.set()

    def on_message(self, client, userdata, message) -> bool:
        """Take a command if it is for one of our locks (True), answering it after `delay`."""
        lock = self.locks.get(message.topic)
        if lock is None:
            return False
        try:
            command = json.loads(message.payload)
        except ValueError:
            return True
        if self.delay:
            threading.Timer(self.delay, self.answer, (lock, command, message.topic.endswith("/ota"))).start()
        else:
            self.answer(lock, command, message.topic.endswith("/ota"))
        return True

    def publish(self, topic: str, payload: dict) -> None:
        self.client.publish(topic, json.dumps(payload), qos=1)

    def answer(self, lock: SimLock, command: dict, ota: bool) -> None:
        kind, request_id = command.get("command"), command.get("request_id")
        now = timezone.now().isoformat()
        with self.lock:
            self.answered += 1
        if ota or kind == "ota":
            for progress in (25, 50, 75):
                self.publish(f"{lock.base}/response", {"request_id": request_id, "success": True, "progress": progress})
            self.publish(
                f"{lock.base}/response", {"request_id": request_id, "success": True, "progress": 100, "timestamp": now}
            )
            return
        if kind in ("lock", "unlock") and self.rng.random() < self.failure_rate:
            self.publish(
                f"{lock.base}/response",
                {"request_id": request_id, "success": False, "error": "motor fault", "timestamp": now},
            )
            return
        reply = {"request_id": request_id, "success": True, "timestamp": now}
        if kind in ("lock", "unlock"):
            jammed = kind == "unlock" and self.rng.random() < self.jam_rate
            lock.status = "jammed" if jammed else ("locked" if kind == "lock" else "unlocked")
            reply |= {"success": not jammed, "status": lock.status} | ({"error": "bolt jammed"} if jammed else {})
        elif kind == "code_sync":
            for entry in command.get("codes", []):
                if entry.get("action") == "set":
                    lock.codes[entry["id"]] = entry
                else:
                    lock.codes.pop(entry.get("id"), None)
            reply["codes"] = [{"id": entry.get("id"), "ok": True} for entry in command.get("codes", [])]
        elif kind == "keypad":
            lock.keypad_enabled = bool(command.get("enabled"))
        self.publish(f"{lock.base}/response", reply)
        if kind in ("lock", "unlock"):
            self.send_status(lock)

    def send_status(self, lock: SimLock) -> None:
        lock.battery = max(5.0, lock.battery - self.rng.random() * 0.05)
        self.publish(
            f"{lock.base}/status",
            {
                "online": True,
                "battery": round(lock.battery),
                "lock_status": lock.status,
                "signal_strength": -40 - self.rng.randrange(30),
                "temperature": round(20 + self.rng.random() * 4, 1),
                "timestamp": timezone.now().isoformat(),
            },
        )

    def heartbeat(self, lock: SimLock, uptime: int) -> None:
        self.publish(f"{lock.base}/heartbeat", {"timestamp": timezone.now().isoformat(), "uptime": uptime})

    def report_all(self, started: float) -> None:
        for lock in {id(lock): lock for lock in self.locks.values()}.values():
            self.send_status(lock)
            self.heartbeat(lock, int(time.monotonic() - started))

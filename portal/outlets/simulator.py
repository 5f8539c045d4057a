"""Simulated counting devices for `manage.py simulate`: they speak seed 003's device API over HTTP
to the running web process, as fielded devices do, so the demo's outlet pages move.

Each device handshakes once (by MAC; the simulator resets its provisioning first, since it cannot
know a token from an earlier run: only a hash is stored), then posts usage events with its token
and, now and then, a status heartbeat. The legacy devices post form-encoded /api/iot/ posts
without a token, as old firmware does.
"""

import json
import logging
import random
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlencode, urlsplit

from django.utils import timezone
from django_tenants.utils import schema_context

from portal.outlets.demo import LEGACY_MACS, TREATMENTS
from telemetry.models import Device

logger = logging.getLogger(__name__)


class CountingDevice:
    def __init__(self, device_id: str, mac: str, legacy: bool):
        self.device_id, self.mac, self.legacy = device_id, mac, legacy
        self.token = ""
        self.counters = dict.fromkeys(("BASIC", "STANDARD", "PREMIUM"), 1000)


class CounterSimulator:
    def __init__(self, base_url: str, slug: str, rng: random.Random | None = None):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"--web must be an http(s) URL, not {base_url!r}")
        self.base, self.host = base_url.rstrip("/"), f"{slug}.localhost" + (f":{parts.port}" if parts.port else "")
        self.rng = rng or random.Random()  # noqa: S311 (demo traffic)
        self.sent = self.failed = 0
        with schema_context(slug):
            counters = Device.objects.filter(kind=Device.Kind.COUNTER, mac__isnull=False).order_by("device_id")
            self.devices = [CountingDevice(d.device_id, d.mac, d.mac in LEGACY_MACS) for d in counters]
            # a token from an earlier run is unknown to us (only its hash is kept): provision afresh
            counters.exclude(mac__in=LEGACY_MACS).update(provisioning_reset_at=timezone.now())

    def request(self, path: str, body: bytes, content_type: str, token: str = "") -> dict | None:
        headers = {"Host": self.host, "Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base + path, data=body, headers=headers, method="POST")  # noqa: S310 (scheme checked above)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (our own server)
                self.sent += 1
                return json.loads(response.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as error:
            self.failed += 1
            logger.info("simulated counter %s: %s", path, error)
            return None

    def step(self) -> None:
        """One device does one thing: a handshake if it has no token yet, else an event (or a
        status report one time in ten)."""
        if not self.devices:
            return
        device = self.rng.choice(self.devices)
        if device.legacy:
            self.legacy_post(device)
        elif not device.token:
            answer = self.request(
                "/api/handshake/", json.dumps({"mac": device.mac, "firmware": "1.4.2"}).encode(), "application/json"
            )
            device.token = (answer or {}).get("token", "")
        elif self.rng.random() < 0.1:
            self.request(
                f"/api/devices/{device.device_id}/heartbeat/",
                json.dumps(
                    {
                        "uptime": self.rng.randint(60, 10**6),
                        "wifi": {"rssi": self.rng.randint(-80, -40), "connected": True},
                    }
                ).encode(),
                "application/json",
                device.token,
            )
        else:
            treatment = self.rng.choice(TREATMENTS)
            device.counters[treatment] += 1
            body = {
                "device_id": device.device_id,
                "firmware": "1.4.2",
                "event_id": f"{device.device_id}-sim-{uuid.uuid4().hex[:16]}",
                "event": "treatment",
                "treatment": treatment,
                "counter": device.counters[treatment],
                "ts": timezone.now().isoformat(),
            }
            if self.request("/api/device/events/", json.dumps(body).encode(), "application/json", device.token) is None:
                device.token = ""  # refused (a token reset meanwhile?): handshake again

    def legacy_post(self, device: CountingDevice) -> None:
        mode = self.rng.choice([*TREATMENTS, "status"])
        device.counters.setdefault(mode, 0)
        if mode != "status":
            device.counters[mode] += 1
        fields = {
            "mode": mode,
            "macaddr": device.mac,
            "timestamp": timezone.now().strftime("%Y-%m-%d %H:%M:%S"),
            "count1": device.counters["BASIC"],
            "count2": device.counters["STANDARD"],
            "count3": device.counters["PREMIUM"],
            "rtc_available": "true",
            "sd_available": "false",
        }
        self.request("/api/iot/", urlencode(fields).encode(), "application/x-www-form-urlencoded")

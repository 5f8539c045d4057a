"""A small MQTT broker for machines with none, so `make run`'s demo works from nothing.

    python -m bridge.embedded_broker check   exit 0 when a broker answers at MQTT_URL
    python -m bridge.embedded_broker serve   run amqtt on MQTT_URL's host and port

amqtt speaks MQTT 3.1.1 only (run the bridge with MQTT_PROTOCOL=3.1.1 against it) and does a
few thousand QoS 1 messages a second: a demo broker, open to anyone (it says so when it starts).
Production uses Mosquitto with its dynamic security (portal.devices.broker) or EMQX.
"""

import asyncio
import contextlib
import os
import socket
import sys
from urllib.parse import urlparse


def address() -> tuple[str, int]:
    parsed = urlparse(os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"))
    return parsed.hostname or "127.0.0.1", parsed.port or 1883


def broker_answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


async def serve(host: str, port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    print(f"embedded MQTT broker (amqtt, MQTT 3.1.1) listening on {host}:{port}", flush=True)
    # a demo broker: it asks for no credentials, and anyone may publish into any tenant's topics
    print(
        "WARNING: the embedded broker is OPEN (anonymous, no topic rules): for demos only. "
        "Production uses Mosquitto with bridge/mosquitto.conf (credentials Fieldwatch issues) or EMQX.",
        flush=True,
    )
    await asyncio.Event().wait()


if __name__ == "__main__":
    host, port = address()
    if sys.argv[1:] == ["check"]:
        sys.exit(0 if broker_answers(host, port) else 1)
    if sys.argv[1:] == ["serve"]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(host, port))
        sys.exit(0)
    sys.exit(__doc__)

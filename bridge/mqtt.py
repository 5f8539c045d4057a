"""Connecting to the broker named by MQTT_URL, for the bridge and the simulator alike.

MQTT_URL: mqtt://[user:password@]host[:1883] or mqtts://…[:8883] (TLS, system CA store;
MQTT_CA_FILE names another CA). MQTT_PROTOCOL: 5 (default) or 3.1.1.
"""

import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

SESSION_EXPIRY_SECONDS = 7 * 24 * 3600  # the broker keeps our queue this long while we are away


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    protocol: MQTTProtocolVersion

    @property
    def v5(self) -> bool:
        return self.protocol == MQTTProtocolVersion.MQTTv5


def broker_from_settings(url: str | None = None, protocol: str | None = None) -> Broker:
    parsed = urlparse(url or settings.MQTT_URL)
    if parsed.scheme not in {"mqtt", "mqtts"}:
        raise ImproperlyConfigured(f"MQTT_URL must start with mqtt:// or mqtts://, not {parsed.scheme}://")
    version = protocol or settings.MQTT_PROTOCOL
    versions = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}
    if version not in versions:
        raise ImproperlyConfigured(f"MQTT_PROTOCOL must be 5 or 3.1.1, not {version!r}")
    tls = parsed.scheme == "mqtts"
    return Broker(
        parsed.hostname or "127.0.0.1",
        parsed.port or (8883 if tls else 1883),
        tls,
        unquote(parsed.username) if parsed.username else None,
        unquote(parsed.password) if parsed.password else None,
        versions[version],
    )


def make_client(broker: Broker, client_id: str, *, persistent: bool, manual_ack: bool = False) -> Client:
    """A paho 2 client for the broker. persistent: the broker keeps the session (subscriptions
    and unacknowledged QoS 1 messages) across disconnects, so nothing is lost while we are away."""
    client = Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=broker.protocol,
        clean_session=None if broker.v5 else not persistent,
        manual_ack=manual_ack,
    )
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        context = ssl.create_default_context(cafile=settings.MQTT_CA_FILE or None)
        client.tls_set_context(context)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_properties(receive_maximum: int) -> Properties:
    """MQTT v5 CONNECT properties: keep the session, and let the broker send up to
    receive_maximum unacknowledged messages (it must cover a batch, as we ack after commit)."""
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
    properties.ReceiveMaximum = receive_maximum
    return properties


def connect(client: Client, broker: Broker, *, persistent: bool, receive_maximum: int = 65535) -> None:
    """Start connecting in the background (loop_start() runs the network thread)."""
    if broker.v5:
        client.connect_async(
            broker.host,
            broker.port,
            keepalive=30,
            clean_start=not persistent,
            properties=connect_properties(receive_maximum),
        )
    else:
        client.connect_async(broker.host, broker.port, keepalive=30)

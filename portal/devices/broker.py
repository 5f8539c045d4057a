"""Fieldwatch manages who may use Mosquitto through its dynamic security plugin.

Commands go as JSON to `$CONTROL/dynamic-security/v1`, answers come on `.../v1/response`, sent by
an admin client (MQTT_ADMIN_URL: mqtt://<admin>:<password>@host:port, the user
`mosquitto_ctrl dynsec init` made). Unset, nothing is managed (the embedded demo broker of
`make run` is open; EMQX asks Fieldwatch over HTTP instead, see portal.devices.emqx, which
answers from the same rules: rules_for() and allows()).

What the broker holds:
- a role per tenant, `fieldwatch-tenant-<slug>`: publish and subscribe under `tenants/<slug>/#`,
  except its locks' topics `tenants/<slug>/locks/#` (a gateway neither forges a lock's
  response nor reads the PINs a lock command carries);
- a role per lock, `fieldwatch-lock-<slug>.<lock id>`: publish only under its own
  `tenants/<slug>/locks/<id>/…` and `smartlock/<id>/…` (not on the topics Fieldwatch sends it),
  subscribe only to those it is sent: `…/command`, `…/ota` and `…/access/result`;
- a client per credential (telemetry.MqttCredential), username `<slug>.<device id>`, in its
  tenant's role (a lock: in its own role only; its password is its device key, kept in step by
  portal.devices.receivers); disabled while the tenant is suspended, deleted when revoked or
  when its device is deleted;
- the bridge's client (MQTT_URL's username and password) in `fieldwatch-bridge`: everything.

Every command is idempotent here ("already exists" is success), so a retried task or
`manage.py mqtt_sync` re-applies without harm. Mosquitto keeps only its own salted hash of a
password: the raw secret travels once, in the task that creates or rotates a client.

A broker that lost its state (its dynamic-security.json gone with a volume, a new broker): the
roles and the bridge's client come back from `mqtt_sync`, the devices' clients cannot. Their
secrets are kept only as SHA-256 (issue 11: shown once, stored hashed) and Mosquitto takes a
password only in clear, so nothing Fieldwatch holds can give one back. Keeping a reversible copy
(encrypted with a key the portal holds) would put every device's password one key away from
whoever reads the database and the settings, for an event that is rare and has a better remedy
(back up the broker's data volume with the database). So the honest course: `mqtt_sync` lists
the broker's clients (listClients), marks each active credential it does not find as lost by the
broker (MqttCredential.broker_lost_at; their clients stay absent, so those devices are refused),
names them in its output, and the device page shows it with the way back: a new secret (for a
lock, a new device key), which the broker learns as usual. The bridge's password is in MQTT_URL,
so its client is always restored.
"""

import json
import logging
import threading
import uuid
from datetime import timedelta
from urllib.parse import unquote, urlparse

from django.conf import settings
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTProtocolVersion

log = logging.getLogger(__name__)

CONTROL = "$CONTROL/dynamic-security/v1"
BRIDGE_ROLE = "fieldwatch-bridge"
HARMLESS = ("already exists", "not found")
# a credential issued this long ago whose client the broker lacks was lost (its task retries for ~1 min)
LOST_AFTER = timedelta(minutes=5)  # what a repeated command answers: the state is as asked


class BrokerError(Exception):
    """The broker could not be reached or refused a command (the task retries)."""


LOCK_INBOX = ("command", "ota", "access/result")  # what Fieldwatch sends a lock (portal/locks/topics.py)
# Mosquitto's defaults where no ACL matches (`mosquitto_ctrl dynsec init`'s defaultACLAccess)
DEFAULT_ACCESS = {"publishClientSend": False, "publishClientReceive": True, "subscribePattern": False}


def tenant_role(slug: str) -> str:
    return f"fieldwatch-tenant-{slug}"


def lock_role(username: str) -> str:
    return f"fieldwatch-lock-{username}"


def acl(kind: str, topic: str, allow: bool = True, priority: int = 0) -> dict:
    return {"acltype": kind, "topic": topic, "allow": allow, "priority": priority}


def tenant_acls(slug: str) -> list[dict]:
    topics, locks = f"tenants/{slug}/#", f"tenants/{slug}/locks/#"
    return [
        *(acl(kind, topics) for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")),
        *(acl(kind, locks, False, 1) for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")),
    ]


def lock_acls(slug: str, lock_id: str) -> list[dict]:
    homes = (f"tenants/{slug}/locks/{lock_id}", f"smartlock/{lock_id}")
    inbox = [f"{home}/{leaf}" for home in homes for leaf in LOCK_INBOX]
    return [
        *(acl("publishClientSend", f"{home}/#") for home in homes),
        *(acl("publishClientSend", topic, False, 1) for topic in inbox),
        *(acl("subscribePattern", topic) for topic in inbox),
    ]


def rules_for(slug: str, credential) -> tuple[str, list[dict]]:
    """The role (name, ACLs) of a credential's client: its lock's own, or its tenant's."""
    if credential.device.kind == credential.device.Kind.LOCK:
        return lock_role(credential.username), lock_acls(slug, credential.device.device_id)
    return tenant_role(slug), tenant_acls(slug)


def matches(pattern: str, topic: str) -> bool:
    """MQTT matching of a topic (or a subscription filter, its wildcards taken as plain
    characters, as Mosquitto's subscribePattern does) against an ACL's pattern."""
    if topic.startswith("$") != pattern.startswith("$"):
        return False  # wildcards do not reach $-topics, nor a $ pattern ordinary ones
    levels, wanted = pattern.split("/"), topic.split("/")
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= len(wanted) or (level != "+" and level != wanted[i]):
            return False
    return len(levels) == len(wanted)


def overlaps(first: str, second: str) -> bool:
    """Whether some topic matches both filters."""
    a, b = first.split("/"), second.split("/")
    for x, y in zip(a, b, strict=False):
        if x == "#" or y == "#":
            return True
        if x != "+" and y != "+" and x != y:
            return False
    longer = a if len(a) > len(b) else b
    return len(a) == len(b) or longer[min(len(a), len(b))] == "#"


def allows(acls: list[dict], acltype: str, topic: str) -> bool:
    """Mosquitto's decision for one ACL type: the matching ACL of highest priority, else the default."""
    for entry in sorted((a for a in acls if a["acltype"] == acltype), key=lambda a: -a["priority"]):
        if matches(entry["topic"], topic):
            return entry["allow"]
    return DEFAULT_ACCESS[acltype]


def may_subscribe(acls: list[dict], topic_filter: str) -> bool:
    """A subscription allowed, and (for a broker that cannot hold messages back on delivery, as
    Mosquitto does with publishClientReceive) one that could carry nothing the client may not receive."""
    return allows(acls, "subscribePattern", topic_filter) and not any(
        a["acltype"] == "publishClientReceive" and not a["allow"] and overlaps(a["topic"], topic_filter) for a in acls
    )


BRIDGE_ACLS = [
    acl("publishClientSend", "#"),
    acl("publishClientReceive", "#"),
    acl("subscribePattern", "#"),
    acl("subscribePattern", "$share/#"),
    acl("unsubscribePattern", "#"),
]


def managed() -> bool:
    return bool(settings.MQTT_ADMIN_URL)


def url_credentials(url: str) -> tuple[str | None, str | None]:
    parsed = urlparse(url)
    return (
        unquote(parsed.username) if parsed.username else None,
        unquote(parsed.password) if parsed.password else None,
    )


class DynamicSecurity:
    """One admin connection; run(commands) sends them and returns the broker's responses."""

    def __init__(self, url: str | None = None, timeout: float = 10.0):
        self.url, self.timeout = url or settings.MQTT_ADMIN_URL, timeout

    def run(self, commands: list[dict]) -> list[dict]:
        if not commands:
            return []
        parsed = urlparse(self.url)
        answered, responses = threading.Event(), []
        client = Client(
            CallbackAPIVersion.VERSION2, client_id=f"fieldwatch-admin-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )  # fmt: skip
        username, password = url_credentials(self.url)
        if username:
            client.username_pw_set(username, password)
        subscribed = threading.Event()

        def on_connect(client, userdata, flags, reason, properties):
            if reason.is_failure:
                responses.append({"error": f"connection refused: {reason}"})
                answered.set()
                return
            client.subscribe(f"{CONTROL}/response", qos=1)

        def on_subscribe(client, userdata, mid, reasons, properties):
            subscribed.set()
            client.publish(CONTROL, json.dumps({"commands": commands}), qos=1)

        def on_message(client, userdata, message):
            responses.extend(json.loads(message.payload).get("responses", []))
            if len(responses) >= len(commands):
                answered.set()

        client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
        try:
            client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883, keepalive=10)
        except OSError as error:
            raise BrokerError(f"the broker at {parsed.hostname}:{parsed.port} is unreachable: {error}") from None
        client.loop_start()
        try:
            if not answered.wait(self.timeout):
                raise BrokerError("the broker did not answer the dynamic-security commands in time")
        finally:
            client.disconnect()
            client.loop_stop()
        failures = [r for r in responses if r.get("error") and not any(h in r["error"] for h in HARMLESS)]
        if failures:
            raise BrokerError("; ".join(f"{r.get('command', '?')}: {r['error']}" for r in failures))
        return responses


def ensure_role(rolename: str, acls: list[dict]) -> list[dict]:
    """createRole with its ACLs; then each ACL removed and added again, so an existing role ends
    up with exactly these (adding one it has is an error in Mosquitto 2.0, removing one it lacks
    "not found")."""
    commands = [{"command": "createRole", "rolename": rolename, "acls": acls}]
    for entry in acls:
        commands += [
            {"command": "removeRoleACL", "rolename": rolename, "acltype": entry["acltype"], "topic": entry["topic"]},
            {"command": "addRoleACL", "rolename": rolename, **entry},
        ]
    return commands


def client_commands(username: str, rolename: str, *, secret: str | None, enabled: bool) -> list[dict]:
    commands = []
    if secret is not None:
        commands += [
            {"command": "createClient", "username": username, "password": secret, "roles": [{"rolename": rolename}]},
            {"command": "setClientPassword", "username": username, "password": secret},
        ]
    commands += [  # removed first: adding a role the client has is an error in Mosquitto 2.0
        {"command": "removeClientRole", "username": username, "rolename": rolename},
        {"command": "addClientRole", "username": username, "rolename": rolename},
    ]
    # disabling kicks a connected client off at once; enabling lets it connect again
    commands.append({"command": "enableClient" if enabled else "disableClient", "username": username})
    return commands


def forget_commands(username: str) -> list[dict]:
    """A client gone (revoked, or its device deleted), and its lock's role if it had one."""
    return [
        {"command": "deleteClient", "username": username},
        {"command": "deleteRole", "rolename": lock_role(username)},
    ]


def credential_commands(slug: str, credential, *, tenant_active: bool, secret: str | None = None) -> list[dict]:
    """The broker's client for one credential as the database has it (created, rotated, revoked)."""
    if not credential.active:
        return forget_commands(credential.username)
    role, acls = rules_for(slug, credential)
    commands = ensure_role(role, acls)
    if role != tenant_role(slug):  # a lock is in its own role only
        commands.append({"command": "removeClientRole", "username": credential.username, "rolename": tenant_role(slug)})
    commands += client_commands(credential.username, role, secret=secret, enabled=tenant_active)
    if secret is not None:  # a new secret: a client connected with the old one must leave
        commands.insert(len(commands) - 1, {"command": "disableClient", "username": credential.username})
    return commands


def apply_credential(slug: str, credential, *, tenant_active: bool, secret: str | None = None) -> None:
    DynamicSecurity().run(credential_commands(slug, credential, tenant_active=tenant_active, secret=secret))


def bridge_commands(url: str | None = None) -> list[dict]:
    """The bridge's client (the credentials in MQTT_URL, or `url`) and its role."""
    username, password = url_credentials(url or settings.MQTT_URL)
    if not username:
        return []
    return ensure_role(BRIDGE_ROLE, BRIDGE_ACLS) + client_commands(username, BRIDGE_ROLE, secret=password, enabled=True)


def broker_clients(admin: DynamicSecurity | None = None) -> set[str]:
    """The usernames of every client the broker holds."""
    response = (admin or DynamicSecurity()).run([{"command": "listClients", "verbose": False, "count": -1}])
    return set(response[0].get("data", {}).get("clients", []))


def tenant_commands(tenant, present: set[str] | None = None) -> list[dict]:
    """Everything one tenant's devices need at the broker, from the database (tenant's schema).

    present: the broker's clients (broker_clients()); an active credential issued more than
    LOST_AFTER ago and missing from them is marked lost by the broker (see the module docstring)
    and left out, as are those marked before."""
    from django.utils import timezone

    from telemetry.models import MqttCredential

    if present is not None:
        adopt_lock_keys(tenant.slug)
    credentials = list(MqttCredential.objects.select_related("device"))
    if present is not None:
        settled = timezone.now() - LOST_AFTER  # a newer one's task may still be on its way (retried)
        lost = [
            c.pk
            for c in credentials
            if c.active and not c.broker_lost_at and c.issued_at < settled and c.username not in present
        ]
        if lost:
            MqttCredential.objects.filter(pk__in=lost).update(broker_lost_at=timezone.now())
            log.warning(
                "the broker has lost %s MQTT clients of %s: their secrets must be rotated", len(lost), tenant.slug
            )
            credentials = list(MqttCredential.objects.select_related("device"))
    commands = ensure_role(tenant_role(tenant.slug), tenant_acls(tenant.slug))
    for credential in credentials:
        if credential.active and credential.broker_lost_at:
            continue  # nothing to give the broker: a new secret brings it back
        commands += credential_commands(tenant.slug, credential, tenant_active=tenant.is_active)
    return commands


def adopt_lock_keys(slug: str) -> int:
    """Locks keyed before their key became their MQTT password get credentials from the key's
    SHA-256 (the same digest): EMQX lets them in at once; Mosquitto, which takes a password only
    in clear, has no client for them, so they are found lost like any other (a new key brings
    them in). Returns how many (tenant's schema)."""
    from django.utils import timezone

    from telemetry.models import Device, MqttCredential

    keyed = Device.objects.filter(kind=Device.Kind.LOCK, token_hash__isnull=False, mqtt_credential__isnull=True)
    made = MqttCredential.objects.bulk_create(
        [
            MqttCredential(
                device=device,
                username=MqttCredential.username_for(slug, device.device_id),
                secret_hash=device.token_hash,
                issued_at=device.token_created_at or timezone.now() - LOST_AFTER,
            )
            for device in keyed
        ],
        ignore_conflicts=True,
    )
    return len(made)


def tenant_forget_commands(admin: DynamicSecurity, slug: str) -> list[dict]:
    """A deleted tenant's clients (in a role of ours, named "<slug>.…"), their lock roles and its role."""
    return [
        command
        for command in prune_commands(admin, known=set(), slugs=None)
        if command.get("username", "").startswith(f"{slug}.")
        or command.get("rolename", "").startswith(lock_role(f"{slug}."))
    ] + [{"command": "deleteRole", "rolename": tenant_role(slug)}]


def prune_commands(admin: DynamicSecurity, known: set[str], slugs: set[str] | None) -> list[dict]:
    """What Fieldwatch made at the broker and no longer knows (a device or tenant deleted while the
    queue was down, a tenant deleted): clients in a role of ours whose username is none of `known`
    (the active credentials), tenant roles of slugs not in `slugs` (None: every one), lock roles of
    unknown locks."""
    listed, roles = admin.run(
        [{"command": "listClients", "verbose": True, "count": -1}, {"command": "listRoles", "count": -1}]
    )
    ours = ("fieldwatch-tenant-", "fieldwatch-lock-")
    commands = [
        {"command": "deleteClient", "username": client["username"]}
        for client in listed.get("data", {}).get("clients", [])
        if client["username"] not in known
        and any(role["rolename"].startswith(ours) for role in client.get("roles", []))
    ]
    for role in roles.get("data", {}).get("roles", []):
        gone_tenant = role.startswith(ours[0]) and (slugs is None or role.removeprefix(ours[0]) not in slugs)
        if gone_tenant or (role.startswith(ours[1]) and role.removeprefix(ours[1]) not in known):
            commands.append({"command": "deleteRole", "rolename": role})
    return commands


def lost_credentials():
    """This tenant's active credentials the broker lost (tenant's schema)."""
    from telemetry.models import MqttCredential

    return MqttCredential.objects.filter(revoked_at=None, broker_lost_at__isnull=False).order_by("username")

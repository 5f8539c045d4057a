"""Devices authenticate to a real Mosquitto (dynamic security plugin, anonymous off) with the
credentials Fieldwatch issues, and reach only their own tenant's topics (issue 11 §1).

The matrix: anonymous refused; a device of acme publishes into acme (the bridge receives it) but
not into globex (refused, never delivered); a wrong secret refused; rotation retires the old
secret; a revoked device is cut off; a suspended tenant's devices are cut off and refused, and
let in again when it is active; the bridge receives everything; mqtt_sync re-applies idempotently.
Locks (seed 004) present their device key: each reaches only its own lock topics, publishing, and
subscribes only to what it is sent; a gateway of the same tenant reaches no lock's topics."""

import json
import uuid

import pytest
from brokers import ROOT, Peer
from django.core.management import call_command
from django_tenants.utils import schema_context
from helpers import sign_in_staff, wait_for

from portal.tenancy.models import Tenant
from telemetry.models import Device, MqttCredential

MATRIX: list[tuple[str, str]] = []  # (case, outcome) for the record: test-artifacts/mqtt-matrix.json


@pytest.fixture(scope="module", autouse=True)
def write_matrix():
    """The MQTT test matrix (issue 11 §5): what each case did on the real broker, as it ran."""
    yield
    if MATRIX:
        artifact = ROOT / "test-artifacts" / "mqtt-matrix.json"
        artifact.parent.mkdir(exist_ok=True)
        artifact.write_text(json.dumps([{"case": case, "outcome": outcome} for case, outcome in MATRIX], indent=1))


@pytest.fixture
def managed(settings, mosquitto):
    settings.MQTT_ADMIN_URL = mosquitto.admin_url
    return mosquitto


@pytest.fixture
def bridge_ear(mosquitto):
    """A subscriber with the bridge's credentials on everything the bridge takes in."""
    from portal.devices.broker import url_credentials

    ear = Peer(mosquitto.port, *url_credentials(mosquitto.url))
    assert ear.connect() == "accepted"
    assert ear.subscribe("tenants/#") and ear.subscribe("smartlock/#")
    yield ear
    ear.close()


def issue(client, slug, device_id, capture) -> tuple[str, str, int]:
    with schema_context(slug):
        device = Device.objects.get_or_create(device_id=device_id)[0]
    with capture(execute=True):  # the task that tells the broker runs when the request commits
        response = client.post(f"/devices/{device.pk}/mqtt/issue/")
    assert response.status_code == 200
    return response.context["mqtt"].username, response.context["new_mqtt_secret"], device.pk


@pytest.fixture
def acme_device(managed, as_acme, django_capture_on_commit_callbacks):
    client = as_acme("acme_operator")
    username, secret, pk = issue(client, "acme", f"gw-{uuid.uuid4().hex[:6]}", django_capture_on_commit_callbacks)
    return {"client": client, "username": username, "secret": secret, "pk": pk}


def test_anonymous_clients_are_refused(mosquitto):
    outcome = Peer(mosquitto.port).connect()
    MATRIX.append(("anonymous connect", outcome))
    assert outcome != "accepted"


def test_an_acme_device_publishes_into_acme_and_the_bridge_receives_it(acme_device, managed, bridge_ear):
    device = Peer(managed.port, acme_device["username"], acme_device["secret"])
    assert device.connect() == "accepted"
    device.publish("tenants/acme/devices/gw/sensors/temp")
    wait_for(lambda: ("tenants/acme/devices/gw/sensors/temp", b"21.5") in bridge_ear.messages, 10, "the bridge's copy")
    MATRIX.append(("acme device → tenants/acme/…", "delivered to the bridge"))
    device.close()


def test_an_acme_device_cannot_publish_into_globex(acme_device, managed, bridge_ear):
    device = Peer(managed.port, acme_device["username"], acme_device["secret"])
    assert device.connect() == "accepted"
    device.publish("tenants/globex/devices/gw/sensors/temp", b"forged")
    device.publish("tenants/acme/devices/gw/sensors/temp", b"marker")  # published after it, delivered
    wait_for(lambda: any(payload == b"marker" for _, payload in bridge_ear.messages), 10, "the marker")
    assert not any(payload == b"forged" for _, payload in bridge_ear.messages)
    MATRIX.append(("acme device → tenants/globex/…", "never delivered"))
    device.close()


def test_a_wrong_secret_is_refused(acme_device, managed):
    outcome = Peer(managed.port, acme_device["username"], "not-the-secret").connect()
    MATRIX.append(("wrong secret", outcome))
    assert outcome != "accepted"


def test_rotation_retires_the_old_secret(acme_device, managed, django_capture_on_commit_callbacks):
    old = Peer(managed.port, acme_device["username"], acme_device["secret"])
    assert old.connect() == "accepted"
    with django_capture_on_commit_callbacks(execute=True):
        response = acme_device["client"].post(f"/devices/{acme_device['pk']}/mqtt/issue/")
    new_secret = response.context["new_mqtt_secret"]
    assert new_secret and new_secret != acme_device["secret"]
    assert old.disconnected.wait(10), "the client with the old secret stays connected"
    assert Peer(managed.port, acme_device["username"], acme_device["secret"]).connect() != "accepted"
    assert Peer(managed.port, acme_device["username"], new_secret).connect() == "accepted"
    MATRIX.append(("rotated: old secret", "cut off and refused; new secret accepted"))


def test_a_revoked_device_is_cut_off(acme_device, managed, django_capture_on_commit_callbacks):
    device = Peer(managed.port, acme_device["username"], acme_device["secret"])
    assert device.connect() == "accepted"
    with django_capture_on_commit_callbacks(execute=True):
        acme_device["client"].post(f"/devices/{acme_device['pk']}/mqtt/revoke/")
    assert device.disconnected.wait(10), "the revoked device stays connected"
    outcome = Peer(managed.port, acme_device["username"], acme_device["secret"]).connect()
    MATRIX.append(("revoked device", f"disconnected; reconnect {outcome}"))
    assert outcome != "accepted"
    with schema_context("acme"):
        assert not MqttCredential.objects.get(device_id=acme_device["pk"]).active


def test_a_suspended_tenants_devices_are_refused_until_it_is_active(
    acme_device, managed, public_client, people, django_capture_on_commit_callbacks
):
    device = Peer(managed.port, acme_device["username"], acme_device["secret"])
    assert device.connect() == "accepted"
    staff = sign_in_staff(public_client, people["staff"])
    acme = Tenant.objects.get(slug="acme")
    with django_capture_on_commit_callbacks(execute=True):
        staff.post(f"/ops/tenants/{acme.pk}/suspend/")
    assert device.disconnected.wait(10), "a suspended tenant's device stays connected"
    outcome = Peer(managed.port, acme_device["username"], acme_device["secret"]).connect()
    assert outcome != "accepted"
    with django_capture_on_commit_callbacks(execute=True):
        staff.post(f"/ops/tenants/{acme.pk}/reactivate/")
    assert Peer(managed.port, acme_device["username"], acme_device["secret"]).connect() == "accepted"
    MATRIX.append(("suspended tenant's device", f"disconnected; reconnect {outcome}; active again: accepted"))


def test_mqtt_sync_reapplies_idempotently(acme_device, managed, capsys):
    call_command("mqtt_sync")
    call_command("mqtt_sync")
    assert "acme: role and" in capsys.readouterr().out
    assert Peer(managed.port, acme_device["username"], acme_device["secret"]).connect() == "accepted"
    MATRIX.append(("mqtt_sync twice", "no error; device still accepted"))


def test_without_an_admin_url_nothing_is_managed(as_acme, settings, django_capture_on_commit_callbacks, mosquitto):
    settings.MQTT_ADMIN_URL = ""
    username, secret, _ = issue(as_acme("acme_operator"), "acme", "unmanaged", django_capture_on_commit_callbacks)
    assert secret  # issued and shown; the broker (EMQX) asks Fieldwatch instead
    assert Peer(mosquitto.port, username, secret).connect() != "accepted"


# --- locks (seed 004): their device key is their password, their own topics their only ones ---


def make_lock(client, capture) -> dict:
    lock_id = f"L{uuid.uuid4().hex[:8].upper()}"
    with capture(execute=True):  # the broker learns the key when the lock is committed
        response = client.post(
            "/locks/new/", {"name": f"Door {lock_id}", "lock_id": lock_id, "protocol": "smartlock", "location": ""}
        )
    assert response.status_code == 200, response.content[:500]
    assert f'data-testid="mqtt-username">acme.{lock_id}<' in response.content.decode()  # told with the key
    with schema_context("acme"):
        pk = Device.objects.get(device_id=lock_id).lock.pk
    return {"id": lock_id, "key": response.context["secret"], "username": f"acme.{lock_id}", "pk": pk}


@pytest.fixture
def acme_locks(managed, as_acme, django_capture_on_commit_callbacks):
    client = as_acme("acme_admin")
    return client, [make_lock(client, django_capture_on_commit_callbacks) for _ in range(2)]


def homes(lock_id):
    return (f"tenants/acme/locks/{lock_id}", f"smartlock/{lock_id}")


def test_a_lock_with_its_device_key_uses_its_own_topics(acme_locks, managed, bridge_ear):
    _, (front, _) = acme_locks
    lock = Peer(managed.port, front["username"], front["key"])
    assert lock.connect() == "accepted"
    for home in homes(front["id"]):
        lock.publish(f"{home}/status", b'{"lock_status": "locked"}')
        assert lock.subscribe(f"{home}/command"), f"{home}/command refused"
        bridge_ear.client.publish(f"{home}/command", b'{"command": "unlock"}', qos=1)
    for home in homes(front["id"]):
        wait_for(lambda home=home: (f"{home}/status", b'{"lock_status": "locked"}') in bridge_ear.messages, 10, home)
        wait_for(lambda home=home: (f"{home}/command", b'{"command": "unlock"}') in lock.messages, 10, home)
    MATRIX.append(("lock → its own status (both topic forms)", "delivered to the bridge"))
    MATRIX.append(("lock subscribes to its own command topics", "granted; receives its commands"))
    lock.close()


def test_a_lock_cannot_reach_another_locks_topics(acme_locks, managed, bridge_ear):
    _, (front, back) = acme_locks
    lock = Peer(managed.port, front["username"], front["key"])
    assert lock.connect() == "accepted"
    for home in homes(back["id"]):
        lock.publish(f"{home}/response", b"forged")
        lock.publish(f"{home}/status", b"forged")
        assert not lock.subscribe(f"{home}/command"), f"{home}/command granted to another lock"
    assert not lock.subscribe("smartlock/+/command") and not lock.subscribe("tenants/acme/#")
    for home in homes(front["id"]):  # nor publish what Fieldwatch sends it
        lock.publish(f"{home}/command", b"forged")
    lock.publish(f"{homes(front['id'])[1]}/status", b"marker")
    wait_for(lambda: any(payload == b"marker" for _, payload in bridge_ear.messages), 10, "the marker")
    assert not any(payload == b"forged" for _, payload in bridge_ear.messages)
    for home in homes(back["id"]):
        bridge_ear.client.publish(f"{home}/command", b"for-the-other", qos=1)
    bridge_ear.client.publish(f"{homes(front['id'])[0]}/status", b"after")
    wait_for(lambda: any(payload == b"after" for _, payload in bridge_ear.messages), 10, "the last message")
    assert not lock.messages
    MATRIX.append(("lock → another lock's status/response", "never delivered"))
    MATRIX.append(("lock subscribes to another lock's command topic", "refused (SUBACK failure)"))
    lock.close()


def test_a_wrong_key_is_refused_and_a_rotated_or_revoked_key_cut_off(
    acme_locks, managed, as_acme, django_capture_on_commit_callbacks
):
    client, (front, _) = acme_locks
    assert Peer(managed.port, front["username"], "not-the-key").connect() != "accepted"
    old = Peer(managed.port, front["username"], front["key"])
    assert old.connect() == "accepted"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/locks/{front['pk']}/actions/rotate-key/")
    key = response.context["secret"]
    assert old.disconnected.wait(10), "the lock with its old key stays connected"
    assert Peer(managed.port, front["username"], front["key"]).connect() != "accepted"
    current = Peer(managed.port, front["username"], key)
    assert current.connect() == "accepted"
    MATRIX.append(("lock key rotated", "old key cut off and refused; new key accepted"))
    with schema_context("acme"):
        device_pk = Device.objects.get(device_id=front["id"]).pk
    with django_capture_on_commit_callbacks(execute=True):
        as_acme("acme_operator").post(f"/devices/{device_pk}/revoke-token/")
    assert current.disconnected.wait(10), "the lock whose key was revoked stays connected"
    outcome = Peer(managed.port, front["username"], key).connect()
    assert outcome != "accepted"
    MATRIX.append(("lock key revoked", f"disconnected; reconnect {outcome}"))


def test_a_deleted_lock_leaves_the_broker(acme_locks, managed, django_capture_on_commit_callbacks):
    client, (front, _) = acme_locks
    lock = Peer(managed.port, front["username"], front["key"])
    assert lock.connect() == "accepted"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/locks/{front['pk']}/delete/")
    assert lock.disconnected.wait(10), "a deleted lock stays connected"
    assert Peer(managed.port, front["username"], front["key"]).connect() != "accepted"
    MATRIX.append(("lock deleted", "disconnected; refused"))


def test_a_gateway_reaches_no_locks_topics(acme_device, acme_locks, managed, bridge_ear):
    _, (front, _) = acme_locks
    gateway = Peer(managed.port, acme_device["username"], acme_device["secret"])
    assert gateway.connect() == "accepted"
    assert gateway.subscribe("tenants/acme/#")  # granted, but lock topics are held back on delivery
    assert not gateway.subscribe(f"tenants/acme/locks/{front['id']}/command")
    assert not gateway.subscribe(f"smartlock/{front['id']}/command")
    gateway.publish(f"tenants/acme/locks/{front['id']}/response", b"forged")
    gateway.publish(f"smartlock/{front['id']}/response", b"forged")
    bridge_ear.client.publish(f"tenants/acme/locks/{front['id']}/command", b'{"pin": "482913"}', qos=1)
    bridge_ear.client.publish("tenants/acme/devices/gw/sensors/t", b"visible", qos=1)
    wait_for(lambda: any(payload == b"visible" for _, payload in gateway.messages), 10, "the gateway's own")
    assert [payload for _, payload in gateway.messages] == [b"visible"]
    assert not any(payload == b"forged" for _, payload in bridge_ear.messages)
    MATRIX.append(("gateway → a lock's response; reads lock commands", "never delivered; held back"))
    gateway.close()


def test_after_the_broker_lost_its_state_mqtt_sync_marks_what_it_cannot_restore(
    acme_device, acme_locks, managed, as_acme, capsys, django_capture_on_commit_callbacks
):
    """Secrets are kept only hashed, so a device client cannot be made again: mqtt_sync restores
    the bridge and the roles, marks the lost clients, names them; a new secret brings each back."""
    from datetime import timedelta

    from django.utils import timezone

    from portal.devices.broker import url_credentials

    client, (front, _) = acme_locks
    with schema_context("acme"):
        MqttCredential.objects.update(issued_at=timezone.now() - timedelta(minutes=10))  # settled long ago
        fresh = Device.objects.create(device_id=f"fresh-{uuid.uuid4().hex[:6]}")
        MqttCredential.issue(fresh, f"acme.{fresh.device_id}")  # its task may still be on its way
    try:
        managed.lose_state()
        assert Peer(managed.port, acme_device["username"], acme_device["secret"]).connect() != "accepted"
        call_command("mqtt_sync")
    finally:
        from portal.devices.broker import DynamicSecurity, bridge_commands

        DynamicSecurity(managed.admin_url).run(bridge_commands(managed.url))  # whatever happened, the bridge is back
    output = capsys.readouterr()
    assert Peer(managed.port, *url_credentials(managed.url)).connect() == "accepted"  # the bridge: restored
    assert acme_device["username"] in output.err and front["username"] in output.err
    assert fresh.device_id not in output.err
    with schema_context("acme"):
        lost = set(MqttCredential.objects.filter(broker_lost_at__isnull=False).values_list("username", flat=True))
    assert {acme_device["username"], front["username"]} <= lost and f"acme.{fresh.device_id}" not in lost
    assert Peer(managed.port, acme_device["username"], acme_device["secret"]).connect() != "accepted"
    page = acme_device["client"].get(f"/devices/{acme_device['pk']}/")
    assert 'data-testid="mqtt-lost"' in page.content.decode()
    assert 'data-testid="lock-mqtt-lost"' in client.get(f"/locks/{front['pk']}/").content.decode()
    MATRIX.append(("broker lost its state; mqtt_sync", "bridge restored; devices marked lost, named, refused"))

    with django_capture_on_commit_callbacks(execute=True):
        response = acme_device["client"].post(f"/devices/{acme_device['pk']}/mqtt/issue/")
        rotated = client.post(f"/locks/{front['pk']}/actions/rotate-key/")
    assert Peer(managed.port, acme_device["username"], response.context["new_mqtt_secret"]).connect() == "accepted"
    assert Peer(managed.port, front["username"], rotated.context["secret"]).connect() == "accepted"
    call_command("mqtt_sync")
    assert acme_device["username"] not in capsys.readouterr().err  # not marked again
    with schema_context("acme"):
        assert not MqttCredential.objects.filter(
            username__in=[acme_device["username"], front["username"]], broker_lost_at__isnull=False
        ).exists()
    MATRIX.append(("lost client given a new secret (a lock: a new key)", "accepted again"))


def test_a_deleted_tenants_devices_leave_the_broker(db, managed, django_capture_on_commit_callbacks):
    from portal.devices import broker
    from portal.tenancy.provisioning import create_tenant

    tenant = create_tenant("Short Lived", f"short-{uuid.uuid4().hex[:6]}")
    with schema_context(tenant.schema_name):
        device = Device.objects.create(device_id="gw")
        credential, secret = MqttCredential.issue(device, MqttCredential.username_for(tenant.slug, "gw"))
        broker.apply_credential(tenant.slug, credential, tenant_active=True, secret=secret)
    peer = Peer(managed.port, credential.username, secret)
    assert peer.connect() == "accepted"
    from django.db import connection

    with connection.cursor() as cursor:  # the test's one transaction: check its rows now, so the schema may go
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with django_capture_on_commit_callbacks(execute=True):
        tenant.delete(force_drop=True)
    assert peer.disconnected.wait(10), "a deleted tenant's device stays connected"
    assert Peer(managed.port, credential.username, secret).connect() != "accepted"
    assert broker.tenant_role(tenant.slug) not in set(
        broker.DynamicSecurity().run([{"command": "listRoles", "count": -1}])[0]["data"]["roles"]
    )
    MATRIX.append(("tenant deleted", "its devices disconnected and refused; its role gone"))


def test_mqtt_sync_removes_what_belongs_to_nothing_any_more(acme_device, managed, capsys):
    """Left by a device or tenant deleted while the queue was down: a client in a role of ours with
    no credential, the role of a tenant that is gone."""
    from portal.devices import broker

    broker.DynamicSecurity().run(
        broker.ensure_role(broker.tenant_role("long-gone"), broker.tenant_acls("long-gone"))
        + broker.client_commands("acme.ghost", broker.tenant_role("acme"), secret="ghost-secret", enabled=True)
        + [{"command": "createClient", "username": "someone.else", "password": "theirs"}]  # not ours: kept
    )
    assert Peer(managed.port, "acme.ghost", "ghost-secret").connect() == "accepted"
    call_command("mqtt_sync")
    assert "clients and roles of devices and tenants that are gone" in capsys.readouterr().out
    assert Peer(managed.port, "acme.ghost", "ghost-secret").connect() != "accepted"
    assert Peer(managed.port, acme_device["username"], acme_device["secret"]).connect() == "accepted"
    clients = broker.broker_clients()
    assert "someone.else" in clients and "acme.ghost" not in clients
    roles = set(broker.DynamicSecurity().run([{"command": "listRoles", "count": -1}])[0]["data"]["roles"])
    assert broker.tenant_role("long-gone") not in roles and broker.tenant_role("acme") in roles
    MATRIX.append(("mqtt_sync with leftovers of deleted devices/tenants", "removed; others untouched"))

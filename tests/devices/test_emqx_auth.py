"""EMQX asks Fieldwatch who may connect and what they may do (HTTP authentication and
authorisation, EMQX's documented request and response shapes), on the lean path of the public host."""

import json

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from portal.tenancy.models import Tenant
from telemetry.models import Device, MqttCredential

SECRET = "emqx-shared-secret-0123456789"


@pytest.fixture
def emqx(settings, db):
    settings.EMQX_AUTH_SECRET = SECRET
    settings.MQTT_URL = "mqtt://fieldwatch-bridge:bridge-pw@127.0.0.1:1883"
    with schema_context("acme"):
        device = Device.objects.create(device_id="gw-7")
        credential, secret = MqttCredential.issue(device, MqttCredential.username_for("acme", "gw-7"))
    return {"username": credential.username, "secret": secret, "device": device}


def ask(path, body, secret=SECRET, host="localhost"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
    return Client(HTTP_HOST=host).post(path, json.dumps(body), content_type="application/json", **headers)


def result(response):
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


def test_a_device_with_its_secret_may_connect(emqx):
    body = result(ask("/api/mqtt/auth", {"username": emqx["username"], "password": emqx["secret"], "clientid": "c"}))
    assert body == {"result": "allow", "is_superuser": False}


@pytest.mark.parametrize(
    "username, password",
    [("acme.gw-7", "wrong"), ("globex.gw-7", None), ("gw-7", None), ("", ""), ("acme.nobody", "x"), ("a" * 600, "x")],
)
def test_anything_else_is_denied(emqx, username, password):
    body = result(ask("/api/mqtt/auth", {"username": username, "password": password or emqx["secret"]}))
    assert body["result"] == "deny"


def test_a_revoked_device_or_a_suspended_tenant_is_denied(emqx):
    with schema_context("acme"):
        MqttCredential.objects.get().revoke()
    assert result(ask("/api/mqtt/auth", {"username": emqx["username"], "password": emqx["secret"]}))["result"] == "deny"
    with schema_context("acme"):
        MqttCredential.issue(emqx["device"], emqx["username"], raw="fresh-secret")
    Tenant.objects.filter(slug="acme").update(is_active=False)
    assert result(ask("/api/mqtt/auth", {"username": emqx["username"], "password": "fresh-secret"}))["result"] == "deny"


def test_the_bridge_is_the_superuser(emqx):
    body = result(ask("/api/mqtt/auth", {"username": "fieldwatch-bridge", "password": "bridge-pw"}))
    assert body == {"result": "allow", "is_superuser": True}
    assert result(ask("/api/mqtt/auth", {"username": "fieldwatch-bridge", "password": "nope"}))["result"] == "deny"


@pytest.mark.parametrize(
    "topic, action, allowed",
    [
        ("tenants/acme/devices/gw-7/sensors/t", "publish", True),
        ("tenants/acme/devices/#", "subscribe", True),
        ("tenants/acme/sites/roof/assets/ahu/telemetry", "all", True),
        ("tenants/acme/sites/+/assets/+/telemetry", "subscribe", True),
        ("tenants/acme/sites/+/assets/+/telemetry", "publish", False),  # no topic name has a wildcard
        # a gateway neither forges a lock's answer nor reads the PINs its commands carry
        ("tenants/acme/locks/front/response", "publish", False),
        ("tenants/acme/locks/+/command", "subscribe", False),
        ("tenants/acme/#", "subscribe", False),
        ("smartlock/front/response", "publish", False),
        ("tenants/globex/devices/gw-7/sensors/t", "publish", False),
        ("tenants/+/devices/gw-7/sensors/t", "subscribe", False),
        ("#", "subscribe", False),
        ("tenants/acme/x", "delete", False),
    ],
)
def test_a_device_reaches_only_its_tenants_topics(emqx, topic, action, allowed):
    body = result(ask("/api/mqtt/acl", {"username": emqx["username"], "topic": topic, "action": action}))
    assert body == {"result": "allow" if allowed else "deny"}


def test_callers_without_the_shared_secret_get_401_which_emqx_ignores(emqx):
    for secret in (None, "wrong"):
        response = ask("/api/mqtt/auth", {"username": emqx["username"], "password": emqx["secret"]}, secret=secret)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


def test_a_form_post_works_too_and_the_path_is_lean(emqx):
    response = Client(HTTP_HOST="localhost").post(
        "/api/mqtt/auth",
        {"username": emqx["username"], "password": emqx["secret"]},
        HTTP_AUTHORIZATION=f"Bearer {SECRET}",
    )
    assert result(response)["result"] == "allow"
    assert response.wsgi_request.lean is True


@pytest.fixture
def emqx_lock(emqx):
    """A lock of acme whose key (its MQTT password) was just issued, as the lock pages do."""
    from lock_builders import make_lock

    with schema_context("acme"):
        lock = make_lock("FRONT-7")
        make_lock("BACK-7", name="Back door")
        key = lock.device.issue_token()
        lock.device.save()
    return {"username": "acme.FRONT-7", "key": key}


def test_a_lock_presents_its_device_key(emqx_lock):
    body = result(ask("/api/mqtt/auth", {"username": emqx_lock["username"], "password": emqx_lock["key"]}))
    assert body == {"result": "allow", "is_superuser": False}
    with schema_context("acme"):
        device = Device.objects.get(device_id="FRONT-7")
        rotated = device.issue_token()
        device.save(update_fields=["token_hash", "token_created_at", "token_last_used_at", "provisioning_reset_at"])
    assert result(ask("/api/mqtt/auth", {"username": "acme.FRONT-7", "password": emqx_lock["key"]}))["result"] == "deny"
    assert result(ask("/api/mqtt/auth", {"username": "acme.FRONT-7", "password": rotated}))["result"] == "allow"
    with schema_context("acme"):
        device.revoke_token()
        device.save(update_fields=["token_hash", "token_created_at"])
    assert result(ask("/api/mqtt/auth", {"username": "acme.FRONT-7", "password": rotated}))["result"] == "deny"
    # a lock nobody gave a key has no credentials
    assert result(ask("/api/mqtt/auth", {"username": "acme.BACK-7", "password": ""}))["result"] == "deny"


@pytest.mark.parametrize(
    "topic, action, allowed",
    [
        ("tenants/acme/locks/FRONT-7/status", "publish", True),
        ("tenants/acme/locks/FRONT-7/access", "publish", True),
        ("smartlock/FRONT-7/response", "publish", True),
        ("tenants/acme/locks/FRONT-7/command", "subscribe", True),
        ("smartlock/FRONT-7/command", "subscribe", True),
        ("smartlock/FRONT-7/ota", "subscribe", True),
        ("tenants/acme/locks/FRONT-7/access/result", "subscribe", True),
        # not another lock's topics, nor the ones Fieldwatch sends, nor anything wider than its own
        ("tenants/acme/locks/BACK-7/status", "publish", False),
        ("smartlock/BACK-7/response", "publish", False),
        ("tenants/acme/locks/BACK-7/command", "subscribe", False),
        ("smartlock/BACK-7/command", "subscribe", False),
        ("smartlock/+/command", "subscribe", False),
        ("tenants/acme/locks/FRONT-7/#", "subscribe", False),
        ("tenants/acme/locks/FRONT-7/command", "publish", False),
        ("smartlock/FRONT-7/access/result", "publish", False),
        ("tenants/acme/locks/FRONT-7/status", "subscribe", False),
        ("tenants/acme/devices/gw/sensors/t", "publish", False),
        ("tenants/globex/locks/FRONT-7/status", "publish", False),
    ],
)
def test_a_lock_reaches_only_its_own_topics(emqx_lock, topic, action, allowed):
    body = result(ask("/api/mqtt/acl", {"username": emqx_lock["username"], "topic": topic, "action": action}))
    assert body == {"result": "allow" if allowed else "deny"}


def test_a_lock_keyed_before_its_key_was_its_password_is_adopted_by_mqtt_sync(emqx):
    """mqtt_sync's tenant pass (broker.tenant_commands with the broker's clients) gives such a lock
    credentials from its key's digest: EMQX lets it in; Mosquitto has no client for it, so it is
    marked lost (a new key brings it in)."""
    from datetime import timedelta

    from django.utils import timezone
    from lock_builders import make_lock

    from portal.devices import broker
    from telemetry.models import hash_token

    with schema_context("acme"):
        lock = make_lock("OLD-LOCK")
        Device.objects.filter(pk=lock.device.pk).update(  # as keys were issued before: no signal, no credential
            token_hash=hash_token("old-key"), token_created_at=timezone.now() - timedelta(days=30)
        )
        assert not MqttCredential.objects.filter(device=lock.device).exists()
        commands = broker.tenant_commands(Tenant.objects.get(slug="acme"), present=set())
        credential = MqttCredential.objects.get(device=lock.device)
    assert credential.username == "acme.OLD-LOCK" and credential.broker_lost_at is not None
    assert not any(c.get("username") == "acme.OLD-LOCK" for c in commands)  # nothing to give Mosquitto
    assert result(ask("/api/mqtt/auth", {"username": "acme.OLD-LOCK", "password": "old-key"}))["result"] == "allow"
    acl = {"username": "acme.OLD-LOCK", "topic": "smartlock/OLD-LOCK/command", "action": "subscribe"}
    assert result(ask("/api/mqtt/acl", acl))["result"] == "allow"


def test_the_acl_never_lets_a_device_or_lock_out_of_its_own_topics_whatever_is_asked(emqx_lock):
    """Property-based: topics drawn from the tenant's, the lock's, other locks' and tenants' levels,
    wildcards and hostile text. Whatever the answer, an allowed topic is the asker's own."""
    from fuzzing import hostile_text, record
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    level = st.sampled_from(
        ["tenants", "acme", "globex", "locks", "FRONT-7", "BACK-7", "smartlock", "devices", "gw-7", "command",
         "ota", "access", "result", "status", "+", "#", "", "$SYS"]
    ) | hostile_text  # fmt: skip
    prefixes = st.sampled_from(
        ["tenants/acme", "tenants/acme/devices/gw-7", "tenants/acme/locks", "tenants/acme/locks/FRONT-7",
         "tenants/acme/locks/BACK-7", "tenants/acme/locks/+", "smartlock/FRONT-7", "smartlock/BACK-7", "smartlock/+",
         "tenants/globex", "tenants/+", "#", ""]
    )  # fmt: skip
    topics = st.builds(
        lambda prefix, rest: "/".join([prefix, *rest]) if prefix else "/".join(rest) or "x",
        prefixes,
        st.lists(level, max_size=4),
    )
    own_lock = ("tenants/acme/locks/FRONT-7/", "smartlock/FRONT-7/")

    @hsettings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(topic=topics, action=st.sampled_from(["publish", "subscribe", "all"]), who=st.sampled_from(["gw", "lock"]))
    def fuzz(topic, action, who):
        username = emqx_lock["username"] if who == "lock" else "acme.gw-7"
        response = ask("/api/mqtt/acl", {"username": username, "topic": topic, "action": action})
        record("public POST /api/mqtt/acl (known clients)", response.status_code)
        assert response.status_code < 500
        if response.status_code == 413:  # a body over 4 KiB: refused whole, as EMQX never sends one
            return
        if result(response)["result"] == "allow":
            assert "+" not in topic.split("/")[:2] and "#" not in topic.split("/")[:2]
            if who == "lock":
                assert topic.startswith(own_lock) or topic + "/" in own_lock  # its home ("…/#" covers it)
                assert "#" not in topic.split("/") and "+" not in topic.split("/")
            else:
                # "tenants/acme/#" covers "tenants/acme" itself, as in MQTT
                assert topic == "tenants/acme" or topic.startswith("tenants/acme/")
                assert not topic.startswith("tenants/acme/locks/") and topic != "tenants/acme/locks"
                assert (topic.split("/") + [""])[2] not in ("+", "#")  # no wildcard over the tenant's subtrees

    fuzz()

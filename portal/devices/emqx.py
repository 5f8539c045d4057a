"""EMQX's HTTP authentication and authorisation, answered by Fieldwatch (clusters ask us directly
instead of holding credentials of their own). Configure EMQX with, on the public host:

    authentication: POST http://<base domain>/api/mqtt/auth
      body {"username": "${username}", "password": "${password}", "clientid": "${clientid}"}
    authorization:  POST http://<base domain>/api/mqtt/acl
      body {"username": "${username}", "topic": "${topic}", "action": "${action}", "clientid": "${clientid}"}
    both with the header  Authorization: Bearer <EMQX_AUTH_SECRET>

Answers are EMQX's documented shape, 200 with {"result": "allow" | "deny"} (and is_superuser on
authentication). A device is "<slug>.<device id>" with the secret of its MqttCredential (a lock:
its device key), allowed while the credential is not revoked and its tenant is active. What it
may publish and subscribe to are the rules Mosquitto is given (portal.devices.broker.rules_for):
its tenant's topics but its locks', or for a lock only its own. EMQX cannot hold a message back
on delivery as Mosquitto does, so a subscription that could carry a lock's topics to a gateway
(`tenants/<slug>/#`) is denied here. The bridge (MQTT_URL's username and password) is the
superuser. Calls without the shared secret are refused with 401, which EMQX treats as "ignore".
"""

import hmac

from django.conf import settings
from django.http import JsonResponse
from django_tenants.utils import schema_context

from portal.api.endpoint import ApiError, api_endpoint, json_body
from portal.devices.broker import allows, may_subscribe, rules_for, url_credentials
from portal.tenancy.models import Tenant
from telemetry.bounds import storable
from telemetry.models import MqttCredential

MAX_FIELD = 500


def verify_caller(request) -> None:
    secret = settings.EMQX_AUTH_SECRET
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        raise ApiError(401, "unauthenticated", "EMQX must send Authorization: Bearer <EMQX_AUTH_SECRET>.")


def fields(request, *names) -> list[str]:
    data = json_body(request) if request.content_type == "application/json" else request.POST
    if not hasattr(data, "get"):
        raise ApiError(400, "invalid_body", "Send a JSON object (or a form) with " + ", ".join(names) + ".")
    values = []
    for name in names:
        value = data.get(name, "")
        values.append(value if isinstance(value, str) and len(value) <= MAX_FIELD and storable(value) else "")
    return values


def is_bridge(username: str, password: str | None = None) -> bool:
    bridge_user, bridge_password = url_credentials(settings.MQTT_URL)
    if not bridge_user or not hmac.compare_digest(username.encode(), bridge_user.encode()):
        return False
    return password is None or hmac.compare_digest(password.encode(), (bridge_password or "").encode())


def tenant_of(username: str) -> Tenant | None:
    slug, dot, device_id = username.partition(".")
    if not dot or not device_id:
        return None
    return Tenant.objects.active().filter(slug=slug).first()


def decide(allowed: bool, **extra) -> JsonResponse:
    return JsonResponse({"result": "allow" if allowed else "deny", **extra})


@api_endpoint(methods=("POST",), max_bytes=4096)
def authenticate(request):
    verify_caller(request)
    username, password = fields(request, "username", "password")
    if username and is_bridge(username, password):
        return decide(True, is_superuser=True)
    tenant = tenant_of(username)
    if tenant is None:
        return decide(False, is_superuser=False)
    with schema_context(tenant.schema_name):
        credential = MqttCredential.objects.filter(username=username).first()
        allowed = credential is not None and credential.matches(password)
    return decide(allowed, is_superuser=False)


@api_endpoint(methods=("POST",), max_bytes=4096)
def authorize(request):
    verify_caller(request)
    username, topic, action = fields(request, "username", "topic", "action")
    if username and is_bridge(username):
        return decide(True)
    tenant = tenant_of(username)
    if tenant is None or action not in ("publish", "subscribe", "all"):
        return decide(False)
    with schema_context(tenant.schema_name):
        credential = MqttCredential.objects.filter(username=username, revoked_at=None).select_related("device").first()
        if credential is None:
            return decide(False)
        _, acls = rules_for(tenant.slug, credential)
    publish = action in ("publish", "all")
    subscribe = action in ("subscribe", "all")
    if publish and ("+" in topic or "#" in topic):
        return decide(False)  # not a topic name (MQTT forbids wildcards in one), whatever the rules say
    return decide(
        (not publish or allows(acls, "publishClientSend", topic)) and (not subscribe or may_subscribe(acls, topic))
    )

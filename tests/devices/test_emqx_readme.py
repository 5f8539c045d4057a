"""The README's EMQX provisioning, tested as far as it can be here: EMQX itself cannot be installed
from the registries the project's machines reach, so these tests read the six REST calls out of
the README ("The broker's webhook and EMQX"), make the requests EMQX makes from that configuration
as its documentation describes them (HTTP authentication and authorisation: the body template
with ${username}, ${password}, ${clientid}, ${topic}, ${action} filled in, the configured headers,
POST to the configured URL; the HTTP action: the rule's SELECT applied to a publication, posted as
the body "${.}" to the connector's URL and the action's path with the connector's headers) and
send them to Fieldwatch. A change to the README that breaks the recipe fails here."""

import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from telemetry.models import Device, MqttCredential, Reading

README = Path(__file__).resolve().parents[2] / "README.md"
SHELL = {"INGESTION_SECRET": "ingestion-secret-of-the-readme-test", "EMQX_AUTH_SECRET": "emqx-secret-of-the-test"}
PUBLIC_HOST = "localhost"  # the README's fieldwatch.example.com: the public host


def section() -> str:
    text = README.read_text()
    start = text.index("### The broker's webhook and EMQX")
    return text[start : text.index("\n## ", start)]


def provisioning() -> dict[str, tuple[str, dict]]:
    """{REST path: (method, JSON body)} of each curl command in the README's block, the shell's
    '"$NAME"' splices replaced by the values the shell would put there."""
    block = re.search(r"```sh\n(EMQX=.*?)```", section(), re.S).group(1)
    calls = {}
    for command in re.split(r"\n(?=curl )", block)[1:]:
        command = "\n".join(line for line in command.splitlines() if not line.startswith("#"))
        path = re.search(r'"\$EMQX(/[\w/]+)"', command).group(1)
        method = "PUT" if "-X PUT" in command else "POST"
        body = re.search(r"-d '(.*\})'\s*$", command, re.S).group(1)
        body = re.sub(r"'\"\$(\w+)\"'", lambda m: SHELL[m.group(1)], body)
        calls[path] = (method, json.loads(body))  # a backslash stays a backslash in '…': JSON reads \"
    return calls


def render(template, values: dict):
    """EMQX's placeholders (${name}) in a body template, as EMQX fills them per request."""
    if isinstance(template, dict):
        return {key: render(value, values) for key, value in template.items()}
    return re.sub(r"\$\{([\w.]+)\}", lambda m: str(values[m.group(1)]), template)


def send(url: str, headers: dict, body: str):
    """POST as EMQX's HTTP client does: the configured URL and headers, the rendered body."""
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    content_type = extra.pop("HTTP_CONTENT_TYPE", "application/json")
    return Client(HTTP_HOST=PUBLIC_HOST).post(urlsplit(url).path, body, content_type=content_type, **extra)


@pytest.fixture
def fieldwatch(settings, db):
    """Fieldwatch configured with the secrets the README's shell variables hold, a bridge
    user in MQTT_URL and a gateway of acme with an issued MQTT credential."""
    settings.INGESTION_SECRET = SHELL["INGESTION_SECRET"]
    settings.EMQX_AUTH_SECRET = SHELL["EMQX_AUTH_SECRET"]
    settings.MQTT_URL = "mqtt://fieldwatch-bridge:bridge-pw@127.0.0.1:1883"
    with schema_context("acme"):
        device = Device.objects.create(device_id="gw-7")
        credential, secret = MqttCredential.issue(device, MqttCredential.username_for("acme", "gw-7"))
    return {"username": credential.username, "password": secret}


def test_the_readme_provisions_all_six_parts():
    calls = provisioning()
    assert set(calls) == {
        "/connectors",
        "/actions",
        "/rules",
        "/authentication",
        "/authorization/sources",
        "/authorization/settings",
    }
    method, settings_body = calls["/authorization/settings"]
    # Fieldwatch's 401 to a stranger is EMQX's "ignore": what no source decides must be refused
    assert method == "PUT" and settings_body["no_match"] == "deny"


def authenticate(config: dict, username: str, password: str, clientid: str = "gw-7") -> dict:
    body = render(config["body"], {"username": username, "password": password, "clientid": clientid})
    response = send(config["url"], config["headers"], json.dumps(body))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    return response.json()


def test_emqx_authentication_as_configured_lets_a_device_in_with_its_secret_only(fieldwatch):
    _, config = provisioning()["/authentication"]
    assert (config["mechanism"], config["backend"], config["method"]) == ("password_based", "http", "post")
    assert urlsplit(config["url"]).path == "/api/mqtt/auth"
    allowed = authenticate(config, fieldwatch["username"], fieldwatch["password"])
    assert allowed == {"result": "allow", "is_superuser": False}
    assert authenticate(config, fieldwatch["username"], "not-its-secret")["result"] == "deny"
    assert authenticate(config, "globex.gw-7", fieldwatch["password"])["result"] == "deny"
    assert authenticate(config, "fieldwatch-bridge", "bridge-pw") == {"result": "allow", "is_superuser": True}


def authorize(config: dict, username: str, topic: str, action: str) -> str:
    body = render(config["body"], {"username": username, "topic": topic, "action": action, "clientid": "gw-7"})
    response = send(config["url"], config["headers"], json.dumps(body))
    assert response.status_code == 200
    return response.json()["result"]


def test_emqx_authorisation_as_configured_keeps_a_device_to_its_tenant(fieldwatch):
    _, config = provisioning()["/authorization/sources"]
    assert (config["type"], config["method"]) == ("http", "post")
    assert urlsplit(config["url"]).path == "/api/mqtt/acl"
    user = fieldwatch["username"]
    assert authorize(config, user, "tenants/acme/devices/gw-7/sensors/temp", "publish") == "allow"
    assert authorize(config, user, "tenants/globex/devices/gw-7/sensors/temp", "publish") == "deny"
    assert authorize(config, user, "#", "subscribe") == "deny"


def test_a_stranger_without_the_shared_secret_is_ignored_then_refused_by_no_match(fieldwatch):
    _, config = provisioning()["/authentication"]
    headers = {name: value for name, value in config["headers"].items() if name != "authorization"}
    body = render(
        config["body"], {"username": fieldwatch["username"], "password": fieldwatch["password"], "clientid": "x"}
    )
    assert send(config["url"], headers, json.dumps(body)).status_code == 401  # EMQX: "ignore"


def rule_output(sql: str, message: dict) -> dict:
    """EMQX's rule SQL on one publication: `SELECT a as b, c FROM "filter"`, the filter matched as
    MQTT matches it (+ one level, # the rest)."""
    selected, topic_filter = re.fullmatch(r'SELECT (.+) FROM "(.+)"', sql).groups()
    pattern = "^" + re.escape(topic_filter).replace(r"\+", "[^/]+").replace("/\\#", "(/.*)?") + "$"
    assert re.match(pattern, message["topic"]), f"{topic_filter} does not match {message['topic']}"
    output = {}
    for column in selected.split(","):
        name, _, alias = column.strip().partition(" as ")
        output[alias or name] = message[name]
    return output


def test_the_rule_and_action_as_configured_store_a_publication_as_the_bridge_would(fieldwatch):
    calls = provisioning()
    connector, action, rule = calls["/connectors"][1], calls["/actions"][1], calls["/rules"][1]
    assert action["connector"] == connector["name"] and rule["actions"] == [f"http:{action['name']}"]
    assert action["parameters"]["method"] == "post" and action["parameters"]["body"] == "${.}"
    publication = {
        "clientid": "gw-7",
        "topic": "tenants/acme/devices/gw-7/sensors/temp",
        "payload": json.dumps({"value": 21.5}),
        "timestamp": int(time.time() * 1000) - 60_000,  # EMQX's message time, in milliseconds
    }
    output = rule_output(rule["sql"], publication)
    quoted = re.search(r"The action posts `(\{.*?\})`", section(), re.S).group(1)
    assert set(json.loads(quoted.replace("\n", " "))) == set(output)  # the README's example is the rule's
    headers = connector["headers"] | action["parameters"].get("headers", {})
    response = send(connector["url"] + action["parameters"]["path"], headers, json.dumps(output))  # ${.}
    assert response.status_code == 200 and response.json()["written"] == 1, response.json()
    with schema_context("acme"):
        [reading] = Reading.objects.select_related("sensor__device")
    assert (reading.sensor.device.device_id, reading.sensor.key, reading.value) == ("gw-7", "temp", 21.5)
    assert int(reading.ts.timestamp() * 1000) == publication["timestamp"]

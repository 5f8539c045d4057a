"""Every action of the portal for every role (portal.tenancy.access says who may do what).

Viewers read; operators act on devices and data; admins manage configuration and people. An
action a role may not take is a 403 and changes nothing; one it may take is never a 403.
"""

from dataclasses import dataclass

import pytest
from django_tenants.utils import schema_context

from portal.facilities.models import Asset, DeviceBinding, Site
from telemetry.models import DeadLetter, Device, Sensor

PERSONAS = {"viewer": "acme_viewer", "operator": "acme_operator", "admin": "acme_admin", "owner": "acme_owner"}
RANK = ["viewer", "operator", "admin", "owner"]


@dataclass(frozen=True)
class Action:
    name: str
    method: str
    url: str  # formatted with the objects: {device} {asset} {site} {binding} {sensor} {letter} {spare}
    role: str  # the least role that may take it
    data: tuple = ()

    def __str__(self):
        return self.name


ACTIONS = [
    # everyone reads
    Action("read the dashboard", "get", "/", "viewer"),
    Action("read a device", "get", "/devices/{device}/", "viewer"),
    Action("read an asset", "get", "/assets/{asset}/", "viewer"),
    Action("read a site", "get", "/sites/{site}/", "viewer"),
    Action("export devices", "get", "/devices/?export=csv", "viewer"),
    Action("explore readings", "get", "/explorer/", "viewer"),
    # operators act on devices and data
    Action("register a device", "post", "/devices/{device}/register/", "operator"),
    Action("unregister a device", "post", "/devices/{device}/unregister/", "operator"),
    Action("rotate a device token", "post", "/devices/{device}/rotate-token/", "operator"),
    Action("revoke a device token", "post", "/devices/{device}/revoke-token/", "operator"),
    Action("reset provisioning", "post", "/devices/{device}/reset-provisioning/", "operator"),
    Action("issue MQTT credentials", "post", "/devices/{device}/mqtt/issue/", "operator"),
    Action("open the install form", "get", "/assets/{asset}/devices/new/", "operator"),
    Action("install a device", "post", "/assets/{asset}/devices/new/", "operator", (("device", "{spare}"),)),
    Action("remove a device", "post", "/assets/{asset}/devices/{binding}/remove/", "operator"),
    Action("edit a device", "post", "/devices/{device}/edit/", "operator", (("name", "Roof"), ("kind", "gateway"))),
    Action("open a sensor's form", "get", "/devices/{device}/sensors/{sensor}/edit/", "operator"),
    Action(
        "edit a sensor",
        "post",
        "/devices/{device}/sensors/{sensor}/edit/",
        "operator",
        (("max_value", "50"), ("precision", "2")),
    ),
    Action("read dead letters", "get", "/dead-letters/", "operator"),
    Action("replay dead letters", "post", "/dead-letters/replay/", "operator", (("ids", "{letter}"),)),
    Action("open the silence form", "get", "/alerts/silences/new/", "operator"),
    # admins manage configuration and people
    Action("create a site", "post", "/sites/new/", "admin", (("name", "North"), ("time_zone", "UTC"))),
    Action("edit a site", "get", "/sites/{site}/edit/", "admin"),
    Action("delete a site", "get", "/sites/{site}/delete/", "admin"),
    Action("create an asset", "get", "/assets/new/", "admin"),
    Action("edit an asset", "get", "/assets/{asset}/edit/", "admin"),
    Action("delete an asset", "post", "/assets/{asset}/delete/", "admin"),
    Action("change telemetry settings", "get", "/settings/telemetry/", "admin"),
    Action("manage API keys", "get", "/settings/api-keys/", "admin"),
    Action(
        "change the organisation's time zone",
        "post",
        "/settings/organisation/",
        "admin",
        (("name", "Acme"), ("time_zone", "Europe/Lisbon")),
    ),
    Action("create an alert rule", "get", "/alerts/rules/new/", "admin"),
    Action("create a channel", "get", "/alerts/channels/new/", "admin"),
    Action("manage members", "get", "/members/", "admin"),
    Action("read the audit log", "get", "/audit/", "admin"),
]


@pytest.fixture
def objects(db):
    with schema_context("acme"):
        site = Site.objects.create(name="Plant")
        asset = Asset.objects.create(site=site, tag="CH-1")
        device = Device.objects.create(device_id="gw-1", mac="AA:BB:CC:DD:EE:01")
        sensor = Sensor.objects.create(device=device, key="temp", unit="°C")
        binding = DeviceBinding.objects.create(asset=asset, device=device)
        spare = Device.objects.create(device_id="gw-spare")
        letter = DeadLetter.objects.create(source="mqtt", topic="tenants/acme/x", payload="{}", reason="unknown_sensor")
        return {
            "device": device.pk,
            "asset": asset.pk,
            "site": site.pk,
            "binding": binding.pk,
            "sensor": sensor.pk,
            "spare": spare.pk,
            "letter": letter.pk,
        }


def request(client, action: Action, objects: dict):
    url = action.url.format(**objects)
    if action.method == "get":
        return client.get(url)
    return client.post(url, {key: value.format(**objects) for key, value in action.data})


@pytest.mark.parametrize("role", RANK)
@pytest.mark.parametrize("action", ACTIONS, ids=str)
def test_each_role_may_take_exactly_its_actions(as_acme, objects, action, role):
    response = request(as_acme(PERSONAS[role]), action, objects)
    allowed = RANK.index(role) >= RANK.index(action.role)
    if allowed:
        assert response.status_code in (200, 204, 302), (action.name, role, response.status_code)
    else:
        assert response.status_code == 403, (action.name, role, response.status_code)


def test_a_viewer_is_refused_every_device_action_and_nothing_changes(as_acme, objects):
    client = as_acme("acme_viewer")
    for action in ACTIONS:
        if action.role != "viewer" and action.method == "post":
            assert request(client, action, objects).status_code == 403, action.name
    with schema_context("acme"):
        device = Device.objects.get(pk=objects["device"])
        assert device.assigned_at is None and device.token_hash is None and device.provisioning_reset_at is None
        assert DeviceBinding.objects.count() == 1 and Site.objects.count() == 1 and Asset.objects.count() == 1
        assert DeadLetter.objects.get(pk=objects["letter"]).replayed_at is None


def test_an_operator_sees_the_device_actions_but_not_the_asset_configuration(as_acme, objects):
    client = as_acme("acme_operator")
    device_page = client.get(f"/devices/{objects['device']}/").content.decode()
    assert 'data-testid="device-actions"' in device_page and "Rotate token" in device_page
    asset_page = client.get(f"/assets/{objects['asset']}/").content.decode()
    assert "Install device" in asset_page and f"/assets/{objects['asset']}/edit/" not in asset_page
    nav = client.get("/").content.decode()
    assert "/dead-letters/" in nav and "/audit/" not in nav
    viewer_page = as_acme("acme_viewer").get(f"/devices/{objects['device']}/").content.decode()
    assert 'data-testid="device-actions"' not in viewer_page

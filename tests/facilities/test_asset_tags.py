"""Asset tags are MQTT topic levels: `/`, `#` and `+` are refused with a clear message; tags are
unique per site only, so lists and menus name the site beside the tag."""

import pytest
from django_tenants.utils import schema_context

from portal.facilities.models import Asset, Site


@pytest.fixture
def sites(db):
    with schema_context("acme"):
        return Site.objects.create(name="North plant"), Site.objects.create(name="South plant")


@pytest.mark.parametrize("tag", ["CHILLER/1", "AHU#2", "PUMP+3", "COLD ROOM"])
def test_a_tag_that_cannot_be_a_topic_level_is_refused(as_acme, sites, tag):
    response = as_acme("acme_admin").post(
        "/assets/new/", {"site": sites[0].pk, "tag": tag, "type": "chiller", "status": "operational"}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "A tag cannot contain" in html
    with schema_context("acme"):
        assert not Asset.objects.exists()


def test_the_message_names_the_characters_found(as_acme, sites):
    response = as_acme("acme_admin").post(
        "/assets/new/", {"site": sites[0].pk, "tag": "A/B+C", "type": "chiller", "status": "operational"}
    )
    assert "“+” “/”" in response.content.decode()


def test_a_good_tag_is_saved_in_capitals(as_acme, sites):
    response = as_acme("acme_admin").post(
        "/assets/new/", {"site": sites[0].pk, "tag": " chiller-001 ", "type": "chiller", "status": "operational"}
    )
    assert response.status_code == 302
    with schema_context("acme"):
        assert Asset.objects.get().tag == "CHILLER-001"


def test_two_assets_with_one_tag_are_told_apart_by_their_site(as_acme, sites):
    with schema_context("acme"):
        for site in sites:
            Asset.objects.create(site=site, tag="CHILLER-001")
    client = as_acme("acme_viewer")
    assets = client.get("/assets/").content.decode()
    assert assets.count("CHILLER-001") == 2 and "North plant" in assets and "South plant" in assets
    menu = client.get("/alerts/").content.decode()
    assert "CHILLER-001 · North plant" in menu and "CHILLER-001 · South plant" in menu
    rule_form = as_acme("acme_admin").get("/alerts/rules/new/").content.decode()
    assert "CHILLER-001 · North plant" in rule_form and "CHILLER-001 · South plant" in rule_form

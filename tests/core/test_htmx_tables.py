"""Every list's htmx swap can be repeated: the `table` partial is the whole `<div id="table">`.

The filter bar, sort links and pagination replace #table with outerHTML. A partial that was only
the inside of #table removed the id on the first swap, and every later change failed with
htmx:targetError (devices list, explorer paging). These tests do what htmx does: swap, then use a
link of the swapped-in markup, and swap again.
"""

import re
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest
from telemetry_builders import NOW, reading

from portal.core.formatting import local_input
from telemetry.ingest import ingest
from telemetry.models import Device

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
HTMX = {"HX-Request": "true", "HX-Target": "table"}
LISTS = [
    "/devices/",
    "/assets/",
    "/sites/",
    "/dead-letters/",
    "/audit/",
    "/members/",
    "/alerts/",
    "/alerts/rules/",
    "/alerts/silences/",
    "/alerts/deliveries/",
    "/settings/api-keys/",
]


def test_every_table_partial_is_the_whole_table_div():
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        for body in re.findall(r"{% partialdef table inline %}(.*?){% endpartialdef %}", text, re.S):
            assert body.strip().startswith('<div id="table">'), f"{template}: the partial must be the #table div"


def swapped_target(response) -> str:
    """What htmx's outerHTML swap of #table leaves in the page: the answer must carry the id."""
    html = response.content.decode().strip()
    assert html.startswith('<div id="table"'), html[:200]
    return html


def next_url(html: str, testid: str) -> str:
    found = re.search(rf'hx-get="([^"]+)"[^>]*data-testid="{testid}"', html)
    assert found, f"no {testid} link"
    return unescape(found.group(1))


@pytest.mark.parametrize("url", LISTS)
def test_a_list_answers_htmx_with_a_table_it_can_swap_again(as_acme, url):
    client = as_acme("acme_owner")
    swapped_target(client.get(url, {"sort": "-pk"}, headers=HTMX))
    swapped_target(client.get(url, {"q": "x"}, headers=HTMX))


@pytest.fixture
def many_devices(in_acme, time_machine):
    time_machine.move_to(NOW, tick=False)
    ingest([reading(device=f"dev-{n:03}", sensor="temp", value=1.0, minutes=1) for n in range(160)], source="mqtt")
    assert Device.objects.count() == 160


def test_three_filter_changes_and_two_pages_in_a_row_on_the_devices_list(as_acme, many_devices):
    client = as_acme("acme_viewer")
    for params in ({"q": "dev-1"}, {"q": "dev-1", "sort": "-device_id"}, {"q": "dev", "status": "online"}):
        swapped_target(client.get("/devices/", params, headers=HTMX))
    html = swapped_target(client.get("/devices/", {"q": "dev"}, headers=HTMX))
    html = swapped_target(client.get("/devices/" + next_url(html, "page-next"), headers=HTMX))
    assert "Page 2 of 4" in html
    html = swapped_target(client.get("/devices/" + next_url(html, "page-next"), headers=HTMX))
    assert "Page 3 of 4" in html


def test_the_page_jump_keeps_every_filter_and_goes_to_the_page_asked(as_acme, many_devices):
    client = as_acme("acme_viewer")
    html = swapped_target(client.get("/devices/", {"q": "dev", "sort": "-device_id"}, headers=HTMX))
    form = re.search(r'<form[^>]*data-testid="page-jump".*?</form>', html, re.S).group(0)
    hidden = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form))
    assert hidden == {"q": "dev", "sort": "-device_id"}
    response = client.get("/devices/", {**hidden, "page": "4"}, headers=HTMX)
    assert "Page 4 of 4" in swapped_target(response)
    assert [d.device_id for d in response.context["rows"]][-1] == "dev-000"


def test_explorer_next_works_past_page_two_and_offers_a_page_jump(as_acme, in_acme, time_machine):
    time_machine.move_to(NOW, tick=False)
    ingest([reading(device="gw-1", sensor="temp", value=float(m), minutes=m) for m in range(1, 200)], source="mqtt")
    device = Device.objects.get(device_id="gw-1")
    sensor = device.sensors.get()
    client = as_acme("acme_viewer")
    query = {"device": device.pk, "sensor": sensor.pk, "bucket": "raw"}
    query |= {"from": local_input(NOW - timedelta(days=1)), "to": local_input(NOW)}
    html = swapped_target(client.get("/explorer/", query, headers=HTMX))
    assert 'data-testid="page-jump"' in html
    for page in (2, 3, 4):
        html = swapped_target(client.get("/explorer/" + next_url(html, "page-next"), headers=HTMX))
        assert f"Page {page} of 4" in html

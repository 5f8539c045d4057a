import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.devices.filters import DeviceFilter
from telemetry.models import Device

URL = "/devices/"


@pytest.fixture
def fleet(make_device, frozen):
    make_device(
        "gw-roof", name="Roof gateway", kind="gateway", firmware="2.1", mac="AA:BB:CC:00:00:01", sensors=("temp", "hum")
    )
    make_device(
        "ctl-chiller",
        name="Chiller controller",
        kind="controller",
        firmware="1.0",
        sensors=("supply", "return", "power"),
    )
    make_device("node-17", name="Freezer node", kind="sensor_node", firmware="2.1", minutes=60)  # offline
    Device.objects.create(device_id="lock-9", kind="lock")  # never seen, no sensors


def device_ids(response):
    return [device.device_id for device in response.context["rows"]]


def csv_device_ids(response):
    text = b"".join(response.streaming_content).decode()
    return [row["device_id"] for row in csv.DictReader(io.StringIO(text))]


def test_it_lists_devices_with_status_and_sensor_counts(as_acme, fleet):
    response = as_acme("acme_viewer").get(URL)
    assert response.status_code == 200
    rows = {device.device_id: device for device in response.context["rows"]}
    assert list(rows) == ["ctl-chiller", "gw-roof", "lock-9", "node-17"]
    assert rows["ctl-chiller"].sensor_count == 3 and rows["lock-9"].sensor_count == 0
    assert rows["gw-roof"].online and not rows["node-17"].online
    html = response.content.decode()
    assert "Roof gateway" in html and "online" in html and "an hour ago" in html and "never" in html


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"q": "roof"}, ["gw-roof"]),  # name
        ({"q": "NODE-1"}, ["node-17"]),  # device id, any case
        ({"q": "cc:00:00:01"}, ["gw-roof"]),  # MAC address
        ({"kind": "controller"}, ["ctl-chiller"]),
        ({"status": "online"}, ["ctl-chiller", "gw-roof"]),
        ({"status": "offline"}, ["lock-9", "node-17"]),
        ({"firmware": "2.1"}, ["gw-roof", "node-17"]),
        ({"firmware": "2.1", "status": "offline"}, ["node-17"]),
    ],
)
def test_filters_and_search_narrow_the_rows(as_acme, fleet, params, expected):
    response = as_acme("acme_viewer").get(URL, params)
    assert device_ids(response) == expected
    assert DeviceFilter(params, Device.objects.all()).qs.count() == len(expected)


def test_sorting_by_last_seen_puts_never_seen_devices_last_both_ways(as_acme, fleet):
    client = as_acme("acme_viewer")
    assert device_ids(client.get(URL, {"sort": "last_seen"})) == ["node-17", "ctl-chiller", "gw-roof", "lock-9"]
    assert device_ids(client.get(URL, {"sort": "-last_seen"})) == ["ctl-chiller", "gw-roof", "node-17", "lock-9"]
    assert device_ids(client.get(URL, {"sort": "-name"})) == ["gw-roof", "node-17", "ctl-chiller", "lock-9"]
    assert device_ids(client.get(URL, {"sort": "firmware"})) == ["lock-9", "ctl-chiller", "gw-roof", "node-17"]


def test_csv_has_exactly_the_rows_of_the_filtered_sorted_page(as_acme, fleet):
    client = as_acme("acme_viewer")
    params = {"firmware": "2.1", "sort": "-device_id"}
    page = client.get(URL, params)
    export = client.get(URL, {**params, "export": "csv"})
    assert export["Content-Type"].startswith("text/csv")
    assert csv_device_ids(export) == device_ids(page) == ["node-17", "gw-roof"]


def test_csv_columns_say_status_firmware_and_sensor_count(as_acme, fleet):
    export = as_acme("acme_viewer").get(URL, {"q": "roof", "export": "csv"})
    (row,) = csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode()))
    assert (
        row["online"] == "true"
        and row["firmware"] == "2.1"
        and row["sensors"] == "2"
        and row["mac"] == "AA:BB:CC:00:00:01"
    )


GARBAGE = {"kind": "toaster", "status": "maybe", "firmware": "9.9", "registration": "perhaps", "sort": "-nope"}


@pytest.mark.parametrize("name", GARBAGE)
def test_a_garbage_filter_value_is_ignored_not_an_error(as_acme, fleet, name):
    client = as_acme("acme_viewer")
    unfiltered = device_ids(client.get(URL))
    assert len(unfiltered) == 4
    response = client.get(URL, {name: GARBAGE[name]})  # none of these is a value the menus offer
    assert response.status_code == 200 and device_ids(response) == unfiltered
    assert csv_device_ids(client.get(URL, {name: GARBAGE[name], "export": "csv"})) == unfiltered


def test_all_garbage_at_once_and_a_garbage_page_show_the_first_page_of_everything(as_acme, fleet):
    client = as_acme("acme_viewer")
    response = client.get(URL, GARBAGE | {"page": "x"})
    assert response.status_code == 200 and device_ids(response) == device_ids(client.get(URL))
    assert response.context["page"].number == 1


def test_htmx_request_gets_only_the_table(as_acme, fleet):
    response = as_acme("acme_viewer").get(
        URL, {"kind": "gateway"}, headers={"HX-Request": "true", "HX-Target": "table"}
    )
    html = response.content.decode()
    # the whole #table (its swap replaces it, outerHTML), no page around it
    assert "gw-roof" in html and "navbar" not in html and html.strip().startswith('<div id="table">')
    assert "HX-Request" in response["Vary"]


def test_empty_states_tell_no_devices_from_no_match(as_acme, in_acme):
    client = as_acme("acme_viewer")
    assert "No devices yet" in client.get(URL).content.decode()
    Device.objects.create(device_id="gw-1")
    assert "No device matches these filters." in client.get(URL, {"q": "zzz"}).content.decode()


def test_every_member_may_read_and_outsiders_may_not(as_acme, fleet, acme_client, people):
    assert as_acme("acme_viewer").get(URL).status_code == 200
    from helpers import sign_in

    assert sign_in(acme_client, people["outsider"], "acme").get(URL).status_code == 403


def test_query_count_does_not_grow_with_devices(as_acme, make_device, frozen, django_assert_max_num_queries):
    client = as_acme("acme_viewer")
    for n in range(5):
        make_device(f"gw-{n:02}", sensors=("a", "b"), firmware=f"1.{n}")
    client.get(URL)  # warm up: session and the like
    with CaptureQueriesContext(connection) as five:
        assert len(device_ids(client.get(URL))) == 5
    for n in range(5, 50):
        make_device(f"gw-{n:02}", sensors=("a", "b"), firmware=f"1.{n}")
    with django_assert_max_num_queries(len(five)):
        assert len(device_ids(client.get(URL))) == 50

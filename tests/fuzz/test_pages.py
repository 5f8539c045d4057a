"""Every GET page of a tenant host and of the public site, fuzzed in its path ids and its query
parameters (the filter names of every list, the range/bucket/since of charts and live endpoints,
and names no page knows), signed in as someone who may see it. Assertion: no 500 (the test client
re-raises a view's exception, so a crash fails the example that caused it)."""

from itertools import islice
from unittest import mock

import pytest
from django.test import Client
from django_tenants.utils import schema_context
from fuzzing import hostile_text, query_string, record, walk
from helpers import sign_in, sign_in_staff
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.core.filters import ListFilterSet

EXAMPLES = 15
SKIP_PREFIXES = ("api/", "ingest/", "accounts/", "switch/", "static/")


def filter_names() -> set[str]:
    """Every query parameter a list page reads: each FilterSet's filters (and the sort)."""
    import importlib

    for module in (
        "portal.facilities.filters",
        "portal.devices.filters",
        "portal.devices.deadletters",
        "portal.alerts.filters",
        "portal.audit.filters",
        "portal.tenancy.filters",
        "portal.ops.filters",
        "portal.api.keys",
    ):
        importlib.import_module(module)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    return {name for cls in subclasses(ListFilterSet) for name in cls.base_filters}


PAGE_PARAMS = {"page", "sort", "export", "range", "bucket", "start", "end", "since", "site", "next", "cursor", "q"}
PAGE_PARAMS |= {"v", "count"}  # the dashboard poll's versions, the alert badge's count
NAMES = sorted(filter_names() | PAGE_PARAMS)
params = st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=8)), hostile_text, max_size=5)


def routes(urlconf: str) -> list[str]:
    return sorted(
        {route for route, _, _ in walk(urlconf) if not route.startswith(SKIP_PREFIXES) and "(?P" not in route}
    )


@pytest.fixture(scope="module")
def demo_pks(django_db_setup, django_db_blocker):
    """acme with the demo's sites, assets, devices, rules and channels (committed, removed after)."""
    from portal.core.management.commands.seed_demo import Command
    from portal.facilities import demo
    from portal.tenancy.models import Tenant

    full_history = demo.history
    with django_db_blocker.unblock(), mock.patch.object(demo, "history", lambda slug: islice(full_history(slug), 3000)):
        Command().seed_apps(Tenant.objects.get(slug="acme"))
        with schema_context("acme"):
            from portal.alerts.models import Alert, AlertRule, Channel, Notification, Silence
            from portal.facilities.models import Asset, DeviceBinding, Site
            from telemetry.models import DeadLetter, Device

            models = (Site, Asset, Device, DeviceBinding, AlertRule, Alert, Channel, Notification, Silence, DeadLetter)
            pks = {pk for model in models for pk in model.objects.values_list("pk", flat=True)[:3]}
    yield sorted(pks)
    with django_db_blocker.unblock(), schema_context("acme"):
        wipe_acme()


def wipe_acme():
    """Delete what the demo seeded in acme, children first (the people stay)."""
    from django.apps import apps
    from django.db import connection

    from portal.tenancy.models import LockRoute

    fleet_apps = ("telemetry", "facilities", "alerts", "outlets", "locks")
    tenant_models = [m for m in apps.get_models() if m._meta.app_label in fleet_apps]
    with connection.cursor() as cursor:
        tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in tenant_models if not m._meta.proxy)
        cursor.execute(f"TRUNCATE {tables} CASCADE")
    # the demo's locks are also routed from the public schema (seed 004's smartlock/{id} topics):
    # a route left behind makes the next demo skip those locks
    LockRoute.objects.filter(tenant__schema_name=connection.schema_name).delete()


def fill(route: str, ids, data) -> str:
    """The route with each <converter:name> replaced by a drawn value."""
    import re

    def value(match):
        converter = match.group(1)
        if converter == "int":
            return str(data.draw(st.one_of(st.sampled_from(ids), st.integers(0, 2**63 - 1)), label="id"))
        if converter == "slug":
            return data.draw(st.sampled_from(["acme", "globex", "nope"]), label="slug")
        return quote_part(data.draw(hostile_text.filter(lambda t: t and "/" not in t), label="text"))

    return "/" + re.sub(r"<(?:(\w+):)?\w+>", value, route)


def quote_part(text):
    from urllib.parse import quote

    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def get(client, route, path, data):
    query = data.draw(params, label="query")
    response = client.get(f"{path}?{query_string(query)}" if query else path)
    record(f"{client.host} GET /{route}", response.status_code)
    assert response.status_code < 500, (path, query)
    return response


def answers_get(client, route, ids) -> bool:
    """A quick look first: POST-only actions answer 405 and are fuzzed with their forms elsewhere."""
    import re

    path = "/" + re.sub(r"<(?:(\w+):)?\w+>", lambda m: str(ids[0]) if m.group(1) == "int" else "x", route)
    response = client.get(path)
    record(f"{client.host} GET /{route}", response.status_code)
    assert response.status_code < 500, path
    return response.status_code != 405


TENANT_ROUTES = routes("portal.urls_tenant")
PUBLIC_ROUTES = routes("portal.urls_public")


@pytest.mark.parametrize("route", TENANT_ROUTES)
def test_tenant_page_answers_no_500_whatever_the_query(route, demo_pks, people):
    client = sign_in(Client(HTTP_HOST="acme.localhost"), people["acme_owner"], "acme")
    client.host = "acme"
    if not answers_get(client, route, demo_pks):
        return

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=st.data())
    def fuzz(data):
        get(client, route, fill(route, demo_pks, data), data)

    fuzz()


@pytest.mark.parametrize("route", PUBLIC_ROUTES)
def test_public_page_answers_no_500_whatever_the_query(route, demo_pks, people):
    client = sign_in_staff(Client(HTTP_HOST="localhost"), people["staff"])
    client.host = "public"
    if not answers_get(client, route, demo_pks):
        return

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=st.data())
    def fuzz(data):
        get(client, route, fill(route, demo_pks, data), data)

    fuzz()


def test_every_page_route_is_fuzzed():
    # a new page joins by its URL pattern; this fails if the walk found nothing to fuzz
    assert len(TENANT_ROUTES) > 40 and "assets/<int:pk>/" in TENANT_ROUTES and "ops/" in PUBLIC_ROUTES

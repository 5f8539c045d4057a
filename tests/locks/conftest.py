"""A lock in acme (site in Lisbon's time zone), for the locks' tests."""

import pytest
from lock_builders import in_acme_committed, make_lock, remove_lock_and_traces

from portal.facilities.models import Site


@pytest.fixture
def lisbon(in_acme):
    return Site.objects.create(name="Lisbon office", time_zone="Europe/Lisbon")


@pytest.fixture
def lock(lisbon):
    return make_lock(site=lisbon)


@pytest.fixture
def race_lock(db):
    lock = in_acme_committed(lambda: make_lock("race-door", "Race door"))
    yield lock
    in_acme_committed(lambda: remove_lock_and_traces("race-door"))

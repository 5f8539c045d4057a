"""The ingest path's sensor cache remembers a sensor only once its batch commits, so what drops
it (a sensor saved or deleted, a device deleted) is tested with committed data. Each test's work
runs in a thread of its own: its own database connection, in autocommit, outside the test's
rolled-back transaction, in a tenant of its own, as the bridge tests do (a transactional test's
flush would wipe the session's tenants)."""

import pytest
from django_tenants.utils import schema_context
from helpers import committed
from telemetry_builders import NOW, reading

from telemetry.ingest import clear_caches, ingest, sensor_cache
from telemetry.models import DeadLetter, Device, Reading, Sensor

pytestmark = pytest.mark.django_db
SCHEMA = "cachetest"


@pytest.fixture(scope="module")
def cache_tenant(django_db_setup, django_db_blocker):
    from portal.tenancy.models import Tenant
    from portal.tenancy.provisioning import create_tenant

    with django_db_blocker.unblock():
        tenant = create_tenant("Cache Test", SCHEMA)
    yield
    with django_db_blocker.unblock():
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


def in_cache_tenant(work):
    """work() in the test tenant, committed on a connection of its own (helpers.committed); the
    cache starts empty, and the tenant's devices are gone afterwards."""

    def run():
        with schema_context(SCHEMA):
            try:
                return work()
            finally:
                for model in (Reading, DeadLetter, Device):  # readings have no foreign key to cascade
                    model.objects.all().delete()

    clear_caches()
    try:
        return committed(run)
    finally:
        clear_caches()


def cached(device="gw-1", sensor="temp"):
    return sensor_cache.get((SCHEMA, device, sensor))


def test_a_committed_batch_fills_the_cache(cache_tenant):
    def work():
        assert cached() is None
        assert ingest([reading(value=10.0, minutes=3)], source="mqtt", now=NOW).written == 1
        assert cached().id == Sensor.objects.get(key="temp").pk

    in_cache_tenant(work)


def test_a_sensor_saved_with_new_limits_judges_the_next_batch_by_them(cache_tenant):
    def work():
        ingest([reading(value=50.0, minutes=3)], source="mqtt", now=NOW)
        assert cached().max_value is None
        sensor = Sensor.objects.get(key="temp")
        sensor.max_value = 40.0
        sensor.save(update_fields=["max_value"])
        result = ingest([reading(value=50.0, minutes=2)], source="mqtt", now=NOW)
        assert (result.written, result.rejected, dict(result.reasons)) == (0, 1, {"out_of_range": 1})
        assert Reading.objects.count() == 1
        assert DeadLetter.objects.get().reason == "out_of_range"

    in_cache_tenant(work)


def test_a_deleted_sensor_is_created_afresh_by_its_next_reading(cache_tenant):
    def work():
        ingest([reading(value=1.0, minutes=3)], source="mqtt", now=NOW)
        old = Sensor.objects.get(key="temp").pk
        Sensor.objects.get(pk=old).delete()
        assert ingest([reading(value=2.0, minutes=2)], source="mqtt", now=NOW).written == 1
        (new,) = Sensor.objects.all()
        # not under the deleted sensor's id: readings have no foreign key that would refuse it
        assert new.pk != old and list(Reading.objects.filter(value=2.0).values_list("sensor_id", flat=True)) == [new.pk]

    in_cache_tenant(work)


def test_a_deleted_device_is_created_afresh_by_its_next_reading(cache_tenant):
    def work():
        ingest([reading(value=1.0, minutes=3)], source="mqtt", now=NOW)
        Device.objects.get(device_id="gw-1").delete()
        assert ingest([reading(value=2.0, minutes=2)], source="mqtt", now=NOW).written == 1
        sensor = Sensor.objects.get()
        assert sensor.device.device_id == "gw-1"
        assert list(Reading.objects.filter(value=2.0).values_list("sensor_id", flat=True)) == [sensor.pk]

    in_cache_tenant(work)

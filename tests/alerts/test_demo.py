"""The demo's rules and the simulator's incidents: both tenants get rules, and the incidents
drive a chiller out of range and silent on their schedule."""

from datetime import UTC, datetime

from django_tenants.utils import schema_context

from bridge.management.commands.simulate import Command, Incidents
from portal.alerts import demo
from portal.alerts.models import AlertRule, Channel
from portal.facilities import demo as facilities_demo


def test_seed_adds_rules_and_channels_to_both_tenants_once(acme, globex, monkeypatch):
    monkeypatch.setattr(facilities_demo, "DAYS", 1)
    for tenant in (acme, globex):
        with schema_context(tenant.schema_name):
            facilities_demo.seed_tenant(tenant, lambda line: None)
            demo.seed_tenant(tenant, lambda line: None)
            demo.seed_tenant(tenant, lambda line: None)  # a re-run adds nothing
            assert AlertRule.objects.count() == len(demo.RULES[tenant.slug])
            assert Channel.objects.count() == len(demo.CHANNELS[tenant.slug])
            assert all(rule.conditions.exists() for rule in AlertRule.objects.all())


def test_incidents_warm_a_chiller_then_silence_it(time_machine):
    incidents = Incidents()
    time_machine.move_to(datetime(2026, 11, 20, 12, 6, tzinfo=UTC), tick=False)
    assert incidents.offset("acme-gw-01") == Incidents.WARM and not incidents.silent("acme-gw-01")
    assert incidents.offset("acme-gw-02") == {}
    warm = Command.senml("acme-gw-01", ["supply_temp"], incidents.offset("acme-gw-01"))
    assert '"supply_temp"' in warm
    time_machine.move_to(datetime(2026, 11, 20, 12, 20, tzinfo=UTC), tick=False)
    assert incidents.silent("acme-gw-01") and not incidents.silent("acme-gw-03")
    assert not Incidents(enabled=False).silent("acme-gw-01")

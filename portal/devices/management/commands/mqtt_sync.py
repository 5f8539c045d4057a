"""`manage.py mqtt_sync`: re-apply the broker's clients and roles from the database (idempotent).

A device client the broker no longer holds (its state was lost) cannot be made again: its secret
is kept only hashed. It is marked lost and named here; a new secret on its device page (a lock: a
new key on the lock's page) brings it back. See portal.devices.broker's docstring for why.
"""

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from portal.devices import broker
from portal.tenancy.models import Tenant
from telemetry.models import MqttCredential


class Command(BaseCommand):
    help = (
        "Make Mosquitto's dynamic security match Fieldwatch: the bridge's client, a role per tenant (and per lock), "
        "a client per device credential (disabled while its tenant is suspended, deleted once revoked); clients the "
        "broker lost are marked for rotation and listed; what belongs to deleted devices and tenants is removed. Safe to repeat."
    )

    def handle(self, **options):
        if not broker.managed():
            raise CommandError("MQTT_ADMIN_URL is not set: no broker to manage (EMQX asks Fieldwatch over HTTP).")
        lost_total, known, slugs, lost_all = 0, set(), set(), []
        try:
            admin = broker.DynamicSecurity()
            admin.run(broker.bridge_commands())
            present = broker.broker_clients(admin)
            for tenant in Tenant.objects.customers():
                slugs.add(tenant.slug)
                with schema_context(tenant.schema_name):
                    commands = broker.tenant_commands(tenant, present)
                    lost = list(broker.lost_credentials().values_list("username", flat=True))
                    known |= set(MqttCredential.objects.filter(revoked_at=None).values_list("username", flat=True))
                admin.run(commands)
                clients = sum(1 for c in commands if c["command"] in ("enableClient", "disableClient"))
                self.stdout.write(f"{tenant.slug}: role and {clients} device clients applied")
                if lost:
                    lost_total += len(lost)
                    lost_all += lost
                    self.stderr.write(
                        f"{tenant.slug}: {len(lost)} clients lost by the broker, refused until their secret is rotated "
                        f"(kept only hashed, it cannot be restored): {', '.join(lost)}"
                    )
            stale = broker.prune_commands(admin, known - set(lost_all), slugs)
            admin.run(stale)
        except broker.BrokerError as error:
            raise CommandError(str(error)) from None
        self.stdout.write("bridge: client and role applied")
        if stale:
            self.stdout.write(f"removed {len(stale)} clients and roles of devices and tenants that are gone")
        if lost_total:
            self.stdout.write(f"{lost_total} device clients need a new secret: see their device pages")

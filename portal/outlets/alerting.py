"""Machines as alert targets (portal.alerts.targets discovers this module).

A machine is watched through the device bound to it now: "offline", "no data" and value
conditions apply to that device, and when the device moves to another machine the rule follows
the machine, not the device. Alerts on a machine's device carry its outlet and machine as labels,
so silences and routing can match them.
"""

from portal.alerts.targets import Subject, TargetKind
from portal.outlets.models import Machine, MachineDevice


class MachineTarget(TargetKind):
    code, label, object_label, subject = "machine", "One machine (its bound device)", "Machine", "device"

    def objects(self):
        return [
            (m.pk, f"{m.outlet.name} / {m.name}")
            for m in Machine.objects.select_related("outlet").order_by("outlet__name", "name")
        ]

    def exists(self, pk):
        return Machine.objects.filter(pk=pk).exists()

    def subjects(self, rules):
        bound = dict(
            MachineDevice.objects.filter(machine_id__in={r.target_id for r in rules}, is_active=True).values_list(
                "machine_id", "device_id"
            )
        )
        return {r.pk: [Subject.for_device(bound[r.target_id])] if r.target_id in bound else [] for r in rules}


TARGETS = [MachineTarget()]


def device_context(device_ids) -> dict[int, dict]:
    """{device id: {"labels": {"outlet", "machine"}}} for the devices bound to a machine now."""
    rows = MachineDevice.objects.filter(device_id__in=device_ids, is_active=True).values_list(
        "device_id", "machine__name", "machine__outlet__name"
    )
    return {device_id: {"labels": {"outlet": outlet, "machine": machine}} for device_id, machine, outlet in rows}


# a binding that starts or ends moves a machine's rules to another device (portal.alerts.receivers)
INDEX_MODELS = [MachineDevice]

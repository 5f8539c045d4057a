from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "portal.devices"
    label = "devices"
    verbose_name = "Devices and telemetry"

    def ready(self):
        from portal.devices import receivers  # noqa: F401 (connects the MQTT credential receivers)

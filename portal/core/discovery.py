"""How the portal's shared parts find what each fleet app adds, without naming the apps: an app
adds to the dashboard with a `dashboard` module, to the demo with `demo`, to the alert engine's
targets with `alerting`, to the JSON API with `api`.

Only the portal's own apps are asked: the bridge depends on them, never the other way round, and
asking `bridge.<name>` where `bench/` comes first on sys.path found bench/bridge.py (a module, not
the package) and crashed every process that started that way.
"""

import importlib
import importlib.util
from types import ModuleType

from django.apps import apps


def app_modules(name: str) -> list[ModuleType]:
    """The `<app>.<name>` modules of the installed portal apps that have one, in INSTALLED_APPS order."""
    names = [f"{app.name}.{name}" for app in apps.get_app_configs() if app.name.startswith("portal.")]
    return [importlib.import_module(module) for module in names if importlib.util.find_spec(module)]

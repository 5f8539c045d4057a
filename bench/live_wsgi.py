"""The portal's WSGI application plus one server-sent-events endpoint, for bench/live.py only.

GET /bench-sse/<schema>/<asset pk>/ streams an event whenever the asset's newest reading changes,
checking every second with the same query as the asset page's poll (latest values of its
sensors). It skips sessions and templates, so it is cheaper than a real SSE view would be: the
comparison is as kind to SSE as it can be. What it cannot avoid is the point being measured:
under gunicorn's sync and gthread workers the generator holds its thread until the client leaves.
"""

import time

from django.db import close_old_connections
from django_tenants.utils import schema_context

from portal.wsgi import application as portal

CHECK_EVERY = 1.0  # seconds between database checks of one stream
MAX_SECONDS = 600  # no stream outlives a bench run


def events(schema: str, asset_pk: int):
    from portal.facilities.models import Asset  # once portal.wsgi has set Django up
    from telemetry import queries

    yield b": connected\n\n"
    newest = None
    deadline = time.monotonic() + MAX_SECONDS
    try:
        while time.monotonic() < deadline:
            with schema_context(schema):
                sensors = list(Asset.objects.get(pk=asset_pk).sensors().values_list("pk", flat=True))
                latest = queries.latest_values(sensors)
            current = max((ts for ts, _ in latest.values()), default=None)
            if current is not None and current != newest:
                newest = current
                yield f"data: {current.timestamp():.6f}\n\n".encode()
            time.sleep(CHECK_EVERY)
    finally:
        close_old_connections()


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if not path.startswith("/bench-sse/"):
        return portal(environ, start_response)
    _, _, schema, asset_pk, _ = path.split("/", 4)
    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
    return events(schema, int(asset_pk))

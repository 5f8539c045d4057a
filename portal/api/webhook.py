"""The API's health endpoints. (The broker's rule webhook, POST /ingest, lives with the topics it
decodes: portal/facilities/webhook.py.)"""

from portal.api.endpoint import api_endpoint
from portal.core import health as core_health


@api_endpoint(methods=("GET",))
def health(request):
    return core_health.health(request)


@api_endpoint(methods=("GET",))
def health_detailed(request):
    return core_health.health_detailed(request)

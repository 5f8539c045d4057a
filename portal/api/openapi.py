"""The one OpenAPI 3.0 document of every device and integration endpoint, served at /api/schema/.

Two parts. The device endpoints (handshake, events, legacy posts, bulk, webhook…) are hand-written
views on the lean path, and their part is written by hand next to them: the paths and field names
are contracts that devices in the field already speak, so they change only deliberately. The JSON
APIs built with the toolkit (portal.api.toolkit: seed 003's outlets, 004's locks, 000's assets)
contribute their part from their own signatures. Tests load the whole and fuzz every operation
against a live server (tests/api/test_openapi.py).
"""

from django.http import JsonResponse

from portal.api import toolkit
from portal.api.endpoint import api_endpoint


def error_response(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def json_body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def ok(description: str, schema: dict | None = None) -> dict:
    body = {"description": description}
    if schema:
        body["content"] = {"application/json": {"schema": schema}}
    return body


ERRORS = {
    code: error_response(text)
    for code, text in {
        "400": "Malformed or invalid input",
        "401": "Missing or invalid credentials",
        "403": "Not allowed",
        "404": "Unknown object",
        "405": "Method not allowed",
        "409": "Conflict",
        "413": "Body too large",
        "429": "Rate limited (see Retry-After)",
    }.items()
}
DEVICE = [{"deviceToken": []}]
CLIENT = [{"apiKey": []}, {"accessToken": []}]
PERIOD = [
    {"name": "period", "in": "query", "schema": {"type": "string", "enum": ["hour", "day"]}},
    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}},
    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}},
]
UUID = {"name": "uuid", "in": "path", "required": True, "schema": {"type": "string"}}

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Counts": {"type": "object", "properties": {k: {"type": "integer"} for k in ("written", "duplicates", "rejected")}},
    "Handshake": {
        "type": "object",
        "required": ["mac"],
        "properties": {"mac": {"type": "string", "example": "EC:E3:34:46:2B:C0"}, "firmware": {"type": "string"}},
    },
    "HandshakeReply": {
        "type": "object",
        "properties": {"device_id": {"type": "string"}, "token": {"type": "string"}, "assigned": {"type": "boolean"}},
    },
    "Event": {
        "type": "object",
        "required": ["event_id", "treatment", "ts"],
        "properties": {
            "device_id": {"type": "string"},
            "firmware": {"type": "string"},
            "event_id": {"type": "string", "maxLength": 100},
            "event": {"type": "string"},
            "treatment": {"type": "string", "enum": ["BASIC", "STANDARD", "PREMIUM"]},
            "counter": {"type": "integer", "minimum": 0},
            "ts": {"type": "string", "format": "date-time"},
        },
    },
    "EventAck": {"type": "object", "properties": {"ack": {"type": "boolean"}, "event_id": {"type": "string"}}},
    "LegacyPost": {
        "type": "object",
        "required": ["mode", "macaddr"],
        "properties": {
            "mode": {"type": "string", "enum": ["BASIC", "STANDARD", "PREMIUM", "status"]},
            "macaddr": {"type": "string"},
            **{f"type{n}": {"type": "string"} for n in (1, 2, 3)},
            **{f"count{n}": {"type": "string"} for n in (1, 2, 3)},
            "timestamp": {"type": "string", "example": "2024-01-15 14:30:25"},
            "rtc_available": {"type": "string"},
            "sd_available": {"type": "string"},
        },
    },
    "Heartbeat": {
        "type": "object",
        "properties": {
            "uptime": {"type": "integer"},
            "wifi": {"type": "object"},
            "firmware": {"type": "string"},
            "timestamp": {
                "type": "string",
                "format": "date-time",
                "description": "when the device was alive (seed 000)",
            },
        },
    },
    "Equipment": {
        "type": "object",
        "required": ["equip_uuid", "sensor"],
        "properties": {
            "equip_uuid": {"type": "string"},
            "equip_nome": {"type": "string"},
            "sensor": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["sensor_uuid", "valor"],
                    "properties": {
                        "sensor_uuid": {"type": "string"},
                        "sensor_tipo": {"type": "string"},
                        "valor": {"type": "number"},
                        "timestamp": {"type": "string", "format": "date-time"},
                    },
                },
            },
        },
    },
    "WebhookReading": {
        "type": "object",
        "required": ["device_id", "sensor_id", "value"],
        "properties": {
            "device_id": {"type": "string"},
            "sensor_id": {"type": "string"},
            "tenant": {"type": "string"},
            "value": {"type": "number"},
            "unit": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
        },
    },
    "WebhookMessage": {
        "type": "object",
        "description": "A rule's output: seed 001 (client_id, topic, payload, ts) or seed 000 (topic, value, unit, timestamp)",
        "required": ["topic"],
        "properties": {
            "client_id": {"type": "string"},
            "topic": {"type": "string", "maxLength": 300},
            "payload": {"type": "string", "description": "the MQTT payload, as the bridge would receive it"},
            "ts": {"type": "integer", "description": "the broker's message time, epoch milliseconds"},
            "tenant": {"type": "string"},
            "value": {"type": "number"},
            "unit": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
        },
    },
    "Login": {
        "type": "object",
        "required": ["username", "password"],
        "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
    },
    "Tokens": {
        "type": "object",
        "properties": {
            "access_token": {"type": "string"},
            "refresh_token": {"type": "string"},
            "token_type": {"type": "string"},
            "expires_in": {"type": "integer"},
        },
    },
}


def operation(
    summary: str, responses: dict, *, body=None, security=None, parameters=None, errors=("400", "401", "429")
) -> dict:
    op = {"summary": summary, "responses": {**responses, **{code: ERRORS[code] for code in errors}}}
    if body:
        op["requestBody"] = body
    if security is not None:
        op["security"] = security
    if parameters:
        op["parameters"] = parameters
    return op


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


WEBHOOK_ITEM = {"oneOf": [ref("WebhookReading"), ref("WebhookMessage")]}
# tenant hosts and the public host (where the tenant comes from the body or the topic) alike
WEBHOOK = {
    "post": operation(
        "The broker's rule webhook (HMAC-signed; 1,000 requests an hour per device)",
        {"200": ok("Stored", ref("Counts"))},
        body=json_body({"oneOf": [WEBHOOK_ITEM, {"type": "array", "items": WEBHOOK_ITEM}]}),
        security=[{"webhookSignature": []}, {"webhookSecret": []}],
        errors=("400", "401", "413", "429"),
    )
}


def document() -> dict:
    """The hand-written part with the toolkit's routes merged in (their errors are the one shape)."""
    hand = device_document()
    ninja = toolkit.openapi_paths()
    for operations in ninja["paths"].values():
        for operation in operations.values():
            for code in ("400", "401", "403", "404", "405", "413", "429"):
                operation["responses"].setdefault(code, ERRORS[code])
    hand["paths"] |= ninja["paths"]
    hand["components"]["schemas"] = ninja["schemas"] | hand["components"]["schemas"]
    hand["components"]["securitySchemes"] = ninja["securitySchemes"] | hand["components"]["securitySchemes"]
    return with_aliases(hand)


# Second paths of one view (seed 002's Portuguese path, the short paths of older clients), and
# this document itself: the document lists every route, so the fuzz test reaches each of them.
ALIASES = {
    "/api/v1/telemetria/bulk": "/api/v1/telemetry/bulk",
    "/api/telemetry/bulk": "/api/v1/telemetry/bulk",
    "/api/home-assistant/{uuid}": "/api/v1/analytics/home-assistant/{uuid}",
    "/health/": "/api/v1/health",
    "/health/detailed/": "/api/v1/health/detailed",
}


def with_aliases(doc: dict) -> dict:
    paths = doc["paths"]
    for alias, original in ALIASES.items():
        paths[alias] = {
            method: op | {"summary": f"{op['summary']} (also at {original})"} for method, op in paths[original].items()
        }
    # the locks' access check (portal/locks): a hand-written device route on the lean path
    paths.setdefault(
        "/api/locks/{lock_id}/access/",
        {
            "post": operation(
                "A lock asks whether a PIN, QR code or key opens it",
                {"200": ok("The decision")},
                security=DEVICE,
                parameters=[{"name": "lock_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                errors=("400", "401", "403", "404", "429"),
            )
        },
    )
    paths.setdefault(
        "/api/schema/", {"get": operation("This OpenAPI document", {"200": ok("The document")}, security=[], errors=())}
    )
    return doc


def device_document() -> dict:
    history = operation(
        "Hourly or daily history per sensor, from rollups",
        {"200": ok("Series per sensor")},
        security=CLIENT,
        parameters=[UUID, *PERIOD],
        errors=("400", "401", "404", "429"),
    )
    return {
        "openapi": "3.1.0",  # the toolkit's schemas are JSON Schema 2020-12 (nullable as anyOf null)
        "info": {
            "title": "Fieldwatch device and integration API",
            "version": "1",
            "description": (
                "Served on each organisation's host (<slug>.<domain>); the broker's webhook and seed 000's "
                "/auth/register/ on the public host too (on an organisation's host, registering is refused: "
                'people join by invitation). Errors are {"error": {"code", "message"}}.'
            ),
        },
        "paths": {
            "/api/handshake/": {
                "post": operation(
                    "Register by MAC and get a device token",
                    {"200": ok("Token issued", ref("HandshakeReply"))},
                    body=json_body(ref("Handshake")),
                    errors=("400", "403", "429"),
                )
            },
            "/api/device/events/": {
                "post": operation(
                    "Report a usage event (idempotent on event_id)",
                    {"200": ok("Acknowledged", ref("EventAck"))},
                    body=json_body(ref("Event")),
                    security=DEVICE,
                    errors=("400", "401", "403", "409", "429"),
                )
            },
            "/api/iot/": {
                "post": operation(
                    "Legacy form post (counters or status)",
                    {"200": ok("Stored")},
                    body={
                        "required": True,
                        "content": {"application/x-www-form-urlencoded": {"schema": ref("LegacyPost")}},
                    },
                    errors=("400", "401", "403", "404", "429"),
                )
            },
            "/api/devices/{device_id}/heartbeat/": {
                "post": operation(
                    "Device heartbeat",
                    {"200": ok("Stored")},
                    body=json_body(ref("Heartbeat"), required=False),
                    security=DEVICE + CLIENT,  # seed 000's devices have no token: a key or member vouches
                    parameters=[{"name": "device_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    errors=("400", "401", "403", "404", "429"),
                )
            },
            "/api/v1/auth/login": {
                "post": operation(
                    "Access and refresh tokens for a member",
                    {"200": ok("Tokens", ref("Tokens"))},
                    body=json_body(ref("Login")),
                )
            },
            "/api/v1/auth/refresh": {
                "post": operation(
                    "New tokens from a refresh token",
                    {"200": ok("Tokens", ref("Tokens"))},
                    body=json_body(
                        {
                            "type": "object",
                            "required": ["refresh_token"],
                            "properties": {"refresh_token": {"type": "string"}},
                        }
                    ),
                )
            },
            "/api/v1/telemetry/bulk": {
                "post": operation(
                    "Bulk telemetry (JSON, optionally gzip); large bodies are processed by a job",
                    {"200": ok("Processed", ref("Counts")), "202": ok("Queued: see status_url")},
                    body=json_body({"type": "array", "items": ref("Equipment")}),
                    security=CLIENT,
                    errors=("400", "401", "413", "429"),
                )
            },
            "/api/v1/telemetry/jobs/{pk}": {
                "get": operation(
                    "A bulk job's status and counts",
                    {"200": ok("Job")},
                    security=CLIENT,
                    parameters=[{"name": "pk", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    errors=("401", "404", "429"),
                )
            },
            "/api/v1/analytics/equipment/{uuid}/history": {"get": history},
            "/api/v1/analytics/sensor/{uuid}/history": {"get": history},
            "/api/v1/analytics/equipment/{uuid}/stats": {
                "get": operation(
                    "Totals per sensor over a range",
                    {"200": ok("Stats")},
                    security=CLIENT,
                    parameters=[UUID, *PERIOD],
                    errors=("400", "401", "404", "429"),
                )
            },
            "/api/v1/analytics/home-assistant/{uuid}": {
                "get": operation(
                    "Latest values for Home Assistant's REST sensor",
                    {"200": ok("State")},
                    security=CLIENT,
                    parameters=[UUID],
                    errors=("401", "404", "429"),
                )
            },
            "/ingest/": WEBHOOK,
            "/ingest": WEBHOOK,
            "/api/v1/health": {
                "get": operation("Health", {"200": ok("Healthy"), "503": ok("Unhealthy")}, security=[], errors=())
            },
            "/api/v1/health/detailed": {
                "get": operation(
                    "Health with storage, broker and bridges",
                    {"200": ok("Healthy"), "503": ok("Unhealthy")},
                    security=[],
                    errors=(),
                )
            },
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "deviceToken": {"type": "http", "scheme": "bearer", "description": "Token from /api/handshake/"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "accessToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Access token from /api/v1/auth/login",
                },
                "webhookSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-device-token",
                    "description": "hex HMAC-SHA256 of the body with INGESTION_SECRET",
                },
                "webhookSecret": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "INGESTION_SECRET itself, for a broker that cannot sign (EMQX's HTTP action)",
                },
            },
        },
    }


@api_endpoint(methods=("GET",))
def schema(request):
    return JsonResponse(document())

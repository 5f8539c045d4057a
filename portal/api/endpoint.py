"""What every device and integration endpoint shares: the JSON error shape, method and size
checks, CSRF exemption (these callers hold no session), JSON bodies and rate limits."""

import functools

from django.views.decorators.csrf import csrf_exempt

from portal.api import ratelimit
from portal.core.errors import json_error
from telemetry.bounds import MAX_JSON_DEPTH
from telemetry.formats import FormatError, decode_json


class ApiError(Exception):
    """Raised anywhere below a view: becomes {"error": {"code", "message"}} with `status`."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers or {}, extra

    def response(self):
        response = json_error(self.status, self.code, self.message, **self.extra)
        for name, value in self.headers.items():
            response[name] = value
        return response


def api_endpoint(methods=("POST",), max_bytes: int = 64 * 1024):
    """Decorate a device/integration view: CSRF-exempt, only `methods` (405), bodies up to
    `max_bytes` (413, judged by Content-Length before reading), ApiError turned into JSON."""

    def decorator(view):
        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method not in methods:
                return json_error(405, "method_not_allowed", f"Use {' or '.join(methods)}.")
            length = content_length(request)
            if length is None:
                return json_error(400, "bad_content_length", "Content-Length is not a number.")
            if length > max_bytes:
                return json_error(413, "too_large", f"The body is larger than {max_bytes} bytes.")
            try:
                return view(request, *args, **kwargs)
            except ApiError as error:
                return error.response()

        wrapped.max_bytes = max_bytes
        return wrapped

    return decorator


def content_length(request) -> int | None:
    """The request's Content-Length (0 when absent), or None when it is not a whole number: then
    nothing may read the body (HttpRequest.body parses the header again, and raises)."""
    value = (request.META.get("CONTENT_LENGTH") or "0").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def json_body(request):
    """The request's JSON body (None when empty), through the one parser of every JSON entry
    (telemetry.formats.decode_json, nesting bounded); ApiError 400 with a clear message."""
    try:
        return decode_json(request.body or b"null", max_depth=MAX_JSON_DEPTH)
    except FormatError as error:
        raise ApiError(400, "malformed_json", f"The body is {error.detail}.") from None


def check_rate(scope: str, identity: str, rate: str) -> None:
    wait = ratelimit.retry_after(scope, identity, rate)
    if wait is not None:
        raise ApiError(
            429, "rate_limited", f"Too many requests; retry in {wait} s.", headers={"Retry-After": str(wait)}
        )

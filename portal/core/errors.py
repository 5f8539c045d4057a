"""Error responses: one JSON shape for machines, pages (or htmx fragments) for people."""

from django.http import JsonResponse
from django.shortcuts import render


def json_error(status: int, code: str, message: str, **extra) -> JsonResponse:
    """The one error shape of every device endpoint: {"error": {"code", "message", ...}}."""
    return JsonResponse({"error": {"code": code, "message": message, **extra}}, status=status)


ERROR_TITLES = {
    400: ("Bad request", "The request could not be understood."),
    403: ("Access denied", "You do not have permission to see this."),
    404: ("Not found", "There is nothing at this address."),
    500: ("Something went wrong", "An unexpected error happened. It has been logged; please try again."),
}


ERROR_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 500: "server_error"}


# Paths machines call: their errors (a 404 for a path no URL matches, a 500) are JSON too.
MACHINE_PATH_PREFIXES = ("/api/", "/ingest/", "/auth/")


def wants_json(request) -> bool:
    return getattr(request, "lean", False) or request.path_info.startswith(MACHINE_PATH_PREFIXES)


def error_page(request, status: int, message: str | None = None):
    title, default_message = ERROR_TITLES[status]
    if wants_json(request):  # a device or integration endpoint's path: machines read JSON
        return json_error(status, ERROR_CODES[status], message or default_message)
    context = {"status": status, "title": title, "message": message or default_message}
    # htmx swaps a fragment into the page instead of a whole document
    template = "errors/error.html#fragment" if getattr(request, "htmx", False) else "errors/error.html"
    return render(request, template, context, status=status)


def bad_request(request, exception=None):
    return error_page(request, 400)


def permission_denied(request, exception=None):
    message = str(exception) if exception and str(exception) else None
    return error_page(request, 403, message)


def page_not_found(request, exception=None):
    return error_page(request, 404)


def server_error(request):
    try:
        return error_page(request, 500)
    except Exception:  # the layout itself may be what failed; fall back to plain text
        from django.http import HttpResponseServerError

        return HttpResponseServerError("Server error", content_type="text/plain")

"""The lean middleware stack for device and machine endpoints, chosen once per request by path.

A device posting an event needs tenant routing, the security headers and its view; the full
stack (sessions, authentication, allauth, CSRF, messages, htmx, membership checks) cost more
CPU than the endpoint itself (~1.7 ms a request). LeanPathMiddleware, first in MIDDLEWARE,
sends every request whose path starts with one of settings.LEAN_PATH_PREFIXES through
settings.LEAN_MIDDLEWARE and the view instead of the rest of the chain.

To serve an endpoint on the lean path, add its prefix to LEAN_PATH_PREFIXES (one list, in
settings), or its whole path to LEAN_PATHS where the prefix also holds people's pages or APIs
(LEAN_PATH_EXCEPTIONS names the few paths under a lean prefix that people call). Its view must not need request.user, request.session or CSRF (device views
authenticate by token, HMAC or API key), and it answers errors in the JSON error shape: a 404
or 500 on a lean path is JSON too (portal.core.errors). Every middleware that puts a header on
every response (security headers, CSP) belongs in LEAN_MIDDLEWARE as well as in MIDDLEWARE.
"""

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.utils import build_policy
from django.conf import settings
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.db import connection
from django.utils.module_loading import import_string


class LeanHandler(BaseHandler):
    """A request handler whose chain is settings.LEAN_MIDDLEWARE (built as Django builds
    MIDDLEWARE's, synchronous only: gunicorn's threads and the test client call it)."""

    def load_middleware(self, is_async=False):
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(settings.LEAN_MIDDLEWARE):
            middleware = import_string(path)(handler)
            if hasattr(middleware, "process_view"):
                self._view_middleware.insert(0, middleware.process_view)
            if hasattr(middleware, "process_template_response"):
                self._template_response_middleware.append(middleware.process_template_response)
            if hasattr(middleware, "process_exception"):
                self._exception_middleware.append(middleware.process_exception)
            handler = convert_exception_to_response(middleware)
        self._middleware_chain = handler


class LeanPathMiddleware:
    """First in MIDDLEWARE: lean paths go through the lean chain, everything else on down."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.lean = LeanHandler()
        self.lean.load_middleware()

    def __call__(self, request):
        path = request.path_info
        prefixed = path.startswith(settings.LEAN_PATH_PREFIXES) and path not in settings.LEAN_PATH_EXCEPTIONS
        if prefixed or path in settings.LEAN_PATHS:
            request.lean = True
            # No SELECT 1 before the first query (CONN_HEALTH_CHECKS): a connection the database
            # dropped fails this one request with a 503 the device retries (DeviceTenantMiddleware),
            # and Django closes it after the request.
            connection.health_check_done = True
            return self.lean._middleware_chain(request)
        return self.get_response(request)


class ContentSecurityPolicyMiddleware:
    """The headers django-csp's middleware sets, from the same settings, worked out once: a
    device's JSON answer has no nonce and no per-view policy, and building the policy for every
    response was a tenth of a device request's CPU."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.headers = {HEADER: build_policy(), HEADER_REPORT_ONLY: build_policy(report_only=True)}

    def __call__(self, request):
        response = self.get_response(request)
        for name, value in self.headers.items():
            if value and name not in response:
                response[name] = value
        return response

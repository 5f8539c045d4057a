"""CommonMiddleware whose slash redirect keeps the method: `POST /ops` is answered
`308 Permanent Redirect` to `/ops/` (the client repeats the POST with its body there), where
Django raises RuntimeError under DEBUG and answers a 301 (the POST turns into a GET) without."""

from django.http import HttpResponsePermanentRedirect
from django.middleware.common import CommonMiddleware
from django.utils.http import escape_leading_slashes

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class PermanentRedirect308(HttpResponsePermanentRedirect):
    status_code = 308


class SlashMiddleware(CommonMiddleware):
    def get_full_path_with_slash(self, request):
        return escape_leading_slashes(request.get_full_path(force_append_slash=True))

    def process_response(self, request, response):
        unsafe = request.method not in SAFE_METHODS
        if response.status_code == 404 and unsafe and self.should_redirect_with_slash(request):
            return PermanentRedirect308(self.get_full_path_with_slash(request))
        return super().process_response(request, response)

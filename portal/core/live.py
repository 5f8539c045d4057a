"""Live pages: the one way a page shows things that change (readings, command states, counts).

How a page uses it (three parts, a few lines each):

1. In the template, an element that polls a small "since" endpoint::

       {% load live %}
       <div id="asset-live" {% live live_url since=cursor every=5 %}></div>

   The tag writes the htmx attributes. static/js/live.js asks `live_url?since=<cursor>` every
   `every` seconds (fractions down to 0.25 s: the lock page asks every 0.5 s) while the tab is visible (none while it is hidden, one at once when it shows
   again), and after an error waits twice as long each time (up to MAX_BACKOFF_SECONDS).
2. The endpoint answers with `live.nothing_new()` (204: htmx leaves the page alone) when nothing
   changed since the cursor, `live.stop()` when the element will never change again (a finished
   command, a range that ended), or `live.render(request, "app/page.html#live", context)`: the
   element again with its new cursor (so the next poll asks from there), plus any
   `hx-swap-oob` fragments (table rows, badges) and chart points (chart.js appends them).
3. Times and freshness age in the browser, not by polling: `{% ago ts %}` and
   `{% fresh_badge ts seconds %}` (static/js/ages.js) keep "updated 5 minutes ago" and
   fresh→stale correct while nothing arrives, and while the server cannot be reached.

The cursor is whatever the endpoint can compare cheaply: the newest reading's time (epoch seconds,
`live.since()` parses it), a row's updated_at, a count, the dashboard's section versions
(portal.core.overview). A poll must cost a constant number of queries whatever the tenant's
size; bench/pages.py prints each poll's, with its milliseconds. At 10,000 assets and 10.9 M
readings (`bench/pages.py`, median of 15; the wall clock holds the database's time and any wait
for one of the shared 2 cores, CPU is this process's alone), on a calm machine (load 0.8):

    poll                            queries   wall ms   CPU ms
    asset page, nothing new (204)       4        3.5      2.8
    asset page, new readings            9        9.0      7.0
    device page, nothing new            4        2.8      2.2
    device page, new readings           7        6.4      5.4
    dashboard, nothing moved            4        3.9      3.1
    dashboard, a device seen            7        9.2      5.8    (its cards, key sensors' rows)
    navigation alert count, same        4        2.9      2.5
    navigation alert count, changed     4        3.0      2.6

The same queries at 100 assets. Three of each poll's queries are the session, the user and the
membership, as for any page. Every poll is under 10 ms; a poll that has news to render (the
asset page's rows and chart points, the dashboard's cards and up to 60 key sensor rows) is near
it, and on a loaded machine the wall clock of all of them grows with the wait for a core (at a
load average of 17.5 the asset page's poll with news took 37 ms).

Why polling and not server-sent events (bench/live.py, 2 cores, PostgreSQL on the same machine,
gunicorn gthread 2 workers × 16 threads as in production, nginx in front):

    `bench/live.py --viewers 5,40 --seconds 8`, load average 12.8 (eight developers on 2 cores)
    case      viewers served   probes unanswered   probe p95   gunicorn CPU
    poll 40   40 of 40         0 of 4              2.7 s       179 ms/s
    SSE 40    32 of 40         1 of 2              4.9 s       163 ms/s

    Past 2 × 16 = 32 open streams the server is full: viewers 33 and up get nothing, and every
    other request (the probe: one more person opening the asset page) waits for a thread. Polling
    served all 40 viewers and every probe for about the same CPU. The polls' own costs at 10,000
    assets are above.

An SSE stream holds its gunicorn thread for as long as the tab is open: sync and gthread workers
serve one request per thread, so N open pages take N of the 2 × 16 threads, and page N+1 (or any
other request) waits until someone closes a tab; a proxy adds its own per-connection timeouts and
buffering to configure. Polling holds nothing between requests, works through any proxy as plain
requests, and a 204 for "nothing new" costs a few indexed queries; its price is the delay (at
most one interval, 5 s on the asset page, against SSE's check interval) and the request overhead,
which the figures above show is small next to the capacity SSE would take away. SSE would need an async server
(uvicorn/ASGI workers) and a notification channel (LISTEN/NOTIFY or Redis) for its generators to
wait on; that is the path if sub-second latency is ever needed.
"""

import math
from datetime import UTC, datetime

from django.http import HttpResponse
from django.shortcuts import render as render_template
from django.utils.cache import add_never_cache_headers, patch_vary_headers

from portal.core.errors import json_error

STOP_STATUS = 286  # htmx's "stop polling" code; live.js stops the element on it
MAX_BACKOFF_SECONDS = 300  # live.js: longest wait between tries after repeated errors (mirrors live.js)
LIVE_HEADER = "X-Fieldwatch-Live"  # live.js swaps only answers that carry it (not a sign-in page after a redirect)
# the cursors we hand out are epoch seconds of times between these; anything else is refused
EARLIEST_EPOCH = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
LATEST_EPOCH = datetime(2100, 1, 1, tzinfo=UTC).timestamp()


class BadCursor(ValueError):
    pass


def epoch(moment: datetime | None) -> str:
    """A datetime as a cursor: epoch seconds with microseconds (exact for PostgreSQL timestamps)."""
    return "" if moment is None else f"{moment.timestamp():.6f}"


def since(request, name: str = "since") -> datetime | None:
    """The `since` cursor of a poll as an aware datetime, None when absent or empty.

    Raises BadCursor for anything that is not epoch seconds of a plausible time: only our own
    pages make these URLs, so a bad one is a client error (see bad_cursor()), never a 500.
    """
    raw = request.GET.get(name, "")
    if not raw:
        return None
    try:
        value = float(raw[:32])
    except ValueError:
        raise BadCursor(f"{name} must be epoch seconds") from None
    if not math.isfinite(value) or not EARLIEST_EPOCH <= value < LATEST_EPOCH:
        raise BadCursor(f"{name} must be epoch seconds between 2000 and 2100")
    return datetime.fromtimestamp(value, UTC)


def bad_cursor(error: BadCursor) -> HttpResponse:
    return mark(json_error(400, "bad_cursor", str(error)))


def mark(response: HttpResponse) -> HttpResponse:
    """Headers every live answer carries: never cached, differs for htmx, recognised by live.js."""
    add_never_cache_headers(response)
    patch_vary_headers(response, ["HX-Request"])
    response[LIVE_HEADER] = "1"
    return response


def nothing_new() -> HttpResponse:
    """Nothing changed since the cursor: 204, htmx swaps nothing and the element keeps its cursor."""
    return mark(HttpResponse(status=204))


def stop() -> HttpResponse:
    """This element will not change again (its range ended, its command settled): stop polling."""
    return mark(HttpResponse(status=STOP_STATUS))


def render(request, template: str, context: dict) -> HttpResponse:
    """The live fragment: the polling element with its new cursor, and its out-of-band swaps."""
    return mark(render_template(request, template, context))

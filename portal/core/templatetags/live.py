"""Template side of live pages (portal.core.live): the polling attributes, ages and freshness badges.

{% ago ts %} and {% fresh_badge ts seconds %} render the right text now and carry the instant in
data attributes, so static/js/ages.js keeps them right as time passes without asking the server.
"""

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django import template
from django.utils import dateformat, timezone
from django.utils.html import format_html, json_script
from django.utils.safestring import mark_safe

from portal.core.live import epoch

register = template.Library()

TITLE_FORMAT = "Y-m-d H:i:s T"  # 24-hour, in the tenant's time zone (activated per request)


MIN_EVERY = 0.25  # seconds; live.js ticks this often (the lock page polls every 0.5 s)


@register.simple_tag
def live(url: str, every: float = 10, **params):
    """htmx attributes that make an element poll `url` (plus `params`, e.g. since=cursor) every
    `every` seconds (fractions allowed, down to MIN_EVERY: a lock's state must reach its page in
    under a second) and replace itself with the answer; see portal.core.live."""
    query = urlencode({key: value for key, value in params.items() if value not in (None, "")})
    full = f"{url}{'&' if '?' in url else '?'}{query}" if query else url
    return format_html(
        'hx-get="{}" hx-trigger="fw:live" hx-target="this" hx-swap="outerHTML" hx-push-url="false" '
        'hx-sync="this:drop" hx-request=\'{{"timeout": 15000}}\' data-live-every="{}"',
        full,
        f"{max(MIN_EVERY, float(every)):g}",
    )


def ago_text(moment: datetime, now: datetime | None = None) -> str:
    """How long ago, in words; static/js/ages.js says the same (keep the two alike)."""
    seconds = int(((now or timezone.now()) - moment).total_seconds())
    if seconds < 5:
        return "now"
    for size, one, many in ((86400, "a day", "days"), (3600, "an hour", "hours"), (60, "a minute", "minutes")):
        if seconds >= size:
            count = seconds // size
            return f"{one} ago" if count == 1 else f"{count} {many} ago"
    return f"{seconds} seconds ago"


def local_title(moment: datetime) -> str:
    return dateformat.format(timezone.localtime(moment), TITLE_FORMAT)


@register.simple_tag
def ago(moment: datetime | None, never: str = "never"):
    """<time> saying how long ago `moment` was, the exact local time as its title."""
    if moment is None:
        return never
    return format_html(
        '<time datetime="{}" data-ago="{}" title="{}">{}</time>',
        moment.isoformat(),
        epoch(moment),
        local_title(moment),
        ago_text(moment),
    )


@register.simple_tag
def fresh_badge(
    moment: datetime | None,
    fresh_for: float | timedelta,
    fresh: str = "fresh",
    stale: str = "stale",
    never: str = "no data",
    stale_class: str = "text-bg-warning",
):
    """A badge that reads `fresh` until `fresh_for` (seconds or a timedelta) after `moment`, then
    `stale`; `never` when there is no moment. ages.js turns it stale in the browser on time."""
    if moment is None:
        return format_html('<span class="badge text-bg-secondary" data-testid="freshness">{}</span>', never)
    if isinstance(fresh_for, timedelta):
        fresh_for = fresh_for.total_seconds()
    until = moment.timestamp() + fresh_for
    is_fresh = timezone.now().timestamp() < until
    return format_html(
        '<span class="badge {}" data-fresh-until="{}" data-stale-text="{}" data-stale-class="{}" '
        'data-testid="freshness">{}</span>',
        "text-bg-success" if is_fresh else stale_class,
        f"{until:.3f}",
        stale,
        stale_class,
        fresh if is_fresh else stale,
    )


@register.simple_tag
def chart_updates(updates: dict):
    """New chart points for chart.js in a live answer: {chart data id: {"x", "series"}}."""
    script = json_script(updates)
    return mark_safe(script.replace("<script", "<script data-chart-updates", 1))  # noqa: S308 (json_script escaped it)

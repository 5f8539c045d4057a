"""Chart data leaves gaps where data is missing; live tags render what live.js and ages.js read."""

from datetime import UTC, datetime, timedelta

from django.template import Context, Template
from django.test import RequestFactory

from portal.core import live
from portal.core.charts import aggregate_chart, raw_chart, with_gaps
from portal.core.templatetags.live import ago_text
from telemetry.queries import Point

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def point(hours: float, value: float) -> Point:
    return Point(1, T0 + timedelta(hours=hours), value, value, value, value, 1)


def test_a_missing_hour_bucket_is_a_null_so_no_line_crosses_it():
    data = aggregate_chart([point(0, 1), point(1, 2), point(7, 3), point(8, 4)], "°C", bucket_seconds=3600)
    start = int(T0.timestamp())
    assert data["x"] == [start, start + 3600, start + 7200, start + 7 * 3600, start + 8 * 3600]
    assert data["series"][0]["values"] == [1, 2, None, 3, 4]  # the six-hour hole starts with a null
    assert data["gap"] == 3600


def test_contiguous_buckets_get_no_nulls():
    data = aggregate_chart([point(h, h) for h in range(5)], bucket_seconds=3600)
    assert None not in data["series"][0]["values"]


def test_a_raw_series_breaks_where_its_spacing_jumps():
    rows = [(1, T0 + timedelta(seconds=10 * i), float(i)) for i in range(20)]
    rows += [(1, T0 + timedelta(hours=6, seconds=10 * i), 50.0 + i) for i in range(5)]
    data = raw_chart(list(reversed(rows)))  # queried newest first
    values = data["series"][0]["values"]
    assert values.count(None) == 1 and values.index(None) == 20
    assert data["gap"] == 30  # three times the usual 10 s


def test_with_gaps_puts_the_null_one_gap_after_the_last_point():
    xs, (values,) = with_gaps([0, 10, 100], [[1, 2, 3]], 10)
    assert xs == [0, 10, 20, 100] and values == [1, 2, None, 3]


def test_ago_text_says_now_only_for_the_first_seconds():
    assert ago_text(T0, T0 + timedelta(seconds=3)) == "now"
    assert ago_text(T0, T0 + timedelta(seconds=42)) == "42 seconds ago"
    assert ago_text(T0, T0 + timedelta(minutes=1, seconds=5)) == "a minute ago"
    assert ago_text(T0, T0 + timedelta(minutes=20)) == "20 minutes ago"
    assert ago_text(T0, T0 + timedelta(hours=5)) == "5 hours ago"
    assert ago_text(T0, T0 + timedelta(days=3)) == "3 days ago"


def render(source: str, **context) -> str:
    return Template("{% load live %}" + source).render(Context(context))


def test_the_live_tag_writes_the_polling_attributes_with_the_cursor():
    html = render('<div id="x" {% live "/assets/1/live/?range=24h" since=cursor every=5 %}></div>', cursor="17.5")
    assert 'hx-get="/assets/1/live/?range=24h&amp;since=17.5"' in html
    assert 'hx-trigger="fw:live"' in html and 'data-live-every="5"' in html and 'hx-swap="outerHTML"' in html


def test_a_fresh_badge_carries_the_moment_it_turns_stale(time_machine):
    time_machine.move_to(T0 + timedelta(minutes=1), tick=False)
    html = render("{% fresh_badge ts 900 %}", ts=T0)
    assert ">fresh<" in html and f'data-fresh-until="{T0.timestamp() + 900:.3f}"' in html
    time_machine.move_to(T0 + timedelta(minutes=16), tick=False)
    assert ">stale<" in render("{% fresh_badge ts 900 %}", ts=T0)
    assert ">no data<" in render("{% fresh_badge ts 900 %}", ts=None)


def test_since_refuses_what_is_not_a_plausible_epoch():
    factory = RequestFactory()
    assert live.since(factory.get("/", {"since": "1795000000.25"})) == datetime.fromtimestamp(1795000000.25, UTC)
    assert live.since(factory.get("/")) is None
    for bad in ("nan", "inf", "-1", "1e20", "abc", "9" * 40):
        try:
            live.since(factory.get("/", {"since": bad}))
        except live.BadCursor:
            continue
        raise AssertionError(f"{bad!r} was accepted")

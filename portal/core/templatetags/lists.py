import re

from django import template
from django.utils.html import format_html, format_html_join

register = template.Library()


@register.simple_tag(takes_context=True)
def sort_link(context, field: str, label: str):
    """A column header that sorts by `field`, toggling direction; keeps every other filter."""
    request = context["request"]
    params = request.GET.copy()
    current = params.get("sort", "")
    if current == field:
        params["sort"], arrow = f"-{field}", " ▲"
    elif current == f"-{field}":
        params["sort"], arrow = field, " ▼"
    else:
        params["sort"], arrow = field, ""
    params.pop("page", None)
    query = params.urlencode()
    return format_html(
        '<a href="?{}" hx-get="?{}" hx-target="#table" hx-swap="outerHTML" hx-push-url="true" class="link-body-emphasis text-decoration-none">{}{}</a>',
        query,
        query,
        label,
        arrow,
    )


@register.simple_tag(takes_context=True)
def csv_url(context):
    params = context["request"].GET.copy()
    params.pop("page", None)
    params["export"] = "csv"
    return f"?{params.urlencode()}"


@register.simple_tag(takes_context=True)
def hidden_query_inputs(context, exclude: str = ""):
    """The page's query parameters as hidden inputs (but `exclude`, comma-separated), so a small
    GET form (the page jump) keeps every filter, sort and range of the URL."""
    skipped = set(exclude.split(","))
    pairs = [(key, value) for key, values in context["request"].GET.lists() if key not in skipped for value in values]
    return format_html_join("", '<input type="hidden" name="{}" value="{}">', pairs)


# a \uXXXX escape not itself escaped (an even run of backslashes before it)
UNICODE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u([0-9a-fA-F]{4})")


@register.filter
def readable_payload(raw: str) -> str:
    """A received payload as people read it: JSON's \\u escapes shown as their characters
    (`\\u00b0C` reads °C); everything else exactly as it came (numbers, spacing, order), and
    control characters and lone surrogates stay escaped. Nothing is changed in storage."""

    def character(match):
        code = int(match.group(2), 16)
        if code < 0x20 or 0xD800 <= code <= 0xDFFF or code == 0x7F:
            return match.group(0)
        return match.group(1) + chr(code)

    return UNICODE_ESCAPE.sub(character, raw or "")


@register.filter
def any_has(rows, attribute: str) -> bool:
    """Whether any row of a page has a true `attribute` (show "Replay selected" only when some
    row can be selected)."""
    return any(getattr(row, attribute, False) for row in rows)

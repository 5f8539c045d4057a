from django import template
from django.utils.html import format_html

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
        query, query, label, arrow,
    )


@register.simple_tag(takes_context=True)
def csv_url(context):
    params = context["request"].GET.copy()
    params.pop("page", None)
    params["export"] = "csv"
    return f"?{params.urlencode()}"

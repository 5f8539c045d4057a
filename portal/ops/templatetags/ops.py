from django import template
from django.utils.html import format_html, format_html_join

register = template.Library()

WIDTH, HEIGHT, BAR = 90, 20, 6


@register.simple_tag
def sparkline(values: list[int], label: str = ""):
    """Bars of small counts as inline SVG (attributes only: the CSP allows no inline styles)."""
    peak = max(values, default=0) or 1
    step = WIDTH / max(len(values), 1)
    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>',
        (
            (f"{n * step:.1f}", f"{HEIGHT - height:.1f}", BAR, f"{height:.1f}", value)
            for n, value in enumerate(values)
            for height in [max(1.0, HEIGHT * value / peak) if value else 0.0]
        ),
    )
    return format_html(
        '<svg class="sparkline" width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>',
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        label,
        bars,
    )

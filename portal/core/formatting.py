"""One way to write times and numbers for people: 24-hour times in the tenant's time zone (the
middleware activates it per request), values with their sensor's precision."""

from datetime import datetime

from django import forms
from django.utils import timezone

DATETIME_LOCAL = "%Y-%m-%dT%H:%M"  # times in URLs (the explorer's from/to), as ISO 8601 writes them
DATETIME_SHOWN = "%Y-%m-%d %H:%M"  # times in form fields


def merged(shown: dict, attrs: dict | None) -> dict:
    """A widget's attributes: ours, then the caller's, their classes joined rather than replaced."""
    attrs = dict(attrs or {})
    classes = " ".join(filter(None, [shown.get("class", ""), attrs.pop("class", "")]))
    return {**shown, **attrs, "class": classes}


class DateTimeText(forms.DateTimeInput):
    """A date and time field that reads the same for everyone: YYYY-MM-DD HH:MM, 24-hour, in the
    tenant's time zone. A browser's datetime-local picker follows the computer's locale instead
    (12-hour with AM/PM on en-US), whatever the page says. Both ISO forms (with a space or a T)
    are accepted."""

    input_type = "text"

    def __init__(self, attrs=None):
        shown = {
            "placeholder": "YYYY-MM-DD HH:MM",
            "inputmode": "numeric",
            "autocomplete": "off",
            "maxlength": 19,
            "class": "fw-datetime",
        }
        super().__init__(merged(shown, attrs), format=DATETIME_SHOWN)


class DateText(forms.DateInput):
    """A date field as YYYY-MM-DD for everyone (a date picker would show mm/dd/yyyy on en-US)."""

    input_type = "text"

    def __init__(self, attrs=None):
        shown = {
            "placeholder": "YYYY-MM-DD",
            "inputmode": "numeric",
            "autocomplete": "off",
            "maxlength": 10,
            "class": "fw-date",
        }
        super().__init__(merged(shown, attrs), format="%Y-%m-%d")


def local_input(moment: datetime) -> str:
    """A datetime as a datetime-local value (and URL parameter) in the current time zone."""
    return timezone.localtime(moment).strftime(DATETIME_LOCAL)

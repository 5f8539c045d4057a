import django_filters
from django import forms
from django.core.exceptions import ValidationError

from portal.core.formatting import DateText


class ListFilterSet(django_filters.FilterSet):
    """Base of every list's FilterSet: Bootstrap-sized widgets for the filter bar."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.form.fields.values():
            widget = field.widget
            if isinstance(widget, forms.CheckboxInput):
                css = "form-check-input"  # a box, not a text field's frame
            elif isinstance(widget, forms.Select):
                css = "form-select form-select-sm"
            else:
                css = "form-control form-control-sm"
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} {css}".strip()


class BoundedDateField(forms.DateField):
    """A day between 1970 and 2099, as every time that enters Fieldwatch: a list that adds a day
    to its "to" date, or turns it into the tenant's midnight, must not overflow on 9999-12-31."""

    def validate(self, value):
        super().validate(value)
        if value and not 1970 <= value.year < 2100:
            raise ValidationError("Choose a date between 1970 and 2099.", code="out_of_range")


class DateFilter(django_filters.DateFilter):
    """Every list's date filter (bounded, see BoundedDateField)."""

    field_class = BoundedDateField


def date_range(field_name: str) -> dict:
    """`from` and `to` filters on the day of a datetime field, as a list's URL names them (the
    explorer's words; Python cannot declare attributes called `from`). A FilterSet adds them with
    `FilterSet.base_filters.update(date_range(...))`; a bad date is a form error on the page."""
    return {
        "from": DateFilter(field_name=field_name, lookup_expr="date__gte", label="From", widget=DateText()),
        "to": DateFilter(field_name=field_name, lookup_expr="date__lte", label="To", widget=DateText()),
    }

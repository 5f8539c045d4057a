import django_filters
from django import forms


class ListFilterSet(django_filters.FilterSet):
    """Base of every list's FilterSet: Bootstrap-sized widgets for the filter bar."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.form.fields.values():
            widget = field.widget
            css = "form-select form-select-sm" if isinstance(widget, forms.Select) else "form-control form-control-sm"
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} {css}".strip()

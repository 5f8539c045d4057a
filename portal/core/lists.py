"""The one list-view pattern: a FilterSet bound to the URL, sort, pagination, CSV of the same rows.

A view builds its FilterSet (search, filters and `sort` are all query parameters, so a filtered
list is a shareable link) and hands it to list_response(). `?export=csv` streams exactly the
filtered, sorted rows; an htmx request gets only the template's `table` partial.
"""

import csv
from dataclasses import dataclass
from typing import Any, Callable

from django.core.paginator import Paginator
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django_filters import FilterSet

PAGE_SIZE = 50
CSV_CHUNK = 2000


@dataclass(frozen=True)
class Column:
    """A CSV column: a header and either an attribute path ("user.email") or a function of the row."""

    header: str
    value: str | Callable[[Any], Any]

    def of(self, row) -> Any:
        if callable(self.value):
            return self.value(row)
        result = row
        for part in self.value.split("."):
            result = getattr(result, part, None)
            if result is None:
                return ""
        return result() if callable(result) else result


class Echo:
    """A file-like object whose write() returns the line, so csv.writer can feed a generator."""

    def write(self, value):
        return value


def csv_rows(queryset, columns: list[Column]):
    writer = csv.writer(Echo())
    yield writer.writerow([column.header for column in columns])
    # iterator() keeps memory flat however many rows match; chunk_size keeps round trips few
    for row in queryset.iterator(chunk_size=CSV_CHUNK):
        yield writer.writerow([format_cell(column.of(row)) for column in columns])


def format_cell(value) -> str:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return "" if value is None else str(value)


def stream_csv(queryset, columns: list[Column], filename: str) -> StreamingHttpResponse:
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(csv_rows(queryset, columns), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}-{stamp}.csv"'
    return response


def list_response(request, filterset: FilterSet, template: str, columns: list[Column], filename: str, context=None, page_size=PAGE_SIZE):
    """Render a filtered list page (or its table partial for htmx), or its CSV with ?export=csv."""
    rows = filterset.qs
    if request.GET.get("export") == "csv":
        return stream_csv(rows, columns, filename)
    page = Paginator(rows, page_size).get_page(request.GET.get("page"))
    context = {"filter": filterset, "page": page, "rows": page.object_list, **(context or {})}
    # htmx restoring history after a reload asks with HX-Request too, and needs the whole page
    partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, f"{template}#table" if partial else template, context)
    response["Vary"] = "HX-Request"
    return response

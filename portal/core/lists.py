"""The one list-view pattern: a FilterSet bound to the URL, sort, pagination, CSV of the same rows.

A view builds its FilterSet (search, filters and `sort` are all query parameters, so a filtered
list is a shareable link) and hands it to list_response(). `?export=csv` streams exactly the
filtered, sorted rows; an htmx request gets only the template's `table` partial.
"""

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from itertools import islice
from typing import Any

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
            # rows are model instances, or dicts where a list is built in Python (asset history)
            result = result.get(part) if isinstance(result, Mapping) else getattr(result, part, None)
            if result is None:
                return ""
        return result() if callable(result) else result


class Echo:
    """A file-like object whose write() returns the line, so csv.writer can feed a generator."""

    def write(self, value):
        return value


def format_cell(value, zone=None) -> str:
    """One CSV format everywhere: `true`/`false`; floats in their shortest form of 15 significant
    digits (what a float8 holds for certain, so 0.1 + 0.2 reads 0.3); times ISO 8601 with the
    offset of `zone` (the tenant's, default the current one)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, ".15g")
    if isinstance(value, datetime):
        return value.astimezone(zone or timezone.get_current_timezone()).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def csv_lines(header: list[str], rows, chunk: int = CSV_CHUNK):
    """CSV text of a header and rows of values, `chunk` lines per piece (one write each).

    The time zone is taken now, while the request's is active: a streaming response is read
    after the middleware has deactivated it."""
    return _csv_lines(header, rows, timezone.get_current_timezone(), chunk)


def _csv_lines(header, rows, zone, chunk):
    writer = csv.writer(Echo())
    yield writer.writerow(header)
    rows = iter(rows)
    while batch := list(islice(rows, chunk)):
        yield "".join(writer.writerow([format_cell(value, zone) for value in row]) for row in batch)


def csv_rows(queryset, columns: list[Column]):
    # iterator() keeps memory flat however many rows match; chunk_size keeps round trips few
    rows = ([column.of(row) for column in columns] for row in queryset.iterator(chunk_size=CSV_CHUNK))
    return csv_lines([column.header for column in columns], rows)


def stream_csv(queryset, columns: list[Column], filename: str) -> StreamingHttpResponse:
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(csv_rows(queryset, columns), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}-{stamp}.csv"'
    return response


def list_response(
    request,
    filterset: FilterSet,
    template: str,
    columns: list[Column],
    filename: str,
    context=None,
    page_size=PAGE_SIZE,
    prepare: Callable[[list], None] | None = None,
):
    """Render a filtered list page (or its table partial for htmx), or its CSV with ?export=csv.

    prepare: called with the page's rows before rendering, for figures that cannot be SQL
    annotations (the console measures each tenant in its own schema); CSV columns compute theirs.
    """
    rows = filterset.qs
    if request.GET.get("export") == "csv":
        return stream_csv(rows, columns, filename)
    page = Paginator(rows, page_size).get_page(request.GET.get("page"))
    if prepare is not None:
        prepare(page.object_list)
    context = {"filter": filterset, "page": page, "rows": page.object_list, **(context or {})}
    # htmx restoring history after a reload asks with HX-Request too, and needs the whole page
    partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, f"{template}#table" if partial else template, context)
    response["Vary"] = "HX-Request"
    return response

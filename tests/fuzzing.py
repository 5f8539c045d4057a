"""What the fuzz tests share: hostile values, URL patterns to walk, and the count of requests
each endpoint got (written to test-artifacts/fuzz-counts.json at the end of the session, with
how many answered 500: the assertion is that none did)."""

import json
from collections import Counter
from urllib.parse import quote

from django.urls import URLPattern, URLResolver, get_resolver
from helpers import ROOT
from hypothesis import strategies as st

COUNTS: dict[str, Counter] = {}
ARTIFACT = ROOT / "test-artifacts" / "fuzz-counts.json"

# Values that once broke an endpoint somewhere, and their neighbours.
EDGES = [
    "",
    "²",
    "٣",
    "-1",
    "0",
    "1",
    "9" * 30,
    "1e400",
    "nan",
    "-inf",
    "9999-12-31",
    "0001-01-01",
    "9999-12-31T23:59",
    "2026-11-20T12:00:00+16:00",
    "253402300799",
    "\x00",
    "\ud800",
    "csv",
    "custom",
    "raw",
    "1h",
    "-name",
    "<script>",
    "' OR 1=1 --",
    "a" * 3000,
    "%",
    "..",
]
hostile_text = st.one_of(st.sampled_from(EDGES), st.text(max_size=40))


def record(endpoint: str, status: int) -> None:
    counts = COUNTS.setdefault(endpoint, Counter())
    counts["requests"] += 1
    counts[f"{status // 100}xx"] += 1
    if status >= 500:
        counts["500"] += 1


def write_counts() -> None:
    if not COUNTS:
        return
    ARTIFACT.parent.mkdir(exist_ok=True)
    previous = json.loads(ARTIFACT.read_text()) if ARTIFACT.exists() else {}
    endpoints = previous.get("endpoints", {}) | {name: dict(counts) for name, counts in sorted(COUNTS.items())}
    total = sum(c.get("requests", 0) for c in endpoints.values())
    errors = sum(c.get("500", 0) for c in endpoints.values())
    ARTIFACT.write_text(json.dumps({"requests": total, "server_errors": errors, "endpoints": endpoints}, indent=1))


def query_string(params: dict[str, str]) -> str:
    """Percent-encoded as a client on the wire would send it: a lone surrogate becomes the bytes
    no UTF-8 decoder accepts, which Django must decode with replacement."""

    def encode(text: str) -> str:
        return quote(text.encode("utf-8", "surrogatepass"), safe="")

    return "&".join(f"{encode(key)}={encode(value)}" for key, value in params.items())


def walk(urlconf: str):
    """(route, callback, name) of every URL pattern, the routes of included URLconfs joined."""

    def patterns(resolver, prefix):
        for item in resolver.url_patterns:
            route = prefix + str(item.pattern)
            if isinstance(item, URLResolver):
                yield from patterns(item, route)
            elif isinstance(item, URLPattern):
                yield route, item.callback, item.name

    yield from patterns(get_resolver(urlconf), "")

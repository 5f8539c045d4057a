"""Bounds for values from outside, applied where they enter (device API, webhook, bridge, pages).

PostgreSQL is the judge of what is storable, and each of these once reached it unchecked and
answered 500: a NUL character or a lone surrogate in text (psycopg cannot encode it), an id longer
than its column, a time-zone offset beyond what timestamptz takes (±15:59; real zones stay within
±14:00), a year that overflows the moment a bucket or a span is added to it, and JSON nested so
deep that Python's parser runs out of stack.
"""

from datetime import UTC, datetime, timedelta

MAX_JSON_DEPTH = 32  # what a device or integration body needs is 3 or 4 levels
MAX_ID_LENGTH = 100  # Device.device_id, Sensor.key
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_OFFSET = timedelta(hours=14)  # UTC+14:00 (Kiribati) and UTC-12:00 are the real extremes
CONTAINERS = (dict, list)


class OutOfBounds(ValueError):
    """A value outside what Fieldwatch stores; the message says what is allowed."""


def storable(value: str) -> bool:
    """Whether PostgreSQL can store or compare the text: no NUL, no lone surrogate."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(value: str) -> str:
    """Text a PostgreSQL text column stores: NUL and lone surrogates replaced by U+FFFD."""
    return value.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\ufffd")


def valid_id(value, max_length: int = MAX_ID_LENGTH) -> bool:
    """A device id or sensor key that can be stored as it is."""
    return isinstance(value, str) and 0 < len(value) <= max_length and storable(value)


def utc_moment(moment: datetime) -> datetime:
    """`moment` in UTC (a naive time is taken as UTC); OutOfBounds for an offset beyond ±14:00 or
    a time outside 1970–2100."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    offset = moment.utcoffset()
    if offset is not None and abs(offset) > MAX_OFFSET:
        raise OutOfBounds("the time-zone offset must be within ±14:00")
    if moment.year < EARLIEST.year or moment.year >= LATEST.year:
        raise OutOfBounds("the time must be between 1970 and 2100")
    moment = moment.astimezone(UTC)
    if not EARLIEST <= moment < LATEST:  # 1970-01-01T00:30+01:00 is still 1969 in UTC
        raise OutOfBounds("the time must be between 1970 and 2100")
    return moment


def nested_deeper_than(value, limit: int) -> bool:
    """Whether containers nest more than `limit` levels (iterative: no recursion to run out of)."""
    if type(value) not in CONTAINERS:
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if type(item) is dict else item:
            if type(child) in CONTAINERS:
                stack.append((child, depth + 1))
    return False


MAX_BIGINT = 2**63 - 1


def whole_number(value, maximum: int = MAX_BIGINT) -> int | None:
    """A non-negative integer from text (a query parameter, a form's id), or None. ASCII digits
    only: "²".isdigit() is true and int("²") raises; and no more than a bigint column holds."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 19:
        return None
    number = int(value)
    return number if number <= maximum else None

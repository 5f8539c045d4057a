"""What one input may write to the dead-letter table, and how long letters are kept.

A 235-byte gzip body of 100,001 zeros once wrote 100,001 rows. Now an input (one HTTP request,
one bulk upload, one MQTT message) keeps its first MAX_PER_INPUT letters; every further
rejection is still counted (in the answer's totals and by reason) and stands in one summary
letter (reason "capped"), so nothing is dropped without a trace and the table grows by at most
MAX_PER_INPUT + 1 rows per input. On top, each sender (a device, an API key, a webhook's tenant)
may write FIELDWATCH_DEAD_LETTER_RATE letters per window, whichever path its input comes by
(sender_grant(): the one implementation, used by the device HTTP API, bulk uploads and their
jobs, the webhook and the MQTT bridge); what is over it is counted in the summary letter too.
"""

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from telemetry.models import DeadLetter, TelemetrySettings

log = logging.getLogger(__name__)

MAX_PER_INPUT = 100
PURGE_BATCH = 5000


class LetterBudget:
    """Dead letters of one input: the first `limit` kept, the rest counted by reason.

    grant(n) -> how many of n letters the sender may still write (a rate limit); the others
    are counted like those over the limit. An input whose sender may write none at all writes no
    summary either (the caller still counts its rejections): so a flood of messages from one
    device adds no row once its allowance is spent, where a summary per message would."""

    def __init__(self, limit: int = MAX_PER_INPUT, grant: Callable[[int], int] | None = None):
        self.limit, self.grant = limit, grant
        self.kept: list[DeadLetter] = []
        self.over = Counter()
        self.template: DeadLetter | None = None  # the first letter over the cap: its source, topic, device
        self.taken = 0  # kept letters take() has handed out
        self.granted = 0  # letters the rate let through

    def add(self, letter: DeadLetter) -> None:
        if len(self.kept) < self.limit:
            self.kept.append(letter)
            return
        self.over[letter.reason] += 1
        self.template = self.template or letter

    def extend(self, letters) -> None:
        for letter in letters:
            self.add(letter)

    def take(self) -> list[DeadLetter]:
        """The letters to write now (kept ones not yet taken, rate permitting); call again later
        for the ones added since. The summary letter is not among them: see summary()."""
        letters, self.taken = self.kept[self.taken :], len(self.kept)
        if self.grant is not None and letters:
            allowed = max(0, min(len(letters), self.grant(len(letters))))
            for letter in letters[allowed:]:
                self.over[letter.reason] += 1
                self.template = self.template or letter
            letters = letters[:allowed]
        self.granted += len(letters)
        return letters

    def summary(self) -> DeadLetter | None:
        """One letter standing for every rejection not kept, with their count by reason."""
        if not self.over:
            return None
        total = sum(self.over.values())
        if self.grant is not None and self.granted == 0 and not self.grant(1):
            log.warning("%s dead letters of %s not kept: its sender's allowance is spent", total, self.template.topic)
            return None
        first = self.template
        by_reason = ", ".join(f"{reason} {count}" for reason, count in self.over.most_common())
        return DeadLetter(
            source=first.source,
            topic=first.topic,
            device_ref=first.device_ref,
            reason="capped",
            detail=f"{total} more rejected, not kept one by one ({by_reason})"[:300],
            payload=json.dumps({"not_kept": total, "reasons": dict(self.over), "first": first.payload[:2000]}),
        )

    def write(self) -> int:
        """Write what take() and summary() give; returns the rows written."""
        letters = self.take()
        summary = self.summary()
        rows = letters + ([summary] if summary else [])
        if rows:
            DeadLetter.objects.bulk_create(rows)
        self.over.clear()
        self.template = None
        return len(rows)


def allowance(identity: str, wanted: int, rate: str | None = None) -> int:
    """Count up to `wanted` letters against `identity`'s allowance ("count/seconds", fixed
    windows, in the cache: shared by every process where it is Redis or the database, and per
    tenant, as the cache's keys name the schema); returns how many it may still write now."""
    count, _, seconds = (rate or settings.FIELDWATCH_DEAD_LETTER_RATE).partition("/")
    limit, window = int(count), int(seconds or 60)
    key = f"ratelimit:dead-letters:{identity}:{int(time.time() // window)}"
    cache.add(key, 0, window + 1)
    try:
        total = cache.incr(key, wanted)
    except ValueError:  # expired between add and incr
        cache.add(key, wanted, window + 1)
        total = wanted
    return max(0, min(wanted, limit - (total - wanted)))


def sender_grant(identity: str) -> Callable[[int], int]:
    """grant() for a LetterBudget: the letters `identity` ("device:<id>", "key:<id>", …) may write."""
    return lambda wanted: allowance(identity, wanted)


def sender_of(letter: DeadLetter) -> str:
    """Whose allowance a letter counts against: the device it names (`letter.sender`, set by
    whoever made it, or its device_ref), else its source's unattributed share of the tenant."""
    device = getattr(letter, "sender", "") or letter.device_ref
    return f"device:{device[:100]}" if device else f"{letter.source}:unattributed"


def per_message(letters: list[DeadLetter]) -> list[DeadLetter]:
    """The rows to write for letters of many inputs (a bridge batch): each input, told apart by
    its topic and raw payload (a message's readings share both), capped on its own and counted
    against its sender's allowance (the device its first letter names)."""
    budgets: dict[tuple[str, str], LetterBudget] = {}
    for letter in letters:
        key = (letter.topic, letter.payload)
        if key not in budgets:
            budgets[key] = LetterBudget(grant=sender_grant(sender_of(letter)))
        budgets[key].add(letter)
    rows = []
    for budget in budgets.values():
        rows += budget.take()
        summary = budget.summary()
        if summary:
            rows.append(summary)
    return rows


def purge_expired(now=None) -> int:
    """Delete this tenant's dead letters older than its retention setting, in batches so no lock
    is held for long; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=TelemetrySettings.current().dead_letter_retention_days)
    deleted = 0
    while True:
        ids = list(DeadLetter.objects.filter(received_at__lt=cutoff).values_list("id", flat=True)[:PURGE_BATCH])
        if not ids:
            return deleted
        deleted += DeadLetter.objects.filter(id__in=ids).delete()[0]

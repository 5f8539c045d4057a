"""The dashboard's sections and the cheap check that keeps them live (portal.core.live).

Each fleet app adds to the dashboard with a `dashboard` module whose `sections()` lists
`Section`s: a key (the element's id, `dash-<key>`), a `version(request, pulse)` and what it shows,
`cards(request)` (widget dicts in the cards row) or `panel(request)` (a dict naming its
"template", or None). The page carries each section's version (hashed) in its poll's URL; a poll
computes the versions again and answers 204 when none moved, else only the sections whose version
moved, swapped out of band. A version must change whenever what its section shows changes,
including with time alone (a device going offline, the last hour moving on), and must cost a
few index probes whatever the fleet's size: the `Pulse` holds what the versions are made of
(the fleet's online state, the newest change in the audit log, each section's `probes`), all
queried in one statement: an idle poll is that one query besides the session's.
"""

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from portal.audit.models import AuditLog
from portal.core.discovery import app_modules
from portal.core.live import EARLIEST_EPOCH, LATEST_EPOCH, epoch
from portal.tenancy.models import Invitation, Membership
from telemetry import queries
from telemetry.models import online_window

# Account events (sign-ins, password changes) are about sessions, not things: the audit log has
# them for admins; "Recent activity" shows what changed in the organisation.
SESSION_ACTIONS = "user."
RECENT = 10  # changes listed in Recent activity
MAX_VERSIONS_LENGTH = 4000  # the `v` parameter of a poll: a few dozen sections at most
_ONE = r"[a-z0-9-]{1,40}:[0-9a-f]{1,16}(?:@[0-9]{1,12}(?:\.[0-9]{1,6})?)?"
VERSIONS = re.compile(rf"{_ONE}(?:,{_ONE})*")


@dataclass(frozen=True)
class Section:
    key: str
    version: Callable  # (request, pulse) -> str
    cards: Callable | None = None  # (request) -> list[dict]
    panel: Callable | None = None  # (request) -> dict | None
    wide: bool = False  # a panel across the page (the activity row), not half of it
    # A panel of many values (the key sensors) may send just the rows that changed: `cursor`
    # (request, pulse) -> the newest moment its values can have changed, cheap (from the pulse);
    # when only that moved, `updates(request, since)` -> {"template": ..., rows} swaps its rows.
    cursor: Callable | None = None
    updates: Callable | None = None
    # what the version is made of, beyond the Pulse's own: {name: () -> a QuerySet, or (sql,
    # params)}, read with pulse.probe(name) (its rows as JSON). Every section's probes and the
    # Pulse's run as one statement: one round trip for the whole idle poll.
    probes: tuple[tuple[str, Callable], ...] = ()

    def render(self, request) -> dict:
        if self.cards:
            return {"key": self.key, "kind": "cards", "cards": self.cards(request)}
        return {"key": self.key, "kind": "panel", "panel": self.panel(request), "wide": self.wide}

    def render_updates(self, request, since: datetime) -> dict:
        return {"key": self.key, "kind": "updates", "updates": self.updates(request, since)}


class Pulse:
    """What the sections' versions are made of, queried once per request in one statement: the
    fleet's online state, the newest change people made, and every section's probes."""

    def __init__(self):
        self.now = timezone.now()

    @cached_property
    def probed(self) -> dict[str, str]:
        """{probe name: its rows as JSON text}: one round trip for all of them."""
        cutoff = self.now - online_window()
        made = {
            "fleet": (queries.FLEET_STATE_SQL, [cutoff, cutoff]),
            "changes": AuditLog.objects.exclude(action__startswith=SESSION_ACTIONS)
            .order_by("-created_at")
            .values("created_at")[:1],
        }
        made |= {name: make() for section in all_sections() for name, make in section.probes}
        parts, params = [], []
        for probe in made.values():
            sql, probe_params = probe.query.sql_with_params() if isinstance(probe, QuerySet) else probe
            parts.append(f"(SELECT coalesce(json_agg(q), '[]')::text FROM ({sql}) q)")
            params.extend(probe_params)
        with connection.cursor() as cursor:
            cursor.execute("SELECT " + ", ".join(parts), params)
            return dict(zip(made, cursor.fetchone(), strict=True))

    def probe(self, name: str) -> list[dict]:
        return json.loads(self.probed[name])

    @cached_property
    def fleet(self) -> queries.FleetState:
        (row,) = self.probe("fleet")
        moments = {
            key: datetime.fromisoformat(row[key]) if row[key] else None for key in ("newest_seen", "offline_newest")
        }
        return queries.FleetState(total=row["total"], online=row["online"], **moments)

    @cached_property
    def online(self) -> str:
        """Changes when a device comes online or goes offline (by time alone too)."""
        fleet = self.fleet
        return f"{fleet.total},{fleet.online},{fleet.offline_newest and fleet.offline_newest.timestamp()}"

    @cached_property
    def changes(self) -> str:
        """The newest change people made (the audit log, sessions left out)."""
        return self.probed["changes"]

    @cached_property
    def today(self) -> str:
        return timezone.localdate(self.now).isoformat()  # in the tenant's zone (activated per request)

    @cached_property
    def hour(self) -> str:
        return timezone.localtime(self.now).strftime("%Y-%m-%dT%H")


def activity(request) -> dict:
    """Recent changes to things (not sessions), members and invitations."""
    tenant = request.tenant
    changes = AuditLog.objects.exclude(action__startswith=SESSION_ACTIONS)
    return {
        "template": "core/dashboard_activity.html",
        "member_count": Membership.objects.filter(tenant=tenant).count(),
        "pending_invitations": Invitation.objects.pending().filter(tenant=tenant).count(),
        "changes_this_week": changes.filter(created_at__gte=timezone.now() - timedelta(days=7)).count(),
        "recent_activity": changes[:RECENT],
    }


def activity_version(request, pulse) -> str:
    # members and invitations change through audited actions; "this week" and invitations
    # expiring move with time: each hour
    return f"{pulse.changes}|{pulse.hour}"


def pulse(request) -> Pulse:
    """The request's Pulse: versions and sections share it (the fleet's state queried once)."""
    if not hasattr(request, "dashboard_pulse"):
        request.dashboard_pulse = Pulse()
    return request.dashboard_pulse


@cache
def all_sections() -> tuple[Section, ...]:
    """Every app's sections in INSTALLED_APPS order, then portal.core's own: the activity row."""
    found = [section for module in app_modules("dashboard") for section in module.sections()]
    return (*found, Section("activity", activity_version, panel=activity, wide=True))


def digest(version: str) -> str:
    return hashlib.blake2s(version.encode(), digest_size=6).hexdigest()


def versions(request) -> dict[str, str]:
    """{section key: "hash" or "hash@cursor"}: the version's digest, and the epoch of its cursor."""
    found = {}
    for section in all_sections():
        token = digest(section.version(request, pulse(request)))
        moment = section.cursor(request, pulse(request)) if section.cursor else None
        found[section.key] = f"{token}@{epoch(moment)}" if moment else token
    return found


def encode(tokens: dict[str, str]) -> str:
    return ",".join(f"{key}:{value}" for key, value in tokens.items())


def decode(raw: str) -> dict[str, str]:
    """The versions a page holds; ValueError for anything our pages do not make."""
    if not raw:
        return {}
    if len(raw) > MAX_VERSIONS_LENGTH or not VERSIONS.fullmatch(raw):
        raise ValueError("v must be the versions the dashboard handed out (key:hex[@epoch], comma-separated)")
    tokens = dict(part.split(":") for part in raw.split(","))
    for token in tokens.values():
        if "@" in token and not EARLIEST_EPOCH <= float(token.split("@")[1]) < LATEST_EPOCH:
            raise ValueError("a version's cursor must be epoch seconds between 2000 and 2100")
    return tokens


def changes(shown: dict[str, str], current: dict[str, str]) -> tuple[set[str], dict[str, datetime]]:
    """What a poll sends: the sections whose version moved (rendered whole), and {key: the page's
    cursor} of those whose version held but whose cursor moved on (their changed rows only)."""
    moved, advanced = set(), {}
    for key, token in current.items():
        held = shown.get(key, "")
        if held.split("@")[0] != token.split("@")[0]:
            moved.add(key)
        elif held != token and "@" in held and "@" in token:
            advanced[key] = datetime.fromtimestamp(float(held.split("@")[1]), UTC)
    return moved, advanced


def render(request, only: set[str] | None = None, advanced: dict[str, datetime] | None = None) -> list[dict]:
    """Each section's content (only those named in `only`, when given), and the changed rows of
    those in `advanced`, in page order."""
    found = []
    for section in all_sections():
        if only is None or section.key in only:
            found.append(section.render(request))
        elif advanced and section.key in advanced and section.updates:
            found.append(section.render_updates(request, advanced[section.key]))
    return found

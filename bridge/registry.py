"""Topic handlers: each app declares the MQTT topics it takes in a module of its own, `<app>/topics.py`.

The bridge finds these modules among the installed apps and routes every message to the one whose
filters match its topic; it imports no app by name, so a new fleet adds topics without touching it.
A topics module defines:

    SUBSCRIPTIONS   the topic filters it takes (subscribed with QoS 1, through the share group if any)

and the lane its messages travel in:

    batched (the default; telemetry, where throughput matters): messages wait in the bridge's batch
        decode(topic, payload, now) -> a message with tenant_slug, readings, reason, detail and
                                       dead_letter(), read without touching the database
        store(messages)             -> an IngestResult; called inside one tenant's schema, one
                                       transaction per tenant and batch
    prompt (PROMPT = True; commands and status, where latency matters): each message is handled at
        once by the prompt lane (bridge/lanes.py), never behind a telemetry batch
        handle(topic, payload, now) -> a list of (topic, payload) replies to publish; it finds the
                                       tenant itself, commits, and raises OperationalError to be retried
        handle_batch(messages, now)  optional: a list of (topic, payload) that arrived together (the
                                       lane's batch, bridge/lanes.py), returning each one's replies in
                                       order; the locks' access requests settle together this way

and, if it sends messages, an outbox (bridge/outbox.py publishes it):

    OUTBOX_CHANNEL  a PostgreSQL NOTIFY channel the app signals (payload: the schema name) when it
                    wrote something to send
    outgoing(limit) -> [(key, topic, payload)] due in the current tenant schema
    published(keys)    the broker acknowledged these (QoS 1): mark them sent
"""

import importlib
import importlib.util
import re
from dataclasses import dataclass
from types import ModuleType

from django.apps import apps


@dataclass(frozen=True)
class Handler:
    name: str  # the module, for logs
    module: ModuleType
    subscriptions: tuple[str, ...]
    prompt: bool
    outbox_channel: str

    @classmethod
    def of(cls, module: ModuleType) -> "Handler":
        return cls(
            module.__name__,
            module,
            tuple(module.SUBSCRIPTIONS),
            bool(getattr(module, "PROMPT", False)),
            getattr(module, "OUTBOX_CHANNEL", ""),
        )


def discover() -> list[ModuleType]:
    """The `topics` module of every installed app that declares SUBSCRIPTIONS."""
    modules = []
    for app in apps.get_app_configs():
        name = f"{app.name}.topics"
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        if hasattr(module, "SUBSCRIPTIONS"):
            modules.append(module)
    return modules


def filter_pattern(topic_filter: str) -> str:
    """An MQTT topic filter as a regular expression: `+` is one level, a trailing `#` any rest."""
    levels = topic_filter.split("/")
    parts = []
    for n, level in enumerate(levels):
        if level == "#" and n == len(levels) - 1:
            parts.append("(?:/.*)?" if parts else ".*")
            continue
        text = "[^/]*" if level == "+" else re.escape(level)
        parts.append(text if n == 0 else "/" + text)
    return "".join(parts)


@dataclass(frozen=True)
class Unrouted:
    """A message no handler takes (only with overlapping or stale subscriptions): a dead letter."""

    topic: str
    raw: str
    tenant_slug: str = ""
    readings: tuple = ()
    reason: str = "unknown_topic"
    detail: str = "the topic matches none of Fieldwatch's topics"

    def dead_letter(self):
        from telemetry.models import DeadLetter

        return DeadLetter(
            source=DeadLetter.Source.MQTT,
            topic=self.topic[:300],
            payload=self.raw,
            reason=self.reason,
            detail=self.detail,
        )


class Router:
    """Topic -> handler, by one compiled regular expression of every filter (about a microsecond a
    message, whatever the number of handlers). Prompt handlers are tried first, so a narrow
    command filter wins over a wide telemetry one."""

    def __init__(self, modules: list[ModuleType] | None = None):
        found = discover() if modules is None else modules
        self.handlers = sorted((Handler.of(m) for m in found), key=lambda h: not h.prompt)
        alternatives = []
        self.by_group: dict[str, Handler] = {}
        for n, handler in enumerate(self.handlers):
            group = f"h{n}"
            self.by_group[group] = handler
            patterns = "|".join(filter_pattern(f) for f in handler.subscriptions)
            alternatives.append(f"(?P<{group}>{patterns})")
        self.pattern = re.compile("|".join(alternatives) or "(?!)")

    @property
    def subscriptions(self) -> list[str]:
        return [topic for handler in self.handlers for topic in handler.subscriptions]

    @property
    def outboxes(self) -> list[Handler]:
        return [handler for handler in self.handlers if handler.outbox_channel]

    def route(self, topic: str) -> Handler | None:
        match = self.pattern.fullmatch(topic)
        return self.by_group[match.lastgroup] if match else None

    def decode(self, handler: Handler | None, topic: str, payload: bytes, now):
        """The batched lane's decoded message (an Unrouted dead letter when no handler takes it)."""
        if handler is None:
            return Unrouted(topic, payload.decode("utf-8", "replace"))
        return handler.module.decode(topic, payload, now)

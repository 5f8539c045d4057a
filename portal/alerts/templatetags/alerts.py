from django import template

from portal.alerts.targets import kind_of

register = template.Library()


@register.filter
def target_text(rule) -> str:
    """What a rule watches, in words ('every temperature sensor of site Riverside Hospital')."""
    kind = kind_of(rule)
    return kind.describe(rule) if kind else f"unknown target kind {rule.target_kind!r}"


@register.filter
def fact_label(fact: dict) -> str:
    return str(fact.get("condition") or fact.get("reason") or "")


@register.filter
def fact_value(fact: dict) -> str:
    """The value behind a fact: a reading, an event's message, a last-seen time, a rejected value."""
    for key in ("value", "message", "last_seen", "last"):
        if fact.get(key) is not None:
            return f"last seen {fact[key]}" if key in ("last_seen", "last") else str(fact[key])
    return "—"

"""Signals of the time-series core, for the portal apps that react to devices.

device_event: something a device did or suffered that people may need to hear of (a lock's
keypad locked out after repeated failures, tamper, jammed, a command left unanswered, a burst of
failures from one address). The app that detects it sends it; the alert engine turns it into an
alert through its rules. Sent inside the tenant's schema, after the detecting transaction
committed (use transaction.on_commit), with these keyword arguments:

    device      telemetry.models.Device the event concerns (for a lock: the lock's device)
    kind        a short stable code: "lockout", "tamper", "jammed", "low_battery", "offline",
                "command_expired", "suspicious_ip", …
    severity    "low", "medium", "high" or "critical": how the detecting app rates it
    message     one sentence for people ("5 wrong PINs in 15 minutes: keypad disabled until 14:05")
    occurred_at an aware datetime
    details     a JSON-serialisable dict of the facts behind it (counts, source address, request id)
    resolved    True when the condition is over (the lockout ended, the lock answers again)
"""

from django.dispatch import Signal

device_event = Signal()

readings_stored = Signal()
"""Sent by telemetry.ingest.ingest() after a batch committed (transaction.on_commit), only when a
receiver is connected, with these keyword arguments:

    schema    the tenant schema the batch went into (receivers enter it themselves: on_commit
              callbacks may run after the caller left its schema_context)
    rows      {(sensor id, UTC ts): value} of every valid reading of the batch (stored, or already
              stored before: a repeat); the ingest path's own dict, to read and never to change
    rejected  {sensor id: [(ts, value, reason)]} readings of known sensors refused as impossible
              values (reason "out_of_range" or "not_finite"): the data-quality signal
"""

device_key_changed = Signal()
"""Sent when a device was saved with a token just issued (`key`: the raw token, which exists only
in this call) or revoked (`key` None), inside the saving transaction, in the tenant's schema, with
the keyword arguments `device` and `key`. Seed 004's locks present their device key as their
MQTT password, so portal.devices keeps a lock's MQTT credentials in step with it."""

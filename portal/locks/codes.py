"""PIN codes as secrets: how they are hashed, generated, and judged weak.

A PIN is never stored or logged in clear. Two digests are kept instead:

- `pin_digest(lock, pin)`: HMAC-SHA256 under the server's LOCK_PIN_KEY of "<lock pk>:<pin>". Keyed, so
  the access check finds the PIN by an indexed equality lookup (a salted slow hash would need a scan
  of every code of the lock), and a stolen database alone cannot be brute-forced over the 10^4–10^8
  PINs without the key.
- `sync_digest(lock, pin)`: HMAC-SHA256 under the lock's own salt, which is what the lock receives in a
  code sync and compares against on its keypad while offline. One lock's codes tell nothing of another's.
"""

import hashlib
import hmac
import secrets

from django.conf import settings

MIN_LENGTH, MAX_LENGTH = 4, 8
# the PINs people pick first (beyond repeats and runs, which are refused by rule)
COMMON = {"1004", "2000", "2580", "0852", "1122", "1212", "1313", "2468", "1357", "6969", "1010", "4545", "2020"}


def server_key() -> bytes:
    return settings.LOCK_PIN_KEY.encode()


def pin_digest(lock_pk: int, pin: str) -> str:
    return hmac.new(server_key(), f"{lock_pk}:{pin}".encode(), hashlib.sha256).hexdigest()


def sync_digest(salt: str, pin: str) -> str:
    return hmac.new(salt.encode(), pin.encode(), hashlib.sha256).hexdigest()


def format_problem(pin: str) -> str | None:
    if not pin.isascii() or not pin.isdigit():
        return "A PIN has digits only."
    if not MIN_LENGTH <= len(pin) <= MAX_LENGTH:
        return f"A PIN has {MIN_LENGTH} to {MAX_LENGTH} digits."
    return None


def weakness(pin: str) -> str | None:
    """Why a well-formed PIN is too easy to guess, or None: one digit repeated, a run up or down
    (wrapping 9→0 too), a short pattern repeated (1212, 123123), or a well-known choice."""
    if len(set(pin)) == 1:
        return "A PIN of one repeated digit is too easy to guess."
    steps = {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:], strict=False)}
    if steps in ({1}, {9}):
        return "A run of digits (like 1234 or 9876) is too easy to guess."
    for size in range(1, len(pin) // 2 + 1):
        if len(pin) % size == 0 and pin[:size] * (len(pin) // size) == pin:
            return "A repeated pattern (like 1212) is too easy to guess."
    if pin in COMMON or pin[:4] in COMMON and len(pin) == 4:
        return "This PIN is among the first people try."
    return None


def generate(length: int, taken=lambda pin: False) -> str:
    """A random PIN of `length` digits that is not weak and not `taken` (the lock's other codes)."""
    while True:
        pin = "".join(secrets.choice("0123456789") for _ in range(length))
        if weakness(pin) is None and not taken(pin):
            return pin

"""The lock's access check over HTTP (lean device path: portal.core.lean, LEAN_PATH_PREFIXES).

    POST /api/locks/<lock id>/access/   Authorization: Bearer <the lock's device key>
    {"method": "pin" | "qr", "code": "...", "action": "unlock" | "lock"}
    → 200 {"allowed", "reason", "message", "remaining_uses"}

A refusal is an answer (200 with allowed false and its reason), not an error; errors (bad token,
malformed body) are 4xx in the JSON error shape. Unlike other device endpoints, a refused request
is not kept as a dead letter: its body holds a PIN, which is never stored in clear.
"""

import hmac

from django.http import JsonResponse
from django.utils import timezone

from portal.api.auth import bearer
from portal.api.device_views import Fields, json_object
from portal.api.endpoint import ApiError, api_endpoint
from portal.audit.log import client_ip
from portal.locks import access, hotpath
from portal.locks.models import AccessLog, Lock
from telemetry.models import hash_token


def lock_for_key(raw: str, ip: str | None, at) -> Lock:
    """The lock whose device key the request carries, with its device and site and whether the
    caller's address is blocked (lock.address_blocked), in one query (the access check is the locks'
    hot path); the key compared again in constant time, as Device.for_token does."""
    digest = hash_token(raw) if raw and len(raw) <= 200 else None
    lock = hotpath.lock_by_key(digest, ip, at) if digest else None
    if lock is None or not hmac.compare_digest(lock.device.token_hash, digest):
        raise ApiError(401, "invalid_token", "A valid device key is required (Authorization: Bearer <key>).")
    return lock


@api_endpoint(methods=("POST",), max_bytes=4096)
def access_check(request, lock_id):
    at, ip = timezone.now(), client_ip(request)
    lock = lock_for_key(bearer(request), ip, at)
    if lock.lock_id != lock_id:
        raise ApiError(403, "device_mismatch", "The address names another lock than the one this key belongs to.")
    fields = Fields(json_object(request))
    method = fields.text("method", 10, required=False) or AccessLog.Method.PIN
    code = fields.text("code", 64)
    action = fields.text("action", 10, required=False) or AccessLog.Action.UNLOCK
    if method not in (AccessLog.Method.PIN, AccessLog.Method.QR):
        fields.errors["method"] = "must be pin or qr"
    if action not in AccessLog.Action.values:
        fields.errors["action"] = "must be unlock or lock"
    fields.check("invalid_access_request")
    attempt = access.Attempt(
        method=method,
        code=code,
        action=action,
        ip=ip,
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
        source="http",
    )
    decision = access.check(lock, attempt, at, address_is_blocked=lock.address_blocked)
    return JsonResponse(decision.as_json())

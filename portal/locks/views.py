"""Lock pages: the list, a lock's page with its live state, and the actions on a lock.

Every member reads; operators lock, unlock and sync the time; admins add locks, change settings,
update firmware, rotate the device key and manage codes (portal/locks/code_views.py). A lock of
another tenant is not in this schema, so it is a 404 like any missing one. Secrets (a new device
key, a new PIN) are shown once in the answer to the POST that made them and stored nowhere in clear.
"""

from django.contrib import messages
from django.db.models import Max
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from portal.audit.log import record
from portal.core import live
from portal.core.editing import delete_view, form_view
from portal.core.lists import Column, list_response
from portal.locks.filters import LockFilter
from portal.locks.forms import LockForm, OtaForm, SettingsForm
from portal.locks.models import Lock, LockCommand
from portal.tenancy.access import role_required
from portal.tenancy.models import Role
from telemetry.models import online_window

LOCK_COLUMNS = [
    Column("lock_id", "device.device_id"),
    Column("name", "name"),
    Column("site", "site.name"),
    Column("location", "location"),
    Column("status", "status"),
    Column("battery", "battery"),
    Column("online", lambda lock: lock.online),
    Column("last_seen", "device.last_seen"),
    Column("last_access", "last_access"),
    Column("firmware", "device.firmware"),
]
RECENT_COMMANDS = 10
RECENT_ACCESS = 10
LIVE_EVERY = 0.5  # seconds: a status message reaches the page in under a second (prompt lane + this)


def get_lock(pk: int) -> Lock:
    """A lock of the current tenant; another tenant's is not in this schema, so it is a 404."""
    return get_object_or_404(Lock.objects.select_related("device", "site"), pk=pk)


def lock_list(request):
    queryset = (
        Lock.objects.select_related("device", "site")
        .annotate(last_access=Max("access_logs__at"))
        .order_by("name", "id")
    )
    filterset = LockFilter(request.GET, queryset=queryset)
    filtered = any(value for key, value in request.GET.items() if key not in ("sort", "page"))
    context = {"filtered": filtered, "online_seconds": online_window().total_seconds()}
    return list_response(request, filterset, "locks/list.html", LOCK_COLUMNS, "locks", context)


def live_state(lock: Lock) -> dict:
    """What the live parts of the lock page show (state, commands, recent access), and the cursor
    they poll from (three queries, however long the lock's history)."""
    commands = list(lock.commands.order_by("-created_at", "-id")[:RECENT_COMMANDS])
    recent_access = list(lock.access_logs.all()[:RECENT_ACCESS])
    moments = [
        lock.updated_at,
        lock.device.last_seen,
        *(c.updated_at for c in commands),
        *(e.at for e in recent_access),
    ]
    return {
        "lock": lock,
        "commands": commands,
        "recent_access": recent_access,
        "live_cursor": live.epoch(max(m for m in moments if m)),
        "live_every": LIVE_EVERY,
        "online_seconds": online_window().total_seconds(),
    }


def can(request, role: str) -> bool:
    membership = getattr(request, "membership", None)
    return membership is not None and membership.allows(role)


def lock_detail(request, pk):
    lock = get_lock(pk)
    context = live_state(lock) | {
        "can_operate": can(request, Role.OPERATOR),
        "can_admin": can(request, Role.ADMIN),
        "settings_form": SettingsForm(instance=lock),
        "ota_form": OtaForm(),
        "pins": lock.pins.filter(active=True).select_related("guest")[:50],
        "qr_codes": lock.qr_codes.filter(active=True)[:50],
        "guests": lock.guests.select_related("pin", "qr")[:50],
    }
    return render(request, "locks/detail.html", context)


@require_GET
def lock_live(request, pk):
    """The live part of the lock page: 204 while nothing changed since the cursor."""
    try:
        since = live.since(request)
    except live.BadCursor as error:
        return live.bad_cursor(error)
    lock = get_lock(pk)
    state = live_state(lock)
    if since is not None and state["live_cursor"] and float(state["live_cursor"]) <= since.timestamp():
        return live.nothing_new()
    # the recent access list rides along out of band (hx-swap-oob): it sits elsewhere on the page
    state |= {"can_operate": can(request, Role.OPERATOR), "oob": True}
    return live.render(request, "locks/detail.html#live", state)


@role_required(Role.OPERATOR)
def lock_command(request, pk, kind):
    """Lock or unlock: GET asks for confirmation (inline with htmx), POST sends the command."""
    lock = get_lock(pk)
    if kind not in (LockCommand.Kind.LOCK, LockCommand.Kind.UNLOCK):
        return redirect("locks-lock-detail", pk=lock.pk)
    if request.method != "POST":
        template = "locks/confirm.html#confirm" if request.htmx else "locks/confirm.html"
        return render(request, template, {"lock": lock, "kind": kind})
    command = LockCommand.issue(lock, kind, request=request)
    record(request, f"lock.{kind}", lock, {"request_id": str(command.request_id)})
    if request.htmx:
        return render(request, "locks/confirm.html#sent", live_state(lock) | {"can_operate": True})
    messages.info(request, f"{command.get_kind_display()} command sent to {lock.name}.")
    return redirect("locks-lock-detail", pk=lock.pk)


@require_POST
@role_required(Role.OPERATOR)
def lock_time_sync(request, pk):
    lock = get_lock(pk)
    command = LockCommand.issue(lock, LockCommand.Kind.TIME_SYNC, {"time": timezone.now().isoformat()}, request=request)
    record(request, "lock.time_sync", lock, {"request_id": str(command.request_id)})
    messages.info(request, f"Time sync sent to {lock.name}.")
    return redirect("locks-lock-detail", pk=lock.pk)


@require_POST
@role_required(Role.ADMIN)
def lock_settings(request, pk):
    """Save the lock's settings and send them to the lock (a settings sync command)."""
    lock = get_lock(pk)
    form = SettingsForm(request.POST, instance=lock)
    if not form.is_valid():
        context = live_state(lock) | {"settings_form": form, "can_admin": True, "can_operate": True}
        return render(request, "locks/settings.html", context, status=400)
    changes = {name: [form.initial.get(name), form.cleaned_data[name]] for name in form.changed_data}
    lock = form.save()
    command = LockCommand.issue(lock, LockCommand.Kind.SETTINGS, {"settings": lock.settings_payload()}, request=request)
    record(request, "lock.settings", lock, changes | {"request_id": str(command.request_id)})
    messages.success(request, f"Settings of {lock.name} saved and sent to the lock.")
    return redirect("locks-lock-detail", pk=lock.pk)


@require_POST
@role_required(Role.ADMIN)
def lock_ota(request, pk):
    lock = get_lock(pk)
    form = OtaForm(request.POST)
    if not form.is_valid():
        context = live_state(lock) | {"ota_form": form, "can_admin": True}
        return render(request, "locks/settings.html", context, status=400)
    params = {"firmware_url": form.cleaned_data["firmware_url"], "version": form.cleaned_data["version"]}
    command = LockCommand.issue(lock, LockCommand.Kind.OTA, params, request=request)
    Lock.objects.filter(pk=lock.pk).update(ota_progress=0, ota_state="requested")
    record(request, "lock.ota", lock, params | {"request_id": str(command.request_id)})
    messages.info(request, f"Firmware update sent to {lock.name}; its progress shows on this page.")
    return redirect("locks-lock-detail", pk=lock.pk)


@role_required(Role.ADMIN)
def lock_create(request):
    form = LockForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        lock = form.save()
        key = lock.device.issue_token()
        lock.device.save(
            update_fields=["token_hash", "token_created_at", "token_last_used_at", "provisioning_reset_at"]
        )
        record(request, "lock.create", lock, {"lock_id": lock.lock_id})
        return secret_page(request, lock, "device key", key)
    return render(request, "locks/form.html", {"form": form}, status=400 if form.errors else 200)


@role_required(Role.ADMIN)
def lock_edit(request, pk):
    lock = get_lock(pk)
    return form_view(
        request,
        LockForm,
        template="locks/form.html",
        action="lock.update",
        instance=lock,
        success_url=lambda obj: obj.get_absolute_url(),
    )


@role_required(Role.ADMIN)
def lock_delete(request, pk):
    lock = get_lock(pk)
    return delete_view(request, lock, action="lock.delete", success_url="/locks/", cancel_url=f"/locks/{lock.pk}/")


@require_POST
@role_required(Role.ADMIN)
def lock_rotate_key(request, pk):
    """A new device key; the old one stops working at once."""
    lock = get_lock(pk)
    key = lock.device.issue_token()
    lock.device.save(update_fields=["token_hash", "token_created_at", "token_last_used_at", "provisioning_reset_at"])
    record(request, "lock.rotate_key", lock)
    return secret_page(request, lock, "device key", key)


def secret_page(request, lock: Lock, what: str, secret: str, extra: dict | None = None):
    """The one time a secret is shown: in this answer, never cached, stored nowhere in clear."""
    response = render(request, "locks/secret.html", {"lock": lock, "what": what, "secret": secret, **(extra or {})})
    add_never_cache_headers(response)
    return response

"""Create, edit and delete pages for people: one form view and one delete view, both audited."""

from django.contrib import messages
from django.db.models import ProtectedError
from django.shortcuts import redirect, render

from portal.audit.log import record


def jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(getattr(value, "pk", value))


def form_view(
    request, form_class, *, template: str, action: str, success_url, instance=None, initial=None, context=None
):
    """GET shows the form; a valid POST saves, writes `<action>` to the audit log with the
    changed fields, and redirects to success_url (a callable of the saved object, or a URL)."""
    form = form_class(request.POST or None, instance=instance, initial=initial)
    if request.method == "POST" and form.is_valid():
        initial = {name: jsonable(form.initial.get(name)) for name in form.changed_data}
        obj = form.save()
        changes = {name: [initial[name], jsonable(form.cleaned_data.get(name))] for name in form.changed_data}
        record(request, action, obj, changes)
        messages.success(request, f"{obj._meta.verbose_name.capitalize()} “{obj}” saved.")
        return redirect(success_url(obj) if callable(success_url) else success_url)
    status = 400 if form.errors else 200
    return render(request, template, {"form": form, "object": instance, **(context or {})}, status=status)


def delete_view(request, obj, *, action: str, success_url: str, cancel_url: str, blocked: str = ""):
    """GET asks for confirmation; POST deletes and audits. A protected object gets `blocked` as
    the explanation instead of a crash."""
    if request.method == "POST":
        label = f"{obj._meta.verbose_name.capitalize()} “{obj}”"
        try:
            pk = obj.pk
            obj.delete()
        except ProtectedError:
            messages.error(request, blocked or f"{label} is still in use and cannot be deleted.")
            return redirect(cancel_url)
        obj.pk = pk
        record(request, action, obj)
        messages.success(request, f"{label} deleted.")
        return redirect(success_url)
    return render(request, "includes/confirm_delete.html", {"object": obj, "cancel_url": cancel_url})

import pytest
from django_tenants.utils import schema_context

from portal.audit.models import AuditLog


@pytest.fixture(autouse=True)
def empty_ops_log(db):
    """Each console test reads only the ops log rows it wrote: the browser tests' server commits
    its own (a staff member opening the console in Chromium), which would otherwise show up here.
    Deleted inside the test's transaction, so they come back when it rolls back."""
    with schema_context("public"):
        AuditLog.objects.all().delete()

"""Huey tasks of the device and integration API."""

from portal.tenancy.tasks import tenant_task


@tenant_task()
def process_bulk_job(job_id: int) -> None:
    """Process a large bulk upload stored by the request (claim check); see portal.api.bulk.

    Safe to run twice: the job is claimed by a conditional update, and a second run finds it
    no longer queued. A worker killed mid-job leaves it "running" with the progress committed
    so far; the client sends the file again, and deduplication writes only what is missing.
    """
    from portal.api.bulk import run_job  # bulk imports this module to enqueue

    run_job(job_id)

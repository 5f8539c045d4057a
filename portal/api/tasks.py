"""Huey tasks of the device and integration API."""

from huey import crontab

from portal.tenancy.tasks import tenant_periodic_task, tenant_task


@tenant_task()
def process_bulk_job(job_id: int) -> None:
    """Process a large bulk upload stored by the request (claim check); see portal.api.bulk.

    Safe to run twice: the job is claimed by a conditional update, and a second run finds it
    no longer queued. A worker killed mid-job leaves it "running" with the progress committed
    so far; resume_stalled_bulk_jobs queues it again, and it goes on from that progress.
    """
    from portal.api.bulk import run_job  # bulk imports this module to enqueue

    run_job(job_id)


@tenant_periodic_task(crontab(minute="*/5"))
def resume_stalled_bulk_jobs() -> list[int]:
    """Every 5 minutes: bulk jobs whose worker died go back in the queue (portal.api.bulk)."""
    from portal.api.bulk import resume_stalled_jobs

    return resume_stalled_jobs()

"""A bulk job whose worker dies stays "running" no longer: the periodic sweep finds it by its
stale heartbeat and queues it again, and it goes on from its committed progress."""

from datetime import timedelta

import pytest
from api.bulk_helpers import equipment, gz, make_key, post
from django.utils import timezone
from django_tenants.utils import schema_context

from portal.api import bulk
from portal.api.models import BulkJob
from portal.api.tasks import resume_stalled_bulk_jobs
from telemetry.models import DeadLetter, Reading


class WorkerKilled(BaseException):
    """What SIGKILL leaves: no except clause runs, nothing after the last commit happens."""


def stall(settings, tmp_path, monkeypatch, acme_client, time_machine, items, key=None) -> BulkJob:
    """Post `items` as a job whose worker dies after its second batch: running, progress committed, file kept."""
    settings.MEDIA_ROOT = str(tmp_path)
    settings.BULK_INLINE_BYTES = 100
    time_machine.move_to(timezone.now(), tick=False)
    monkeypatch.setattr(bulk, "BATCH", 10)
    body = gz(items)
    batches = []
    original = bulk.Loader.flush

    def dying_flush(self):
        original(self)
        batches.append(1)
        if len(batches) == 2:
            raise WorkerKilled

    kept_discard = bulk.discard
    with monkeypatch.context() as dying:
        dying.setattr(bulk.Loader, "flush", dying_flush)
        dying.setattr(bulk, "discard", lambda name: None)  # a killed worker deletes nothing
        with pytest.raises(WorkerKilled):
            post(acme_client, body, key or make_key("acme"))
    assert bulk.discard is kept_discard
    with schema_context("acme"):
        job = BulkJob.objects.get()
    assert job.status == "running" and 0 < job.equipment_done < len(items) and job.written > 0
    return job


@pytest.fixture
def stalled_job(db, settings, tmp_path, monkeypatch, acme_client, time_machine):
    items = [equipment(f"eq-{n}", readings=10) for n in range(5)]
    items.insert(2, {"equip_nome": "no uuid", "sensor": []})  # one dead letter, committed before the death
    return stall(settings, tmp_path, monkeypatch, acme_client, time_machine, items)


def readings():
    with schema_context("acme"):
        return Reading.objects.count()


def test_a_fresh_running_job_is_left_alone(stalled_job, time_machine):
    time_machine.shift(timedelta(minutes=9))
    assert resume_stalled_bulk_jobs.call_local("acme") == []
    with schema_context("acme"):
        assert BulkJob.objects.get().status == "running"


def test_a_stalled_job_resumes_from_its_progress_and_finishes(stalled_job, time_machine):
    written_before = stalled_job.written
    time_machine.shift(timedelta(minutes=11))
    assert resume_stalled_bulk_jobs.call_local("acme") == [stalled_job.pk]  # queued; immediate in tests
    with schema_context("acme"):
        job = BulkJob.objects.get()
        letters = DeadLetter.objects.filter(reason="missing_equip_uuid").count()
    assert (job.status, job.resumes, job.error) == ("done", 1, "")
    assert readings() == 50 == job.written  # every reading stored once, counted once
    assert job.written > written_before and job.equipment_done == 6
    assert letters == 1  # the committed part is not read again
    assert resume_stalled_bulk_jobs.call_local("acme") == []  # done is done


def test_a_job_that_keeps_stalling_is_failed_with_a_reason(stalled_job, time_machine):
    with schema_context("acme"):
        BulkJob.objects.update(resumes=bulk.MAX_RESUMES)
    time_machine.shift(timedelta(minutes=11))
    assert resume_stalled_bulk_jobs.call_local("acme") == []
    with schema_context("acme"):
        job = BulkJob.objects.get()
    assert job.status == "failed" and job.error.startswith("stalled:")


def test_a_resumed_job_writes_letters_only_as_its_uploader_may(
    db, settings, tmp_path, monkeypatch, acme_client, time_machine
):
    """The uploading key's dead-letter allowance holds in the job and in its resumed run alike:
    here the key may write 3 an hour, and the bad items lie past the point its worker died."""
    from telemetry.deadletters import allowance

    settings.FIELDWATCH_DEAD_LETTER_RATE = "3/3600"
    items = [equipment(f"eq-{n}", readings=10) for n in range(5)] + [{"equip_nome": "no uuid", "sensor": []}] * 6
    job = stall(settings, tmp_path, monkeypatch, acme_client, time_machine, items)
    assert job.sender.startswith("key:")
    time_machine.shift(timedelta(minutes=11))
    assert resume_stalled_bulk_jobs.call_local("acme") == [job.pk]
    with schema_context("acme"):
        job = BulkJob.objects.get()
        kept = DeadLetter.objects.filter(reason="missing_equip_uuid").count()
        summary = DeadLetter.objects.get(reason="capped")
        spent = allowance(job.sender, 1)
    assert (job.status, job.rejected) == ("done", 6)
    assert kept == 3 and "3 more rejected" in summary.detail  # the other 3, counted in one summary letter
    assert spent == 0  # the job spent the key's allowance, as an upload answered in the request would

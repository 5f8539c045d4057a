"""Bulk telemetry upload (seed 002): inline and claim check, guards, bad items, auth, rate limit."""

import gzip
import json

import pytest
from api.bulk_helpers import (
    BULK_URL,
    equipment,
    gz,
    make_key,
    post,
    stamp,
    whitespace_bomb,
)
from django.core.files.storage import default_storage
from django_tenants.utils import schema_context
from helpers import count_in, unchanged

from portal.api import bulk
from portal.api.endpoint import ApiError
from portal.api.models import ApiKey, BulkJob
from portal.facilities.models import Asset, DeviceBinding
from telemetry.models import DeadLetter, Device, Reading, Sensor, TelemetrySettings

TWO_BY_TWO = [
    equipment("eq-1", "Freezer 1", sensors=(("s-1a", "temperatura"), ("s-1b", "umidade"))),
    equipment("eq-2", "Freezer 2", sensors=(("s-2a", "temperatura"), ("s-2b", "corrente"))),
]


@pytest.fixture
def key(db):
    return make_key("acme")


@pytest.fixture
def storage(settings, tmp_path):
    """Uploads stored under a folder of this test; the folder's files, listed."""
    settings.MEDIA_ROOT = str(tmp_path)
    return lambda: sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())


def readings_in_acme() -> int:
    return count_in("acme", Reading)


def job_status(client, key, response):
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status_url"] == f"/api/v1/telemetry/jobs/{body['job_id']}"
    status = client.get(body["status_url"], HTTP_X_API_KEY=key)
    assert status.status_code == 200
    return status.json()


# --- inline ---------------------------------------------------------------------------------


def test_a_small_gzip_upload_is_stored_in_the_request(acme_client, key):
    response = post(acme_client, gz(TWO_BY_TWO), key)
    assert response.status_code == 200, response.content
    assert response.json() == {"written": 12, "duplicates": 0, "rejected": 0, "equipment": 2, "reasons": {}}
    with schema_context("acme"):
        asset = Asset.objects.get(tag="eq-1")
        assert (asset.name, asset.site.name) == ("Freezer 1", "Bulk uploads")
        device = Device.objects.get(device_id="eq-1")
        assert device.name == "Freezer 1" and device.binding.asset == asset
        assert {(s.key, s.type) for s in asset.sensors()} == {("s-1a", "temperatura"), ("s-1b", "umidade")}
        assert Reading.objects.count() == 12


@pytest.mark.parametrize("path", ["/api/v1/telemetria/bulk", "/api/telemetry/bulk"])
def test_the_aliases_take_the_same_body(acme_client, key, path):
    response = post(acme_client, gz(TWO_BY_TWO), key, path=path)
    assert response.status_code == 200 and response.json()["written"] == 12


def test_a_plain_json_body_is_stored_too(acme_client, key):
    response = post(acme_client, json.dumps(TWO_BY_TWO).encode(), key, compressed=False)
    assert response.json()["written"] == 12


def test_gzip_is_recognised_without_content_encoding(acme_client, key):
    response = post(acme_client, gz(TWO_BY_TWO), key, compressed=False)
    assert response.json()["written"] == 12


def test_the_same_upload_twice_counts_duplicates(acme_client, key):
    post(acme_client, gz(TWO_BY_TWO), key)
    again = post(acme_client, gz(TWO_BY_TWO), key).json()
    assert (again["written"], again["duplicates"]) == (0, 12)
    assert readings_in_acme() == 12


def test_bad_items_are_dead_lettered_and_good_ones_written(acme_client, key):
    good = equipment("eq-good", sensors=(("s-g", "temperatura"),), readings=2)
    mixed = equipment("eq-mixed", sensors=(("s-m", "temperatura"),), readings=1)
    mixed["sensor"] += [
        {"sensor_uuid": "s-m", "sensor_tipo": "temperatura", "valor": "hot", "timestamp": stamp(5)},
        {"sensor_uuid": "s-m", "sensor_tipo": "temperatura", "valor": {"nested": 1}, "timestamp": stamp(6)},
        {"sensor_tipo": "temperatura", "valor": 1.0, "timestamp": stamp(7)},
        {"sensor_uuid": "s-m", "valor": 1.0, "timestamp": "yesterday-ish"},
        "not a reading",
    ]
    body = [
        good,
        {"equip_nome": "no uuid", "sensor": [{"sensor_uuid": "s-x", "valor": 1.0, "timestamp": stamp(1)}]},
        {"equip_uuid": "eq-flat", "sensor": {"sensor_uuid": "s-y"}},
        {"equip_uuid": "eq-none", "sensor": "list"},
        {"equip_uuid": "eq-nosensor"},
        42,
        mixed,
    ]
    result = post(acme_client, gz(body), key).json()
    assert result["written"] == 3
    assert result["rejected"] == 10
    assert result["equipment"] == 2
    assert result["reasons"] == {
        "invalid_value": 2,
        "missing_sensor_uuid": 1,
        "invalid_timestamp": 1,
        "reading_not_an_object": 1,
        "missing_equip_uuid": 1,
        "sensor_not_a_list": 3,
        "item_not_an_object": 1,
    }
    with schema_context("acme"):
        letters = DeadLetter.objects.all()
        assert letters.count() == 10 and {letter.source for letter in letters} == {"bulk"}
        assert {letter.topic for letter in letters} == {BULK_URL}
        flat = letters.get(device_ref="eq-flat")
        assert flat.reason == "sensor_not_a_list" and json.loads(flat.payload)["equip_uuid"] == "eq-flat"
        assert Reading.objects.count() == 3
        assert not Asset.objects.filter(tag__in=["eq-flat", "eq-none"]).exists()
        assert set(letters.filter(reason="sensor_not_a_list").values_list("device_ref", flat=True)) == {
            "eq-flat",
            "eq-none",
            "eq-nosensor",
        }


def test_text_postgresql_cannot_store_is_dead_lettered(acme_client, key):
    def one(uuid="eq-1", sensor="s-1", value=1.5, name="Freezer"):
        reading = {"sensor_uuid": sensor, "sensor_tipo": "t\x00emp", "valor": value, "timestamp": stamp(1)}
        return {"equip_uuid": uuid, "equip_nome": name, "sensor": [reading]}

    body = json.dumps(
        [one(uuid="eq\x00nul"), one(sensor="s\ud800"), one(value=True), one(uuid="eq-ok", name="Nul\x00name")]
    )
    assert "\\u0000" in body and "\\ud800" in body  # escaped in the JSON, as a client would send them
    response = post(acme_client, gz(body.encode()), key)
    assert response.status_code == 200, response.content
    result = response.json()
    assert (result["written"], result["rejected"]) == (2, 2)  # the parser turns a lone surrogate into "?"
    assert result["reasons"] == {"invalid_equip_uuid": 1, "invalid_value": 1}
    with schema_context("acme"):
        assert Asset.objects.get(tag="eq-ok").name == "Nulname"
        assert {s.key: s.type for s in Sensor.objects.all()} == {"s?": "temp", "s-1": "temp"}


def test_an_equip_uuid_after_the_sensor_list_still_counts(acme_client, key):
    item = equipment("eq-late", readings=2)
    late = {"sensor": item["sensor"], "equip_nome": "Late", "equip_uuid": "eq-late"}
    assert post(acme_client, gz([late]), key).json()["written"] == 2
    assert count_in("acme", Asset, tag="eq-late", name="Late") == 1


def test_an_asset_of_that_tag_gets_the_new_device(acme_client, key, in_acme):
    from portal.facilities.models import Site

    asset = Asset.objects.create(site=Site.objects.create(name="Plant 2"), tag="eq-1", name="Chiller by hand")
    post(acme_client, gz(TWO_BY_TWO[:1]), key)
    assert DeviceBinding.objects.get(device__device_id="eq-1").asset == asset
    assert Asset.objects.filter(tag="eq-1").count() == 1


def test_with_auto_create_off_unknown_sensors_are_dead_lettered(acme_client, key, in_acme):
    TelemetrySettings.objects.update_or_create(
        pk=TelemetrySettings.current().pk, defaults={"auto_create_sensors": False}
    )
    result = post(acme_client, gz(TWO_BY_TWO[:1]), key).json()
    assert (result["written"], result["rejected"], result["reasons"]) == (0, 6, {"unknown_sensor": 6})
    assert not Asset.objects.exists() and not Device.objects.exists()


def test_readings_go_in_batches(acme_client, key, monkeypatch):
    monkeypatch.setattr(bulk, "BATCH", 5)
    calls = []
    original = bulk.ingest
    monkeypatch.setattr(bulk, "ingest", lambda readings, **kw: calls.append(len(readings)) or original(readings, **kw))
    assert post(acme_client, gz(TWO_BY_TWO), key).json()["written"] == 12
    assert calls == [5, 5, 2]


# --- the claim check ------------------------------------------------------------------------


def test_a_large_upload_becomes_a_job_whose_status_tells_the_counts(acme_client, key, settings, storage, monkeypatch):
    settings.BULK_INLINE_BYTES = 100
    monkeypatch.setattr(bulk, "BATCH", 10)
    body = gz([equipment(f"eq-{n}", sensors=(("t", "temperatura"), ("h", "umidade")), readings=20) for n in range(3)])
    assert len(body) > 100
    status = job_status(acme_client, key, post(acme_client, body, key))
    assert status["status"] == "done"
    assert status["progress"] == {"equipment_done": 3, "written": 120, "duplicates": 0, "rejected": 0}
    assert status["error"] is None and status["size_bytes"] == len(body)
    assert status["started_at"] and status["finished_at"]
    assert readings_in_acme() == 120
    assert storage() == []  # the file is deleted once processed


def test_the_upload_is_streamed_to_storage_and_processed_by_the_task(acme_client, key, settings, storage, monkeypatch):
    settings.BULK_INLINE_BYTES = 100
    queued = []
    monkeypatch.setattr("portal.api.tasks.process_bulk_job", lambda schema, job_id: queued.append((schema, job_id)))
    body = gz([equipment("eq-9", readings=50)])
    response = post(acme_client, body, key)
    assert response.status_code == 202
    with schema_context("acme"):
        job = BulkJob.objects.get()
        assert queued == [("acme", job.pk)] and job.status == "queued" and job.gzip
        assert job.file_name.startswith("bulk/acme/") and storage() == [job.file_name]
        with default_storage.open(job.file_name, "rb") as stored:
            assert stored.read() == body
        bulk.run_job(job.pk)
        bulk.run_job(job.pk)  # a repeated task finds the job taken and does nothing
        job.refresh_from_db()
        assert (job.status, job.written, job.duplicates) == ("done", 50, 0)
    assert storage() == []


def test_a_body_over_the_limit_is_refused_before_it_is_read(acme_client, key, settings, storage):
    settings.BULK_MAX_BYTES = 2000
    response = post(acme_client, b"[" + b" " * 3000 + b"]", key, compressed=False)
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert storage() == []


def test_the_limit_holds_while_streaming_whatever_content_length_said(settings, storage, in_acme):
    class EndlessBody:
        def read(self, size):
            return b" " * size

    settings.BULK_MAX_BYTES = 300_000
    with pytest.raises(ApiError) as refused:
        bulk.store_upload(EndlessBody(), b"[", compressed=False, length=10)
    assert refused.value.status == 413
    assert storage() == [] and not BulkJob.objects.exists()


def test_a_job_with_bad_items_keeps_the_good_ones(acme_client, key, settings, storage):
    settings.BULK_INLINE_BYTES = 100
    body = gz([equipment("eq-1", readings=10), {"equip_nome": "no uuid", "sensor": []}, equipment("eq-2", readings=10)])
    status = job_status(acme_client, key, post(acme_client, body, key))
    assert status["status"] == "done"
    assert status["progress"] == {"equipment_done": 3, "written": 20, "duplicates": 0, "rejected": 1}
    assert (
        count_in("acme", DeadLetter, reason="missing_equip_uuid", topic=f"/api/v1/telemetry/jobs/{status['job_id']}")
        == 1
    )


# --- guards: bombs, truncated gzip, malformed JSON ------------------------------------------


def test_a_gzip_bomb_is_refused_inline_and_writes_nothing(acme_client, key):
    body = whitespace_bomb(gigabytes=0.0625)  # 64 MiB of JSON whitespace in ~65 kB
    response = post(acme_client, body, key)
    assert response.status_code == 413 and response.json()["error"]["code"] == "decompression_bomb"
    assert count_in("acme", DeadLetter) == 0 and readings_in_acme() == 0


def test_a_gigabyte_bomb_fails_its_job_early(acme_client, key, settings, storage):
    settings.BULK_INLINE_BYTES = 100_000
    body = whitespace_bomb(gigabytes=1)
    assert 500_000 < len(body) < 2_000_000
    status = job_status(acme_client, key, post(acme_client, body, key))
    assert status["status"] == "failed"
    assert status["error"]["code"] == "decompression_bomb"
    assert storage() == []


def test_a_bomb_found_midway_fails_the_job_and_reports_what_was_written(
    acme_client, key, settings, storage, monkeypatch
):
    settings.BULK_INLINE_BYTES = 100
    monkeypatch.setattr(bulk, "BATCH", 4)
    first = json.dumps(equipment("eq-1", readings=8))
    body = gzip.compress(b"[" + first.encode() + b",") + whitespace_bomb(0.25)[len(gzip.compress(b"[")) :]
    status = job_status(acme_client, key, post(acme_client, body, key))
    assert status["status"] == "failed" and status["error"]["code"] == "decompression_bomb"
    assert status["progress"]["written"] == 8 == readings_in_acme()


def test_a_ratio_above_the_limit_is_a_bomb_even_when_small(acme_client, key, settings):
    settings.BULK_MAX_RATIO = 5
    body = gz([equipment(f"eq-{n}", readings=2000, value=lambda i, s: 1.0) for n in range(5)])
    response = post(acme_client, body, key)
    assert response.status_code == 413 and response.json()["error"]["code"] == "decompression_bomb"


def test_a_truncated_gzip_is_refused_and_writes_nothing(acme_client, key):
    body = gz([equipment(f"eq-{n}", readings=50) for n in range(5)])
    response = post(acme_client, body[: len(body) // 2], key)
    assert response.status_code == 400 and response.json()["error"]["code"] == "truncated_gzip"
    assert readings_in_acme() == 0 and count_in("acme", Asset) == 0


def test_a_truncated_gzip_fails_its_job(acme_client, key, settings, storage):
    settings.BULK_INLINE_BYTES = 100
    body = gz([equipment(f"eq-{n}", readings=50) for n in range(5)])
    status = job_status(acme_client, key, post(acme_client, body[:-30], key))
    assert status["status"] == "failed" and status["error"]["code"] == "truncated_gzip"
    assert "cut short" in status["error"]["message"]


@pytest.mark.parametrize(
    "body, compressed, code",
    [
        (gz(b'[{"equip_uuid": "eq-1", "sensor": [}]'), True, "malformed_json"),
        (b'[{"equip_uuid": "eq-1", "sensor": [', False, "malformed_json"),
        (b"[] trailing", False, "malformed_json"),
        (gz(b"\xff\xfe not json"), True, "malformed_json"),
        (b'{"equip_uuid": "eq-1"}', False, "not_a_list"),
        (b"this is not gzip at all", True, "invalid_gzip"),
        (b"\x1f\x8b\x08\x00garbage-after-a-gzip-magic", False, "invalid_gzip"),
    ],
)
def test_unreadable_bodies_are_refused_cleanly(acme_client, key, body, compressed, code):
    response = post(acme_client, body, key, compressed=compressed)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert readings_in_acme() == 0


def test_malformed_json_after_good_items_writes_nothing_inline(acme_client, key):
    body = json.dumps([equipment("eq-1", readings=5)])[:-1] + ', {"equip_uuid": }]'
    response = post(acme_client, gz(body.encode()), key)
    assert response.status_code == 400
    assert readings_in_acme() == 0 and count_in("acme", Device) == 0


def test_an_empty_body_or_another_encoding_is_refused(acme_client, key):
    assert post(acme_client, b"", key, compressed=False).json()["error"]["code"] == "empty_body"
    response = post(acme_client, b"[]", key, compressed=False, HTTP_CONTENT_ENCODING="br")
    assert response.status_code == 415


def test_get_is_not_allowed(acme_client, key):
    assert acme_client.get(BULK_URL, HTTP_X_API_KEY=key).status_code == 405


# --- authentication, tenants, rate limit ----------------------------------------------------


def test_without_a_key_it_is_401(acme_client, db):
    response = post(acme_client, gz(TWO_BY_TWO), None)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


def test_a_revoked_key_is_401(acme_client, key):
    with schema_context("acme"):
        ApiKey.objects.get().revoke()
    response = post(acme_client, gz(TWO_BY_TWO), key)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_a_key_works_as_a_bearer_token_and_is_marked_used(acme_client, key):
    response = acme_client.post(
        BULK_URL, gz(TWO_BY_TWO), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert response.status_code == 200
    with schema_context("acme"):
        assert ApiKey.objects.get().last_used_at is not None


def test_an_acme_key_on_globex_is_401(globex_client, key):
    with unchanged("acme"), unchanged("globex"):
        assert post(globex_client, gz(TWO_BY_TWO), key).status_code == 401
    assert count_in("globex", Sensor) == 0


def test_a_garbage_bearer_token_is_401(acme_client, db):
    with unchanged():
        response = acme_client.post(
            BULK_URL, gz(TWO_BY_TWO), content_type="application/json", HTTP_AUTHORIZATION="Bearer not-a-token"
        )
    assert response.status_code == 401


def test_too_many_uploads_get_429_with_retry_after(acme_client, key, settings):
    settings.FIELDWATCH_KEY_RATE = "2/60"
    for _ in range(2):
        assert post(acme_client, gz([]), key).status_code == 200
    response = post(acme_client, gz([]), key)
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "rate_limited"


def test_a_job_of_another_tenant_or_none_is_404(acme_client, globex_client, key, db):
    with schema_context("acme"):
        job = BulkJob.objects.create(file_name="x", size_bytes=1)
    globex_key = make_key("globex")
    assert globex_client.get(f"/api/v1/telemetry/jobs/{job.pk}", HTTP_X_API_KEY=globex_key).status_code == 404
    assert acme_client.get(f"/api/v1/telemetry/jobs/{job.pk + 1}", HTTP_X_API_KEY=key).status_code == 404
    assert acme_client.get(f"/api/v1/telemetry/jobs/{job.pk}").status_code == 401
    assert acme_client.get(f"/api/v1/telemetry/jobs/{job.pk}", HTTP_X_API_KEY=key).json()["status"] == "queued"

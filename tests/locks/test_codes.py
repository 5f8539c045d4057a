"""PIN and QR codes: weak PINs refused, windows, weekly schedules (midnight, DST), uses under concurrency."""

from datetime import UTC, datetime, timedelta

import pytest
from lock_builders import in_acme_committed, make_lock, make_pin, own_copies, race

from portal.locks import access, codes
from portal.locks.models import AccessLog, Lock, PinCode, QrCode, in_weekly_windows

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "pin, weak",
    [
        ("1111", True),
        ("1234", True),
        ("9876", True),
        ("7890", True),
        ("1212", True),
        ("123123", True),
        ("2580", True),
        ("4829", False),
        ("482913", False),
        ("90210417", False),
    ],
)
def test_weak_pins_are_refused(pin, weak):
    assert (codes.weakness(pin) is not None) is weak


@pytest.mark.parametrize("pin", ["123", "123456789", "12a4", "１２３４", ""])
def test_malformed_pins_are_refused(pin):
    assert codes.format_problem(pin)


def test_generated_pins_are_never_weak_and_avoid_taken_ones():
    taken = {"482913"}
    for _ in range(200):
        pin = codes.generate(6, taken.__contains__)
        assert len(pin) == 6 and codes.weakness(pin) is None and pin not in taken


def test_the_pin_form_refuses_weak_and_duplicate_pins(as_acme, lock):
    client = as_acme("acme_admin")
    weak = client.post(f"/locks/{lock.pk}/pins/new/", {"label": "A", "kind": "permanent", "pin": "1234", "length": 6})
    assert weak.status_code == 400 and b"run of digits" in weak.content
    ok = client.post(f"/locks/{lock.pk}/pins/new/", {"label": "A", "kind": "permanent", "pin": "482913", "length": 6})
    assert ok.status_code == 200 and b"482913" in ok.content and "no-cache" in ok["Cache-Control"]
    again = client.post(
        f"/locks/{lock.pk}/pins/new/", {"label": "B", "kind": "permanent", "pin": "482913", "length": 6}
    )
    assert again.status_code == 400 and b"already has this PIN" in again.content


def test_a_pin_is_stored_as_digests_only_and_emailed_once(
    as_acme, lock, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = as_acme("acme_admin").post(
            f"/locks/{lock.pk}/pins/new/",
            {"label": "Cleaner", "email": "cleaner@example.com", "kind": "permanent", "length": 6},
        )
    clear = response.content.split(b'data-testid="secret-value">')[1].split(b"<")[0].decode()
    pin = PinCode.objects.get()
    assert clear not in str(PinCode.objects.values().get()) and pin.digest == codes.pin_digest(lock.pk, clear)
    assert len(mailoutbox) == 1 and clear in mailoutbox[0].body and mailoutbox[0].to == ["cleaner@example.com"]
    assert pin.sync_state == "setting" and pin.sync_command.kind == "code_sync"
    assert clear not in str(pin.sync_command.params)


def check(lock, pin, at, **attempt):
    return access.check(
        Lock.objects.select_related("site", "device").get(pk=lock.pk), access.Attempt("pin", pin, **attempt), at
    )


def test_a_temporary_pin_opens_only_inside_its_window(lock):
    start = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    make_pin(lock, valid_from=start, valid_until=start + timedelta(hours=2), kind="temporary")
    assert check(lock, "482913", start - timedelta(seconds=1)).reason == "not_yet_valid"
    assert check(lock, "482913", start + timedelta(hours=1)).allowed
    assert check(lock, "482913", start + timedelta(hours=2)).reason == "expired"


MONDAY_CLEANING = [{"day": 0, "start": "10:00", "end": "14:00"}]
LISBON = "Europe/Lisbon"


def lisbon_time(*args):
    from zoneinfo import ZoneInfo

    return datetime(*args, tzinfo=ZoneInfo(LISBON))


def test_a_weekly_pin_opens_on_mondays_ten_to_two_in_the_sites_zone(lock):
    make_pin(lock, kind="scheduled", schedule=MONDAY_CLEANING)
    # 2026-11-30 is a Monday; Lisbon is UTC+0 in winter
    assert check(lock, "482913", lisbon_time(2026, 11, 30, 10, 0)).allowed
    assert check(lock, "482913", lisbon_time(2026, 11, 30, 13, 59)).allowed
    assert check(lock, "482913", lisbon_time(2026, 11, 30, 14, 0)).reason == "outside_schedule"
    assert check(lock, "482913", lisbon_time(2026, 12, 1, 11, 0)).reason == "outside_schedule"  # a Tuesday


def test_the_schedule_follows_the_wall_clock_across_dst(lock):
    make_pin(lock, kind="scheduled", schedule=MONDAY_CLEANING)
    # summer: Lisbon is UTC+1, so Monday 10:00 local is 09:00 UTC
    assert check(lock, "482913", datetime(2026, 6, 1, 9, 0, tzinfo=UTC)).allowed
    assert check(lock, "482913", datetime(2026, 6, 1, 8, 59, tzinfo=UTC)).reason == "outside_schedule"
    # winter: Monday 10:00 local is 10:00 UTC
    assert check(lock, "482913", datetime(2026, 11, 30, 9, 30, tzinfo=UTC)).reason == "outside_schedule"


def test_a_window_across_midnight_runs_into_the_next_day():
    night = [{"day": 4, "start": "22:00", "end": "02:00"}]  # Friday night
    assert in_weekly_windows(night, datetime(2026, 12, 4, 23, 30))  # Friday
    assert in_weekly_windows(night, datetime(2026, 12, 5, 1, 59))  # Saturday small hours
    assert not in_weekly_windows(night, datetime(2026, 12, 5, 2, 0))
    assert not in_weekly_windows(night, datetime(2026, 12, 4, 1, 0))  # Friday small hours belong to Thursday
    sunday = [{"day": 6, "start": "23:00", "end": "01:00"}]
    assert in_weekly_windows(sunday, datetime(2026, 12, 7, 0, 30))  # wraps to Monday


def test_a_window_across_midnight_on_the_night_clocks_go_back(lock):
    # Lisbon leaves summer time on 2026-10-25 at 02:00 local (Sunday): 01:00–02:00 happens twice
    make_pin(lock, kind="scheduled", schedule=[{"day": 5, "start": "23:00", "end": "01:30"}])  # Saturday night
    assert check(lock, "482913", datetime(2026, 10, 24, 23, 30, tzinfo=UTC)).allowed  # 00:30 local, summer
    assert check(lock, "482913", datetime(2026, 10, 25, 0, 20, tzinfo=UTC)).allowed  # 01:20 local (first pass)
    assert check(lock, "482913", datetime(2026, 10, 25, 1, 20, tzinfo=UTC)).allowed  # 01:20 local again, winter
    assert check(lock, "482913", datetime(2026, 10, 25, 1, 40, tzinfo=UTC)).reason == "outside_schedule"


def test_n_uses_and_one_time_pins_stop_after_their_uses(lock):
    make_pin(lock, kind="limited", max_uses=2)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert [check(lock, "482913", now).reason for _ in range(3)] == ["granted", "granted", "used_up"]
    assert PinCode.objects.get().uses == 2


def test_of_concurrent_uses_of_a_one_time_pin_exactly_one_wins(race_lock):
    in_acme_committed(lambda: make_pin(race_lock, kind="one_time", max_uses=1))
    fresh = own_copies(race_lock, 12)  # each check's own lock row, as each request loads it
    outcomes = race("acme", lambda: access.check(next(fresh), access.Attempt("pin", "482913")).reason, 12)
    assert sorted(outcomes) == ["granted"] + ["used_up"] * 11
    assert in_acme_committed(lambda: AccessLog.objects.filter(lock_id=race_lock.pk, success=True).count()) == 1
    losers = in_acme_committed(lambda: AccessLog.objects.filter(lock_id=race_lock.pk, reason="used_up").count())
    assert losers == 11  # each logged by the statement that lost the use


def test_of_concurrent_scans_of_a_single_use_qr_code_exactly_one_wins(race_lock):
    qr = in_acme_committed(lambda: QrCode.objects.create(lock=race_lock, label="Courier", max_uses=1))
    fresh = own_copies(race_lock, 12)
    outcomes = race("acme", lambda: access.check(next(fresh), access.Attempt("qr", str(qr.code))).reason, 12)
    assert sorted(outcomes) == ["granted"] + ["used_up"] * 11


def test_a_pin_of_another_lock_does_not_open_this_one(lock):
    other = make_lock("side-door", "Side door")
    make_pin(other)
    assert check(lock, "482913", datetime(2026, 6, 1, tzinfo=UTC)).reason == "unknown_code"


def test_qr_codes_render_as_svg(as_acme, lock):
    qr = QrCode.objects.create(lock=lock, label="Courier", max_uses=1, valid_until=datetime(2099, 1, 1, tzinfo=UTC))
    page = as_acme("acme_admin").get(f"/locks/{lock.pk}/qr/{qr.pk}/")
    assert page.status_code == 200 and b"<svg" in page.content
    svg = as_acme("acme_admin").get(f"/locks/{lock.pk}/qr/{qr.pk}/svg/")
    assert svg["Content-Type"] == "image/svg+xml" and svg.content.startswith(b"<svg")
    assert as_acme("acme_viewer").get(f"/locks/{lock.pk}/qr/{qr.pk}/").status_code == 403


def test_a_guest_gets_a_pin_for_the_visit_by_email_and_revoking_stops_it(
    as_acme, lock, mailoutbox, django_capture_on_commit_callbacks
):
    client = as_acme("acme_admin")
    data = {
        "name": "Dana",
        "email": "dana@example.com",
        "method": "pin",
        "valid_from": "2026-01-01T10:00",
        "valid_until": "2099-01-01T10:00",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/locks/{lock.pk}/guests/new/", data)
    assert response.status_code == 200
    clear = response.content.split(b'data-testid="secret-value">')[1].split(b"<")[0].decode()
    assert len(mailoutbox) == 1 and clear in mailoutbox[0].body
    guest = lock.guests.get()
    assert guest.sent_at is not None and guest.pin.valid_until == guest.valid_until
    assert check(lock, clear, datetime(2026, 6, 1, tzinfo=UTC)).allowed
    assert client.post(f"/locks/{lock.pk}/guests/{guest.pk}/revoke/").status_code == 302
    assert check(lock, clear, datetime(2026, 6, 1, tzinfo=UTC)).reason == "unknown_code"  # no longer a live code
    guest.pin.refresh_from_db()
    assert guest.pin.sync_state == "removing" and guest.pin.revoked_at is not None


def test_a_guest_with_a_qr_code_gets_it_attached(as_acme, lock, mailoutbox, django_capture_on_commit_callbacks):
    data = {
        "name": "Eve",
        "email": "eve@example.com",
        "method": "qr",
        "valid_from": "2026-01-01T10:00",
        "valid_until": "2099-01-01T10:00",
    }
    with django_capture_on_commit_callbacks(execute=True):
        assert as_acme("acme_admin").post(f"/locks/{lock.pk}/guests/new/", data).status_code == 302
    assert mailoutbox[0].attachments[0][2] == "image/svg+xml"

"""Usage rollups (portal.outlets.usage): attributed by event time, idempotent and incremental,
counter resets, buckets in the tenant's zone; statistics from them equal a direct computation."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django_tenants.utils import schema_context
from outlets.usage_builders import bound, counter_device, event, machine, status

from portal.outlets import stats
from portal.outlets.models import MachineDevice, UsageDaily, UsageHourly, UsageMonthly
from portal.outlets.usage import roll_up_usage
from portal.tenancy.models import Tenant

LISBON = ZoneInfo("Europe/Lisbon")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def zone(db):
    """acme in Lisbon (DST: 2026-03-29 has 23 hours, 2026-10-25 has 25)."""
    Tenant.objects.filter(schema_name="acme").update(time_zone="Europe/Lisbon")
    with schema_context("acme"):
        yield LISBON


def rows(model) -> list[tuple]:
    return sorted(
        model.objects.values_list("device_id", "machine_id", "treatment", "bucket", "events", "counter_delta")
    )


def all_rollups() -> list:
    return [rows(model) for model in (UsageHourly, UsageDaily, UsageMonthly)]


def query(**options):
    options.setdefault("zone", LISBON)
    options.setdefault("now", NOW)
    return stats.build_query(**options)


def same(query_):
    """compute() (rollups + tail) and direct() (raw only) answer the same."""
    a, b = stats.compute(query_), stats.direct(query_)
    assert a.current.buckets == b.current.buckets
    assert a.current.values == b.current.values and a.current.totals == b.current.totals
    assert a.current.measured == b.current.measured  # events and counter increase, each bucket
    if query_.compare:
        assert a.previous.values == b.previous.values and a.deltas == b.deltas
    return a


def test_events_count_for_the_machine_bound_at_their_time(zone):
    a, device = bound("Riverside", "A", at=datetime(2026, 11, 1, tzinfo=UTC))
    b = machine("Harbour", "B")
    event(device, datetime(2026, 11, 2, 10, tzinfo=UTC))
    event(device, datetime(2026, 11, 2, 11, tzinfo=UTC))
    MachineDevice.bind(b, device, at=datetime(2026, 11, 3, tzinfo=UTC))
    event(device, datetime(2026, 11, 4, 9, tzinfo=UTC))
    roll_up_usage()
    by_machine = {}
    for row in UsageDaily.objects.all():
        by_machine[row.machine_id] = by_machine.get(row.machine_id, 0) + row.events
    assert by_machine == {a.pk: 2, b.pk: 1}
    # a late event of Nov 2 arriving after the move still counts for A
    event(device, datetime(2026, 11, 2, 12, tzinfo=UTC))
    roll_up_usage()
    assert sum(r.events for r in UsageDaily.objects.filter(machine=a)) == 3
    assert (
        same(
            query(
                granularity="day", start=datetime(2026, 11, 1).date(), end=datetime(2026, 11, 5).date(), machine_id=a.pk
            )
        ).current.totals["TOTAL"]
        == 3
    )


def test_a_devices_first_binding_takes_what_it_counted_before(zone):
    device = counter_device()
    event(device, datetime(2026, 10, 1, 8, tzinfo=UTC))
    roll_up_usage()
    assert UsageHourly.objects.get().machine_id is None
    target = machine("Riverside", "A")
    MachineDevice.bind(target, device)
    roll_up_usage()
    assert UsageHourly.objects.get().machine_id == target.pk


def test_a_rerun_changes_nothing_and_status_events_count_nothing(zone):
    _, device = bound("Riverside", "A", at=datetime(2026, 1, 1, tzinfo=UTC))
    for hour in range(30):
        event(device, datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=hour * 7), counter=hour + 1)
    status(device, datetime(2026, 11, 1, 3, tzinfo=UTC))
    assert roll_up_usage() > 0
    first = all_rollups()
    assert sum(row[4] for row in first[0]) == 30
    roll_up_usage()  # nothing new arrived (it looks again at the last RECEIVED_MARGIN only)
    assert all_rollups() == first


def test_counter_increases_span_buckets_and_resets(zone):
    _, device = bound("Riverside", "A", at=datetime(2026, 1, 1, tzinfo=UTC))
    day = datetime(2026, 11, 10, tzinfo=UTC)
    for hour, value in [(1, 100), (2, 103), (3, 110), (4, 2), (5, 5)]:  # reset to 0 after 110
        event(device, day + timedelta(hours=hour), counter=value)
    roll_up_usage()
    deltas = [row.counter_delta for row in UsageHourly.objects.order_by("bucket")]
    assert deltas == [0, 3, 7, 2, 3]  # the first has no earlier counter; a reset counts from 0
    # a late event between 103 and 110 changes its own hour and the next event's increase
    event(device, day + timedelta(hours=2, minutes=30), counter=105)
    roll_up_usage()
    deltas = [row.counter_delta for row in UsageHourly.objects.order_by("bucket")]
    assert deltas == [0, 5, 5, 2, 3]
    assert UsageDaily.objects.get().counter_delta == 15


def test_days_follow_the_tenants_zone_across_dst(zone):
    _, device = bound("Riverside", "A", at=datetime(2026, 1, 1, tzinfo=UTC))
    # every hour from local 2026-03-28 00:00 to 2026-03-31 00:00 (29 March has 23 hours)
    start = datetime(2026, 3, 28, tzinfo=LISBON).astimezone(UTC)
    end = datetime(2026, 3, 31, tzinfo=LISBON).astimezone(UTC)
    moment = start
    while moment < end:
        event(device, moment + timedelta(minutes=10))
        moment += timedelta(hours=1)
    roll_up_usage()
    days = {row.bucket.astimezone(LISBON).date().day: row.events for row in UsageDaily.objects.all()}
    assert days == {28: 24, 29: 23, 30: 24}
    hours = same(query(granularity="hour", start=datetime(2026, 3, 29).date(), end=datetime(2026, 3, 29).date()))
    assert len(hours.current.buckets) == 23 and hours.current.totals["TOTAL"] == 23


def test_a_25_hour_day_has_two_one_oclocks(zone):
    _, device = bound("Riverside", "A", at=datetime(2026, 1, 1, tzinfo=UTC))
    day = datetime(2026, 10, 25, tzinfo=LISBON)
    for hour in range(25):
        event(device, day.astimezone(UTC) + timedelta(hours=hour, minutes=5))
    roll_up_usage()
    answer = same(query(granularity="hour", start=day.date(), end=day.date()))
    assert len(answer.current.buckets) == 25 and answer.current.values["TOTAL"] == [1] * 25
    labels = answer.labels
    assert labels.count("2026-10-25 01:00 (UTC+0100)") == 1 and labels.count("2026-10-25 01:00 (UTC+0000)") == 1


@pytest.mark.parametrize("granularity", ["hour", "day", "month"])
def test_statistics_equal_a_direct_computation(zone, granularity):
    a, first = bound("Riverside", "A", at=datetime(2025, 1, 1, tzinfo=UTC))
    _, second = bound("Harbour", "B", at=datetime(2025, 1, 1, tzinfo=UTC))
    treatments = ["BASIC", "STANDARD", "PREMIUM"]
    moment = datetime(2026, 1, 30, 22, tzinfo=UTC)  # month ends: Jan 31 and Feb 28
    # rolled up on Feb 25 at 10:30: later events (devices with clocks ahead) are the raw tail
    with time_machine.travel(datetime(2026, 2, 25, 10, 30, tzinfo=UTC)):
        for n in range(300):
            moment += timedelta(minutes=37 * (n % 7 + 1))
            event(first if n % 3 else second, moment, treatments[n % 3], counter=n)
        roll_up_usage()
    assert moment > datetime(2026, 3, 1, tzinfo=UTC)
    start, end = datetime(2026, 1, 25).date(), datetime(2026, 3, 31).date()
    if granularity == "hour":
        start, end = datetime(2026, 2, 20).date(), datetime(2026, 3, 2).date()
    options = [{}, {"cumulative": True}, {"ma": 3}, {"compare": True}, {"outlet_id": a.outlet_id}]
    options += [{"treatment": "PREMIUM"}, {"device_pk": second.pk}, {"machine_id": a.pk, "cumulative": True}]
    options += [{"measure": "counter"}, {"measure": "counter", "outlet_id": a.outlet_id, "compare": True}]
    for option in options:
        answer = same(query(granularity=granularity, start=start, end=end, **option))
        assert answer.current.totals[answer.query.series_names[-1]] > 0, option


def test_empty_buckets_are_zero_and_the_previous_period_has_as_many(zone):
    _, device = bound("Riverside", "A", at=datetime(2026, 1, 1, tzinfo=UTC))
    event(device, datetime(2026, 11, 18, 9, tzinfo=UTC))
    event(device, datetime(2026, 11, 12, 9, tzinfo=UTC))
    event(device, datetime(2026, 11, 11, 9, tzinfo=UTC))
    roll_up_usage()
    answer = same(query(granularity="day", days=7, compare=True))
    assert answer.current.values["TOTAL"] == [0, 0, 0, 0, 1, 0, 0]  # Nov 14 … 20
    assert len(answer.previous.buckets) == 7 and answer.previous.totals["TOTAL"] == 2
    assert answer.deltas["TOTAL"] == -50.0 and answer.deltas["PREMIUM"] is None  # nothing before: no %


def test_moving_average_and_cumulative(zone):
    _, device = bound("Riverside", "A", at=datetime(2026, 1, 1, tzinfo=UTC))
    for day, count in [(14, 2), (15, 4), (16, 0), (17, 6)]:
        for n in range(count):
            event(device, datetime(2026, 11, day, 10, n, tzinfo=UTC))
    roll_up_usage()
    window = {"granularity": "day", "start": datetime(2026, 11, 14).date(), "end": datetime(2026, 11, 17).date()}
    assert same(query(**window, ma=2)).current.values["TOTAL"] == [None, 3.0, 2.0, 3.0]
    assert same(query(**window, cumulative=True)).current.values["TOTAL"] == [2, 6, 6, 12]


def test_bad_queries_say_what_to_change(zone):
    with pytest.raises(stats.StatsError, match="too many"):
        query(granularity="minute", days=3)
    with pytest.raises(stats.StatsError, match="granularity"):
        query(granularity="week")
    with pytest.raises(stats.StatsError, match="both"):
        query(start=datetime(2026, 1, 1).date())
    with pytest.raises(stats.StatsError, match="end after"):
        query(start=datetime(2026, 2, 1).date(), end=datetime(2026, 1, 1).date())


def test_the_counter_measure_sums_increases_with_resets_across_rollups_and_tail(zone):
    """measure=counter: how far counters went up (seed 003's billing value), from the rollups'
    counter_delta for closed hours and from raw events for the tail, a reset counting from 0."""
    a, device = bound("Riverside", "A", at=datetime(2026, 1, 1, tzinfo=UTC))
    b = machine("Harbour", "B")
    day = datetime(2026, 11, 19, tzinfo=UTC)
    with time_machine.travel(day + timedelta(hours=6, minutes=30)):
        for hour, value in [(1, 100), (2, 103), (3, 110), (4, 2), (5, 5)]:  # reset after 110
            event(device, day + timedelta(hours=hour), counter=value)
        event(device, day + timedelta(hours=2), "PREMIUM", counter=50)
        roll_up_usage()
    event(device, day + timedelta(hours=8), counter=9)  # the tail: +4 over the last rolled-up 5
    event(device, day + timedelta(hours=9), "PREMIUM", counter=51)
    MachineDevice.bind(b, device, at=day + timedelta(hours=8, minutes=30))  # the PREMIUM +1 counts for B
    closed = stats.closed_before(LISBON)
    assert closed is not None and closed < day + timedelta(hours=8)
    window = {"granularity": "day", "start": day.date(), "end": day.date(), "measure": "counter"}
    answer = same(query(**window))
    assert answer.current.totals == {"BASIC": 3 + 7 + 2 + 3 + 4, "STANDARD": 0, "PREMIUM": 1, "TOTAL": 20}
    assert answer.current.totals_by_measure["events"]["TOTAL"] == 8
    for_a = same(query(**window, machine_id=a.pk))
    assert for_a.current.totals["TOTAL"] == 19  # the PREMIUM increase happened on B
    hours = same(query(**window | {"granularity": "hour"}, device_pk=device.pk)).current.values["BASIC"]
    assert hours[1:10] == [0, 3, 7, 2, 3, 0, 0, 4, 0]


def test_an_unknown_measure_is_refused(zone):
    with pytest.raises(stats.StatsError, match="measure"):
        query(measure="litres")


def test_the_first_runs_single_pass_equals_hour_by_hour_runs(zone):
    """A first run (or one after a zone change) builds every rollup in one pass over all events;
    the rows are those the incremental runs made hour by hour, late events and resets included."""
    a, device = bound("Riverside", "A", at=datetime(2026, 1, 1, tzinfo=UTC))
    b = machine("Harbour", "B")
    roll_up_usage()  # before any event: every later run is incremental
    moment = datetime(2026, 3, 27, 20, tzinfo=UTC)  # across Lisbon's DST change and a month end
    for n in range(120):
        moment += timedelta(minutes=41 * (n % 5 + 1))
        event(device, moment, ["BASIC", "STANDARD", "PREMIUM"][n % 3], counter=(n * 13) % 50)
        if n == 60:
            roll_up_usage()
            MachineDevice.bind(b, device, at=moment)
        if n % 40 == 39:
            roll_up_usage()
    event(device, datetime(2026, 3, 29, 1, 30, tzinfo=UTC), counter=3)  # late, inside rolled-up hours
    roll_up_usage()
    incremental = all_rollups()
    from portal.outlets.models import UsageCursor

    UsageCursor.objects.update(received_before=None)
    roll_up_usage()
    assert all_rollups() == incremental and sum(row[4] for row in incremental[0]) == 121

"""Daily rollups (issue 17 §6): long ranges read the hourly rollups summed per
local day. Every page's answer from the daily rows equals the answer from the
hourly rows (and the raw events), in zones with DST and half-hour offsets;
the daily rows follow every write to the hourly ones (ingest, repricing, a
realignment) and are summed again, in steps, after a change of zone while
ingest goes on."""
from __future__ import annotations

import random
import threading
from datetime import date, datetime, timedelta, timezone

import pytest

from costguardian.models import Department, Organization, UsageDayRollup, UsageDayTagRollup, UsageEvent
from costguardian.services.team import orgs
from costguardian.services.usage import days, ingest, prices, queries, realign
from costguardian.services.usage.queries import UsageFilter
from tests.support import SYSTEM
from tests.test_half_hour_zones import _by_local_day  # [requests, cost] per local day from raw events

NOW = datetime(2026, 12, 10, 12, 0)
START = date(2026, 9, 20)  # both sides of Berlin's (25 Oct) and St. John's (1 Nov) change back from DST
MODELS = (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"), ("mycorp", "llama-x"))
GROUPS = ("provider", "model", "department", "user", "api_key", "tag", "day")


@pytest.fixture
def pinned(time_machine):
    time_machine.move_to(NOW.replace(tzinfo=timezone.utc), tick=False)


def _events(count: int, seed: int, first: date = START, last: date = NOW.date(), prefix: str = "e") -> list[dict]:
    rng = random.Random(seed)
    span = int((datetime.combine(last, datetime.min.time()) - datetime.combine(first, datetime.min.time()))
               .total_seconds())
    events = []
    for i in range(count if span > 0 else 0):
        provider, model = rng.choice(MODELS)
        at = datetime.combine(first, datetime.min.time()) + timedelta(seconds=rng.randrange(span))
        events.append({
            "event_id": f"{prefix}-{seed}-{i}", "provider": provider, "model": model,
            "input_tokens": rng.randrange(1, 5000), "output_tokens": rng.randrange(0, 900),
            "cache_read_tokens": 0, "user": rng.choice(["alice@acme.com", "bob@acme.com", "cust-17", ""]),
            "department": rng.choice(["Research", "Sales", None]),
            "tags": rng.sample(["env:prod", "env:dev", "team:search"], rng.randrange(0, 3)),
            "occurred_at": at.isoformat() + "Z"})
    for event in events:
        if event["department"] is None:
            del event["department"]
    return events


def _ingest(org, events) -> None:
    for name in ("Research", "Sales"):
        Department.get_or_create(organization=org, name=name)
    for start in range(0, len(events), 250):
        result = ingest.ingest(org, None, events[start:start + 250], now=NOW)
        assert result.count("accepted") == len(events[start:start + 250]), result.as_json()


def _answers(org) -> dict:
    """What the dashboard and the explorer show, over ranges long and short."""
    today = NOW.date()
    answers = {"mtd": queries.month_to_date(org, today)}
    ranges = {"90 days": (today - timedelta(days=89), today), "Oct": (date(2026, 10, 1), date(2026, 10, 31)),
              "DST day": (date(2026, 10, 25), date(2026, 10, 25)), "today": (today, today)}
    for name, (first, last) in ranges.items():
        for group in GROUPS:
            report = queries.explorer_report(org, UsageFilter(first, last), group)
            answers[(name, group)] = (report.rows, report.total, report.days, report.series)
        tagged = UsageFilter(first, last, tags=["env:prod"])
        answers[(name, "tag filter")] = queries.explorer_report(org, tagged, "model").rows
        for source in ("gateway", "ingest"):
            answers[(name, source)] = queries.explorer_report(org, UsageFilter(first, last, source=source),
                                                              "provider").rows
        answers[(name, "top")] = queries.summarize_many(org, UsageFilter(first, last), ("provider", "model", "user"))
        answers[(name, "chart")] = queries.daily_series(org, UsageFilter(first, last), stack_by="model")
        answers[(name, "months")] = queries.summarize(org, UsageFilter(first, last), "department", interval="month")
    return answers


def _hourly_answers(org) -> dict:
    """The same answers from the hourly rollups (the path pages take while the
    daily rows are not ready): the organization as a reader sees it then."""
    hourly = Organization.get_by_id(org.id)
    hourly.day_rollup_zone = None
    assert not days.ready(hourly)
    return _answers(hourly)


def _assert_exact(org) -> None:
    org = Organization.get_by_id(org.id)
    assert days.ready(org)
    assert days.differences(org) == []
    daily = _answers(org)
    assert daily == _hourly_answers(org)
    first = START - timedelta(days=1)
    explored = {r.period: [r.requests, r.cost_nanos]
                for r in queries.explore(org, UsageFilter(first, NOW.date()), "day")}
    assert explored == {d: v for d, v in _by_local_day(org).items() if v[0]}


@pytest.mark.parametrize("zone", ["Europe/Berlin", "Asia/Kathmandu", "America/St_Johns"])
def test_pages_read_daily_rows_that_equal_the_hourly_rows(app_ctx, make_org, pinned, zone):
    org = make_org("Acme", time_zone=zone)
    assert days.ready(org)  # a new organization's (empty) daily rollups are complete
    _ingest(org, _events(1500, seed=1))
    hourly_rows = sum(1 for _ in UsageEvent.select())
    daily_rows = UsageDayRollup.select().where(UsageDayRollup.organization == org).count()
    assert 0 < daily_rows < hourly_rows
    assert UsageDayTagRollup.select().where(UsageDayTagRollup.organization == org).count() > 0
    _assert_exact(org)


def test_a_change_of_zone_sums_the_days_again(app_ctx, make_org, pinned):
    """Berlin to New York keeps the buckets (whole hours) but moves every day's
    edges; New York to Kolkata moves the buckets too (a realignment)."""
    org = make_org("Acme", time_zone="Europe/Berlin")
    _ingest(org, _events(800, seed=2))
    before = UsageDayRollup.select().where(UsageDayRollup.organization == org).count()
    orgs.update_settings(org, SYSTEM, org.name, "America/New_York", org.currency)  # the task runs inline here
    org = Organization.get_by_id(org.id)
    assert org.day_rollup_zone == "America/New_York" and org.day_rollups_until is None
    assert UsageDayRollup.select().where(UsageDayRollup.organization == org).count() != 0 != before
    _assert_exact(org)
    orgs.update_settings(org, SYSTEM, org.name, "Asia/Kolkata", org.currency)
    org = Organization.get_by_id(org.id)
    assert org.rollup_offset_minutes == 30 and org.day_rollup_zone == "Asia/Kolkata"
    _assert_exact(org)


def test_a_build_in_steps_while_events_arrive_for_built_and_unbuilt_days(app_ctx, make_org, pinned, monkeypatch):
    """As migration 0029 leaves an organization (no daily rows): the hourly
    task builds them STEP_DAYS at a time; events arriving between steps for
    days already built go to the daily rows at once, later days are summed by
    their step. Pages read the hourly rows until the last step."""
    import tasks

    monkeypatch.setattr(days, "STEP_DAYS", 10)
    org = make_org("Acme", time_zone="Europe/Berlin")
    _ingest(org, _events(600, seed=3))
    Organization.update(day_rollup_zone=None, day_rollups_until=None).where(Organization.id == org.id).execute()
    for table in (UsageDayRollup, UsageDayTagRollup):
        table.delete().execute()
    org = Organization.get_by_id(org.id)
    assert not days.ready(org) and days.stale_organizations() == [org.id]
    hourly_before = _answers(org)

    assert days.build_step(org.id) is False  # started: emptied, in Berlin, from the first day with usage
    org = Organization.get_by_id(org.id)
    assert org.day_rollup_zone == "Europe/Berlin" and org.day_rollups_until == START
    steps = 0
    while True:
        # Between steps: events on days already built, and on days not yet built.
        until = Organization.get_by_id(org.id).day_rollups_until
        if until is None:
            break
        built_day = until - timedelta(days=1)
        _ingest(org, _events(15, seed=100 + steps, first=max(START, built_day - timedelta(days=3)),
                             last=until, prefix="built")
                + _events(15, seed=200 + steps, first=until, last=NOW.date(), prefix="later"))
        assert not days.ready(Organization.get_by_id(org.id))
        done = days.build_step(org.id)
        steps += 1
        assert days.differences(Organization.get_by_id(org.id)) == []  # exact for every built day, every step
        if done:
            break
    assert steps == len(range(0, (NOW.date() - START).days + 1, 10))
    assert hourly_before != _answers(Organization.get_by_id(org.id))  # the new events count
    _assert_exact(org)
    tasks.build_stale_day_rollups.call_local()  # nothing left to build
    assert days.stale_organizations() == []


@pytest.mark.parametrize("zone, first, second", [
    # Berlin's change back from DST, 25 Oct 01:00 UTC: 23:30 UTC the day before and 05:00 UTC are both 25 Oct there.
    ("Europe/Berlin", "2026-10-24T23:30:00Z", "2026-10-25T05:00:00Z"),
    # St. John's (-02:30 to -03:30 on 1 Nov 03:30 UTC): 03:00 and 05:00 UTC are both 1 Nov there.
    ("America/St_Johns", "2026-11-01T03:00:00Z", "2026-11-01T05:00:00Z")])
def test_a_build_sums_a_dst_day_from_both_its_offsets(app_ctx, make_org, pinned, zone, first, second):
    """The day of a change of offset is summed by two statements (one per
    offset); the same dimensions on both sides make one daily row."""
    org = make_org("Acme", time_zone=zone)
    same = {"provider": "openai", "model": "gpt-4o", "input_tokens": 100, "output_tokens": 10}
    _ingest(org, [{**same, "event_id": "before", "occurred_at": first},
                  {**same, "event_id": "after", "occurred_at": second}])
    [row] = UsageDayRollup.select().where(UsageDayRollup.organization == org)
    assert row.requests == 2
    Organization.update(day_rollup_zone=None).where(Organization.id == org.id).execute()
    days.build(org.id)
    [row] = UsageDayRollup.select().where(UsageDayRollup.organization == org)
    assert (row.day.isoformat() if isinstance(row.day, date) else row.day, row.requests) == (second[:10], 2)
    _assert_exact(org)


def test_a_build_racing_ingest_threads_stays_exact(app, make_org, pinned, monkeypatch):
    """Steps and ingest batches from other threads interleave (on PostgreSQL
    they run at once, ordered by the organization row's lock)."""
    from costguardian.db import connected
    from costguardian.extensions import db

    monkeypatch.setattr(days, "STEP_DAYS", 7)
    org = make_org("Acme", time_zone="America/St_Johns")
    _ingest(org, _events(300, seed=4))
    Organization.update(day_rollup_zone=None).where(Organization.id == org.id).execute()
    errors: list = []
    stop = threading.Event()

    def send(seed: int) -> None:
        try:
            with app.app_context(), connected(db):
                for batch in range(12):
                    _ingest(org, _events(20, seed=seed * 100 + batch, prefix=f"t{seed}"))
                    if stop.is_set():
                        return
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    days.build(org.id)
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    _assert_exact(org)


def test_repricing_moves_the_daily_rows_with_the_hourly_ones(app_ctx, make_org, pinned):
    org = make_org("Acme", time_zone="Asia/Kathmandu")
    _ingest(org, _events(400, seed=5))
    assert any(row.unpriced_requests for row in UsageDayRollup.select())  # llama-x has no catalog price
    prices.create_override(org, SYSTEM, provider="mycorp", model="llama-x", effective_from=date(2026, 10, 1),
                           input_price="1", output_price="2")
    _assert_exact(org)
    # An alias renames a model: its old name's rows are emptied in both.
    prices.create_alias(org, SYSTEM, provider="openai", alias="gpt-4o-mini", model="gpt-4o")
    assert not UsageDayRollup.select().where(UsageDayRollup.organization == org,
                                             UsageDayRollup.model == "gpt-4o-mini").exists()
    _assert_exact(org)


def test_an_old_kolkata_organization_built_before_its_realignment(app_ctx, make_org, pinned):
    """From before 0027 and 0029: buckets still whole UTC hours in Kolkata.
    The daily rows built from those hours, then the realignment's moves carry
    their deltas to the daily rows too; both end exact per local day."""
    import tasks

    org = make_org("Old Kolkata", time_zone="UTC")
    _ingest(org, _events(500, seed=6))
    Organization.update(time_zone="Asia/Kolkata", day_rollup_zone=None).where(Organization.id == org.id).execute()
    tasks.build_stale_day_rollups.call_local()
    org = Organization.get_by_id(org.id)
    assert days.ready(org) and org.rollup_offset_minutes == 0 and days.differences(org) == []
    tasks.realign_stale_rollups.call_local()
    org = Organization.get_by_id(org.id)
    assert org.rollup_offset_minutes == 30 and not realign.pending(org)
    _assert_exact(org)


def test_the_migration_leaves_existing_organizations_to_the_task_or_the_command(app, app_ctx, make_org, pinned):
    """Organizations with no daily state read the hourly rows and are listed
    as stale; `flask build-day-rollups` builds them at once."""
    org = make_org("Acme", time_zone="Europe/Berlin")
    _ingest(org, _events(50, seed=7))
    Organization.update(day_rollup_zone=None).where(Organization.id == org.id).execute()
    stale = Organization.get_by_id(org.id)
    assert not days.ready(stale) and org.id in days.stale_organizations()
    assert queries._table(stale, UsageFilter(START, NOW.date()), None).__name__ == "UsageRollup"
    assert queries._table(org, UsageFilter(START, NOW.date()), None).__name__ == "UsageDayRollup"
    output = app.test_cli_runner().invoke(args=["build-day-rollups"]).output
    assert f"organization {org.id}: daily rollups built in" in output
    _assert_exact(org)
    assert "complete" in app.test_cli_runner().invoke(args=["build-day-rollups"]).output


def test_a_zone_changed_and_back_before_the_build_ran_is_built_again(app_ctx, make_org, pinned, real_queue):
    """Berlin, then UTC and events, then Berlin again before the consumer ran
    the first build: the daily rows missed those events, so they are stale
    (pages read the hourly rows) until the queued builds have run."""
    org = make_org("Acme", time_zone="Europe/Berlin")
    _ingest(org, _events(100, seed=8))
    orgs.update_settings(org, SYSTEM, org.name, "UTC", org.currency)
    _ingest(org, _events(100, seed=9, prefix="utc"))
    orgs.update_settings(org, SYSTEM, org.name, "Europe/Berlin", org.currency)
    back = Organization.get_by_id(org.id)
    assert not days.ready(back) and back.id in days.stale_organizations()
    assert queries.explorer_report(back, UsageFilter(START, NOW.date()), "model").total.requests == 200
    while (task := real_queue.dequeue()) is not None:
        real_queue.execute(task)
    _assert_exact(org)

"""Exact local days in half-hour and 45-minute zones (issue 17 §6): rollup
buckets are the organization's local hours (18:30 UTC starts a Kolkata hour,
18:15 UTC a Kathmandu one), so the dashboard, the explorer and its day chart,
budgets' day counts for forecasts and team analytics put every event on its
own local day: each equals a brute-force sum over the raw events. A change of
zone moves the rollups to the new alignment."""
from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine

from costguardian.models import Organization, UsageEvent, UsageRollup, UsageTagRollup
from costguardian.services.budgets import accounting as budget_accounting, budgets
from costguardian.services.team import analytics as team_analytics, orgs
from costguardian.services.usage import ingest, queries as usage_queries, realign, rollups
from costguardian.services.usage.queries import UsageFilter
from tests.support import SYSTEM

NOW = datetime(2026, 12, 10, 12, 0)
DAYS = [date(2026, 12, 1), date(2026, 12, 2), date(2026, 12, 3)]
# Around 18:15 (Kathmandu's midnight) and 18:30 UTC (Kolkata's), on each day before the last.
EDGE_MINUTES = (14, 16, 29, 31, 44, 46)
MEASURES = ("requests", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "cost_nanos",
            "unpriced_requests")


@pytest.fixture
def pinned(time_machine):
    time_machine.move_to(NOW.replace(tzinfo=timezone.utc), tick=False)


def _edge_events() -> list[dict]:
    events = []
    for day in (date(2026, 11, 30), *DAYS[:-1]):
        for i, minute in enumerate(EDGE_MINUTES):
            at = datetime.combine(day, datetime.min.time()) + timedelta(hours=18, minutes=minute)
            events.append({"event_id": f"{day}-{minute}", "provider": "openai", "model": "gpt-4o",
                           "input_tokens": 1000 * (i + 1), "output_tokens": 10 * minute,
                           "user": ["alice@acme.com", "bob@acme.com"][i % 2],
                           "tags": ["env:prod"] if i % 3 == 0 else [],
                           "occurred_at": at.isoformat() + "Z"})
    return events


def _ingest(org, events) -> None:
    result = ingest.ingest(org, None, events, now=NOW)
    assert result.count("accepted") == len(events), result.as_json()


def _by_local_day(org) -> dict[date, list[int]]:
    """[requests, cost] per local day, from the raw events."""
    zone = ZoneInfo(org.time_zone)
    days: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for e in UsageEvent.select().where(UsageEvent.organization == org):
        day = e.occurred_at.replace(tzinfo=timezone.utc).astimezone(zone).date()
        days[day][0] += 1
        days[day][1] += e.cost_nanos or 0
    return days


def _local_hour(moment: datetime, zone: str) -> datetime:
    local = moment.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(zone))
    return local.replace(minute=0, second=0, microsecond=0).astimezone(timezone.utc).replace(tzinfo=None)


def _brute_force_rollups(org, model_class) -> dict:
    """The rollups recomputed from raw events, one bucket per local hour."""
    expected: dict = defaultdict(lambda: [0] * 7)
    for e in UsageEvent.select().where(UsageEvent.organization == org):
        key = (_local_hour(e.occurred_at, org.time_zone), e.provider, e.model, e.api_key_id or 0, e.user_ref,
               e.department_id or 0)
        measures = (1, e.input_tokens, e.cache_read_tokens, e.cache_write_tokens, e.output_tokens,
                    e.cost_nanos or 0, int(e.cost_nanos is None))
        for k in ([(tag,) + key for tag in e.tags] if model_class is UsageTagRollup else [key]):
            for i, value in enumerate(measures):
                expected[k][i] += value
    return dict(expected)


def _stored_rollups(org, model_class) -> dict:
    return {tuple(getattr(r, d) for d in model_class.KEY): [getattr(r, m) for m in MEASURES]
            for r in model_class.select().where(model_class.organization == org)}


@pytest.mark.parametrize("zone, alignment, bucket_minute", [("Asia/Kolkata", 30, 30), ("Asia/Kathmandu", 45, 15)])
def test_every_view_puts_each_event_on_its_local_day(app_ctx, make_org, pinned, zone, alignment, bucket_minute):
    org = make_org("Acme", time_zone=zone)
    assert org.rollup_offset_minutes == alignment
    _ingest(org, _edge_events())
    assert {r.hour.minute for r in UsageRollup.select().where(UsageRollup.organization == org)} == {bucket_minute}
    expected = _by_local_day(org)
    assert len([d for d in DAYS if expected[d][0]]) == 3  # the edge minutes split across local days
    flt = UsageFilter(DAYS[0], DAYS[-1])

    # The explorer by day, its totals, its day chart; the dashboard's daily series and today.
    explored = {r.period: [r.requests, r.cost_nanos] for r in usage_queries.explore(org, flt, "day")}
    assert explored == {d: expected[d] for d in DAYS}
    report = usage_queries.explorer_report(org, flt, "model")
    assert report.days == DAYS
    assert [sum(values) for values in zip(*report.series.values())] == [expected[d][1] for d in DAYS]
    assert report.total.requests == sum(expected[d][0] for d in DAYS)
    days, series = usage_queries.daily_series(org, flt)
    assert series["Spend"] == [expected[d][1] for d in DAYS]
    by_month = usage_queries.summarize(org, UsageFilter(DAYS[0], DAYS[-1]), interval="month")
    assert [(r.period, r.requests) for r in by_month] == [(date(2026, 12, 1), sum(expected[d][0] for d in DAYS))]
    for day in DAYS:
        mtd = usage_queries.month_to_date(org, day)
        assert [mtd.today.requests, mtd.today.cost_nanos] == expected[day]
        assert mtd.this_month.requests == sum(expected[d][0] for d in DAYS if d <= day)

    # Team analytics, one local day at a time.
    for day in DAYS:
        team = team_analytics.report(org, day, day)
        assert [team.total.requests, team.total.cost_nanos] == expected[day]

    # A monthly budget: the forecast's history per local day, and its counter from the rollups.
    budget = budgets.create(org, SYSTEM, {"name": "Month", "amount_usd": "100", "period": "monthly"})
    assert budgets.daily_spend(budget, DAYS[0], DAYS[-1]) == [(d, expected[d][1]) for d in DAYS]
    scope = budget_accounting.Scope.of(budget)
    first, last = usage_queries.exact_bounds(org, DAYS[1], DAYS[1])
    assert budget_accounting._on_bucket_edges(org.id, first, last)  # summed from the rollups, not the events
    assert budget_accounting.spend_between(scope, first, last) == (expected[DAYS[1]][1], expected[DAYS[1]][0])
    december = sum(cost for day, (_, cost) in expected.items() if day.month == 12)
    assert budgets.status(budget).spend == december


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Asia/Kathmandu"])
def test_rollups_are_local_hours(app_ctx, make_org, pinned, zone):
    org = make_org("Acme", time_zone=zone)
    rng = random.Random(17)
    events = [{"event_id": f"r{i}", "provider": "openai", "model": rng.choice(["gpt-4o", "gpt-4o-mini"]),
               "input_tokens": rng.randint(1, 5000), "output_tokens": rng.randint(0, 500),
               "tags": rng.sample(["a", "b", "c"], rng.randint(0, 2)),
               "occurred_at": (NOW - timedelta(minutes=rng.randint(0, 60 * 24 * 5))).isoformat() + "Z"}
              for i in range(400)]
    _ingest(org, events)
    for model_class in (UsageRollup, UsageTagRollup):
        assert _stored_rollups(org, model_class) == _brute_force_rollups(org, model_class)


def test_bucket_rule():
    at = datetime(2026, 12, 3, 18, 29)
    assert rollups.bucket_start(30, at) == datetime(2026, 12, 3, 17, 30)
    assert rollups.bucket_start(30, at.replace(minute=30)) == datetime(2026, 12, 3, 18, 30)
    assert rollups.bucket_start(45, at.replace(minute=14)) == datetime(2026, 12, 3, 17, 15)
    assert rollups.bucket_start(45, at.replace(minute=15)) == datetime(2026, 12, 3, 18, 15)
    assert rollups.bucket_start(0, at) == datetime(2026, 12, 3, 18)
    assert [rollups.alignment_of(z) for z in ("UTC", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu",
                                              "America/St_Johns", "Australia/Lord_Howe", "Pacific/Chatham")] == \
        [0, 0, 30, 45, 30, 30, 45]


def test_a_change_of_zone_moves_the_rollups_in_batches(app_ctx, make_org, pinned, monkeypatch):
    monkeypatch.setattr(realign, "BATCH", 7)  # several batches, each its own task
    org = make_org("Acme", time_zone="UTC")
    assert org.rollup_offset_minutes == 0
    events = _edge_events()
    rng = random.Random(3)
    events += [{"event_id": f"x{i}", "provider": "anthropic", "model": "claude-sonnet-4-5",
                "input_tokens": rng.randint(1, 9000), "output_tokens": rng.randint(0, 900),
                "tags": ["env:prod"] if i % 2 else ["env:dev", "team:x"],
                "occurred_at": (NOW - timedelta(minutes=rng.randint(0, 60 * 24 * 12))).isoformat() + "Z"}
               for i in range(60)]
    _ingest(org, events)
    budget = budgets.create(org, SYSTEM, {"name": "Month", "amount_usd": "100", "period": "monthly"})
    for zone, alignment in (("Asia/Kolkata", 30), ("Asia/Kathmandu", 45), ("UTC", 0)):
        orgs.update_settings(org, SYSTEM, org.name, zone, org.currency)
        org = Organization.get_by_id(org.id)
        assert (org.time_zone, org.rollup_offset_minutes) == (zone, alignment)
        for model_class in (UsageRollup, UsageTagRollup):
            assert _stored_rollups(org, model_class) == _brute_force_rollups(org, model_class), zone
        expected = _by_local_day(org)
        flt = UsageFilter(date(2026, 11, 25), DAYS[-1])
        explored = {r.period: [r.requests, r.cost_nanos] for r in usage_queries.explore(org, flt, "day")}
        assert explored == {d: v for d, v in expected.items() if flt.start <= d <= flt.end}
        december = sum(cost for day, (_, cost) in expected.items() if day.month == 12)
        assert budgets.status(budget).spend == december, zone


def test_a_zone_with_the_same_alignment_moves_nothing(app_ctx, make_org, pinned):
    org = make_org("Acme", time_zone="Asia/Kolkata")
    _ingest(org, _edge_events())
    before = _stored_rollups(org, UsageRollup)
    orgs.update_settings(org, SYSTEM, org.name, "Asia/Colombo", org.currency)  # +05:30 too
    assert Organization.get_by_id(org.id).rollup_offset_minutes == 30
    assert _stored_rollups(org, UsageRollup) == before


def test_pruned_events_keep_their_old_buckets(app_ctx, make_org, pinned):
    org = make_org("Acme", time_zone="UTC")
    _ingest(org, _edge_events())
    total = sum(r.requests for r in UsageRollup.select())
    cutoff = datetime(2026, 12, 1)
    pruned = UsageEvent.delete().where(UsageEvent.organization == org, UsageEvent.occurred_at < cutoff).execute()
    assert pruned == len(EDGE_MINUTES)
    orgs.update_settings(org, SYSTEM, org.name, "Asia/Kolkata", org.currency)
    rows = list(UsageRollup.select().where(UsageRollup.organization == org))
    assert sum(r.requests for r in rows) == total
    assert {r.hour for r in rows if r.hour < cutoff} == {datetime(2026, 11, 30, 18)}  # the old UTC hour
    kept = {k: v for k, v in _stored_rollups(org, UsageRollup).items() if k[0] >= cutoff}
    assert kept == _brute_force_rollups(Organization.get_by_id(org.id), UsageRollup)


def test_a_change_of_zone_during_concurrent_ingest_loses_and_doubles_nothing(app, make_org, backend, monkeypatch):
    """Ingest shares the organization row while it writes; the change of
    alignment takes it alone: every batch lands wholly before (and is moved)
    or wholly after (and is written in the new buckets)."""
    import threading

    from costguardian.extensions import db

    monkeypatch.setattr(realign, "BATCH", 25)
    with app.app_context(), db.connection_context():
        org = make_org("Acme", time_zone="UTC")
    rng = random.Random(11)
    now = datetime(2026, 11, 26, 12, 0)
    batches = [[{"event_id": f"c{b}-{i}", "provider": "openai", "model": "gpt-4o", "input_tokens": rng.randint(1, 999),
                 "tags": ["env:prod"] if i % 2 else [],
                 "occurred_at": (now - timedelta(minutes=rng.randint(0, 60 * 24 * 3))).isoformat() + "Z"}
                for i in range(40)] for b in range(12)]
    barrier = threading.Barrier(3)
    errors = []

    def ingest_some(mine):
        try:
            with app.app_context(), db.connection_context():
                barrier.wait(timeout=10)
                for batch in mine:
                    assert ingest.ingest(org, None, batch, now=now).count("accepted") == len(batch)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    def change_zones():
        try:
            with app.app_context(), db.connection_context():
                barrier.wait(timeout=10)
                for zone in ("Asia/Kolkata", "UTC", "Asia/Kathmandu", "Asia/Kolkata", "UTC", "Asia/Kathmandu"):
                    current = Organization.get_by_id(org.id)
                    orgs.update_settings(current, SYSTEM, current.name, zone, current.currency)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ingest_some, args=(batches[i::2],)) for i in range(2)]
    threads.append(threading.Thread(target=change_zones))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with app.app_context(), db.connection_context():
        final = Organization.get_by_id(org.id)
        assert final.rollup_offset_minutes == 45
        assert UsageEvent.select().where(UsageEvent.organization == final).count() == 12 * 40
        for model_class in (UsageRollup, UsageTagRollup):
            assert _stored_rollups(final, model_class) == _brute_force_rollups(final, model_class)


def test_an_organization_from_before_local_hour_rollups_is_realigned_by_the_hourly_task(app_ctx, make_org, pinned):
    """An org in Kolkata whose rollups are still UTC hours (0027 gave it
    alignment 0, as its buckets were): the hourly task moves them once."""
    import tasks

    org = make_org("Old Kolkata", time_zone="UTC")
    _ingest(org, _edge_events())
    # As 0027 leaves it: the zone is Kolkata, the stored alignment and the buckets still UTC hours.
    Organization.update(time_zone="Asia/Kolkata").where(Organization.id == org.id).execute()
    untouched = make_org("Berlin", time_zone="Europe/Berlin")
    tasks.realign_stale_rollups.call_local()
    org = Organization.get_by_id(org.id)
    assert org.rollup_offset_minutes == 30
    assert _stored_rollups(org, UsageRollup) == _brute_force_rollups(org, UsageRollup)
    assert Organization.get_by_id(untouched.id).rollup_offset_minutes == 0
    assert realign.realign_stale() == 0  # nothing left to move


def _drain(huey) -> int:
    ran = 0
    while (task := huey.dequeue()) is not None:
        huey.execute(task)
        ran += 1
    return ran


def test_a_move_whose_task_chain_was_lost_resumes_where_its_last_batch_ended(app_ctx, make_org, pinned,
                                                                               monkeypatch, real_queue):
    """The move's progress is its row, advanced with each batch: a queue that
    lost the next task (a Redis flush, a worker killed between batches) is
    repaired by the hourly task; a repeated task never moves a batch twice."""
    from costguardian.models import RollupMove

    monkeypatch.setattr(realign, "BATCH", 5)
    org = make_org("Acme", time_zone="UTC")
    _ingest(org, _edge_events())
    orgs.update_settings(org, SYSTEM, org.name, "Asia/Kolkata", org.currency)
    [move] = RollupMove.select()
    first = real_queue.dequeue()
    real_queue.execute(first)  # one batch moved...
    assert RollupMove.get_by_id(move.id).after_id > 0
    real_queue.execute(first)  # ...the same task again (a redelivery) moves the next batch, not the same one
    real_queue.flush()  # ...and the chain is lost
    moved_so_far = RollupMove.get_by_id(move.id).after_id
    assert 0 < moved_so_far < move.last_id

    assert realign.realign_stale() == 0  # not stalled yet
    with time_machine.travel(NOW.replace(tzinfo=timezone.utc) + realign.STALLED_AFTER + timedelta(minutes=1)):
        assert realign.realign_stale() == 1
        _drain(real_queue)
    assert RollupMove.select().count() == 0
    org = Organization.get_by_id(org.id)
    for model_class in (UsageRollup, UsageTagRollup):
        assert _stored_rollups(org, model_class) == _brute_force_rollups(org, model_class)


def test_repricing_and_aliases_wait_while_a_move_is_pending(app_ctx, make_org, pinned, real_queue):
    from costguardian.models import RollupMove
    from costguardian.services import errors
    from costguardian.services.usage import prices, repricing

    org = make_org("Acme", time_zone="UTC")
    _ingest(org, _edge_events())
    orgs.update_settings(org, SYSTEM, org.name, "Asia/Kolkata", org.currency)
    assert realign.pending(org)
    real_queue.flush()
    assert repricing.reprice_by_id(org.id, "openai", "gpt-4o") == 0  # not now: it looks again in a minute
    assert real_queue.pending_count() == 1
    with pytest.raises(errors.ValidationError) as refused:
        prices.create_alias(org, SYSTEM, provider="openai", alias="prod-4o", model="gpt-4o")
    assert "still moving" in refused.value.errors["alias"]
    real_queue.flush()
    for move in RollupMove.select():
        while realign.move_batch(move.id) not in (None, (org.id, True)):
            pass
    assert not realign.pending(org)
    org = Organization.get_by_id(org.id)
    assert _stored_rollups(org, UsageRollup) == _brute_force_rollups(org, UsageRollup)

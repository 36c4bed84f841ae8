"""Budgets: exact counters, alerts exactly once, raises, resolution, status and
which budgets apply."""
from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta, timezone

import pytest
import time_machine

from costguardian import clock
from costguardian.extensions import db
from costguardian.models import Budget, BudgetAlert, BudgetSpend, Department, Notification, OutboxMessage, UsageEvent
from costguardian.services.budgets import accounting as budget_accounting, periods as budget_periods, budgets
from costguardian.services.usage import ingest, repricing
from costguardian.services.errors import ValidationError
from costguardian.services.keys import create_key
from tests.support import SYSTEM, add_member

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)

NOW = clock.now()


def _event(event_id, *, at=None, model="gpt-4o", provider="openai", tokens=1_000_000, **extra):
    return {"event_id": event_id, "provider": provider, "model": model, "input_tokens": tokens,
            "occurred_at": (at or NOW - timedelta(minutes=1)).isoformat() + "Z", **extra}


@pytest.fixture
def org(app_ctx, make_user, make_org):
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    add_member(org, make_user("admin@acme.com"), "admin")
    add_member(org, make_user("viewer@acme.com"), "viewer")
    return org


def _budget(org, **data) -> Budget:
    return budgets.create(org, SYSTEM, {"name": "B", "amount_usd": "100", **data})


def _brute_force(budget: Budget) -> tuple[int, int]:
    """The budget's current-period spend straight from the raw events."""
    period = budget_periods.current_period(budget, budget.organization.time_zone, clock.now())
    scope = budget_accounting.Scope.of(Budget.get_by_id(budget.id))
    spend = requests = 0
    for e in UsageEvent.select().where(UsageEvent.organization == budget.organization_id,
                                       UsageEvent.occurred_at >= period.start, UsageEvent.occurred_at < period.end):
        if scope.matches(budget_accounting.event_row(e)):
            spend += e.cost_nanos or 0
            requests += 1
    return spend, requests


def test_validation_reports_every_bad_field(org):
    with pytest.raises(ValidationError) as caught:
        budgets.create(org, SYSTEM, {"name": "", "amount_usd": "-5", "period": "fortnightly",
                                     "thresholds": "50, abc", "enforcement": "maybe", "department_id": "999",
                                     "notify_roles": "owner,boss"})
    assert set(caught.value.errors) == {"name", "amount_usd", "period", "thresholds", "enforcement",
                                        "department_id", "notify_roles"}
    with pytest.raises(ValidationError) as caught:
        budgets.create(org, SYSTEM, {"name": "x", "amount_usd": "10", "period": "custom",
                                     "custom_start": "2026-12-10", "custom_end": "2026-12-01"})
    assert "custom_end" in caught.value.errors
    with pytest.raises(ValidationError):
        budgets.parse_usd("0.0000000001")
    assert budgets.parse_usd("$1,234.50") == 1_234_500_000_000
    assert budgets.parse_thresholds("100, 50 80%") == [50, 80, 100]


def test_counters_equal_brute_force_after_random_ingest(org):
    rng = random.Random(7)
    research = Department.create(organization=org, name="Research")
    Department.create(organization=org, name="Lab", parent=research)  # events name it; "research" covers it
    key = create_key(org, SYSTEM, "k", ["ingest"]).key
    made = [
        _budget(org, name="org"),
        _budget(org, name="research", department_id=str(research.id)),
        _budget(org, name="research-openai", department_id=str(research.id), provider="openai"),
        _budget(org, name="model", provider="anthropic", model="claude-sonnet-4-5"),
        _budget(org, name="tag", tag="team:search"),
        _budget(org, name="user", user="ann@acme.com"),
        _budget(org, name="key", api_key_id=str(key.id)),
        _budget(org, name="daily", period="daily"),
        _budget(org, name="weekly", period="weekly"),
    ]
    models = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), ("acme-ai", "rocket-1")]
    ids = [f"e{i}" for i in range(300)]
    # Some events land in today's first moments (on the 1st at 00:30 "10 hours
    # ago" is last month), so every scope sees spend at any instant of the calendar.
    day_start = budget_periods.current_period(made[7], org.time_zone, NOW).start
    for _ in range(12):
        batch = []
        for _ in range(40):
            provider, model = rng.choice(models)
            at = NOW - timedelta(days=rng.choice([0, 0, 1, 3, 10, 40, 70]), minutes=rng.randrange(1, 600))
            if rng.random() < 0.3:
                at = day_start + (NOW - day_start) * rng.random()
            extra = {}
            if rng.random() < 0.5:
                extra["department"] = rng.choice(["Research", "Lab"])
            if rng.random() < 0.4:
                extra["tags"] = rng.sample(["team:search", "env:prod", "feature:x"], 2)
            if rng.random() < 0.3:
                extra["user"] = "ann@acme.com"
            batch.append(_event(rng.choice(ids), at=at, provider=provider, model=model,
                                tokens=rng.randrange(1, 5_000_000), **extra))
        ingest.ingest(org, rng.choice([key, None]), batch, now=NOW)
    for budget in made:
        counter = budget_accounting.period_spend(
            budget, budget_periods.current_period(budget, org.time_zone, clock.now()).start)
        assert counter == _brute_force(budget), budget.name
        assert counter[1] > 0, budget.name  # every scope saw some events
    # Rebuilding from rollups gives the same numbers.
    for budget in made:
        before = budget_accounting.period_spend(budget, budget_periods.current_period(budget, org.time_zone, clock.now()).start)
        budget_accounting.rebuild(budget)
        after = budget_accounting.period_spend(budget, budget_periods.current_period(budget, org.time_zone, clock.now()).start)
        assert before == after, budget.name


def test_counters_follow_repricing(org):
    budget = _budget(org, name="rocket", provider="acme-ai")
    ingest.ingest(org, None, [_event("a", provider="acme-ai", model="rocket-1")])
    assert budgets.status(budget).spend == 0 and budgets.status(budget).requests == 1
    from datetime import date

    from costguardian.services.usage import prices

    # Adding a price reprices the stored events (immediately, in tests) and the counter follows.
    prices.create_override(org, SYSTEM, provider="acme-ai", model="rocket-1", effective_from=date(2020, 1, 1),
                           input_price="2", output_price="4")
    st = budgets.status(Budget.get_by_id(budget.id))
    assert st.spend == 2_000_000_000 == _brute_force(budget)[0]  # 1M input tokens at $2 per million
    repricing.reprice(org, "acme-ai", "rocket-1")  # again: nothing changes, nothing double-counts
    assert budgets.status(Budget.get_by_id(budget.id)).spend == 2_000_000_000


def test_threshold_alerts_fire_once_each_and_go_to_owners_and_chosen_roles(org):
    budget = _budget(org, amount_usd="10", notify_roles="owner")  # gpt-4o input: $2.50 per million tokens
    ingest.ingest(org, None, [_event("a", tokens=1_000_000)])  # $2.50: 25%
    assert BudgetAlert.select().count() == 0
    ingest.ingest(org, None, [_event("b", tokens=1_000_000), _event("c", tokens=1_000_000)])  # $7.50: 75%
    ingest.ingest(org, None, [_event("c", tokens=1_000_000)])  # a duplicate: counts nothing
    assert [a.threshold for a in BudgetAlert.select()] == [50]
    ingest.ingest(org, None, [_event("d", tokens=2_000_000)])  # $12.50: 125%
    assert sorted(a.threshold for a in BudgetAlert.select()) == [50, 80, 100]
    ingest.ingest(org, None, [_event("e", tokens=1_000_000)])
    assert BudgetAlert.select().count() == 3
    exceeded = Notification.select().where(Notification.event_type == "budget.exceeded")
    assert [n.user.email for n in exceeded] == ["owner@acme.com"]  # owner role only
    [n] = exceeded
    assert "B" in n.title and "$12.50" in n.body and "$10.00" in n.body
    st = budgets.status(budget)
    assert st.state == "exceeded" and st.thresholds_crossed == [50, 80, 100]


def test_concurrent_ingest_across_a_threshold_raises_one_alert(app, make_user, make_org, backend):
    with app.app_context(), db.connection_context():
        owner = make_user("owner@acme.com")
        org = make_org("Acme", owner=owner)
        budget = budgets.create(org, SYSTEM, {"name": "B", "amount_usd": "10", "thresholds": "100"})
    errors = []

    def worker(n):
        try:
            with app.app_context(), db.connection_context():
                for i in range(3):
                    ingest.ingest(org, None, [_event(f"{n}-{i}", tokens=1_000_000)])  # $2.50 each
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with app.app_context(), db.connection_context():
        assert BudgetAlert.select().where(BudgetAlert.budget == budget.id).count() == 1
        assert Notification.select().where(Notification.event_type == "budget.exceeded").count() == 1
        assert budgets.status(Budget.get_by_id(budget.id)).spend == 18 * 2_500_000_000


def test_back_dated_event_counts_in_its_own_period(org):
    budget = _budget(org, period="daily")
    yesterday = NOW - timedelta(days=1)
    ingest.ingest(org, None, [_event("old", at=yesterday), _event("new")])
    assert budgets.status(budget).requests == 1  # yesterday's belongs to yesterday's period
    assert _brute_force(budget)[1] == 1


def _threshold_alerts() -> list[int]:
    """Threshold alerts only: whether a forecast alert also fires depends on
    the day of the period (early in a month a small spend projects high)."""
    return [a.threshold for a in BudgetAlert.select().where(BudgetAlert.kind == "threshold").order_by(BudgetAlert.id)]


def test_lowered_threshold_is_caught(org):
    budget = _budget(org, amount_usd="100", thresholds="90")
    ingest.ingest(org, None, [_event("a", tokens=4_000_000)])  # $10: 10%
    assert _threshold_alerts() == []
    budgets.update(budget, SYSTEM, {"name": "B", "amount_usd": "100", "thresholds": "5"})
    assert _threshold_alerts() == [5]
    assert budgets.check_all()["alerts"] == 0  # the periodic check finds nothing more to say


def test_periodic_check_raises_what_ingest_missed(org):
    _budget(org, amount_usd="10", thresholds="50")
    # History rewritten behind ingest's back (e.g. a price added later): only the check sees it.
    ingest.ingest(org, None, [_event("a", tokens=3_000_000)])
    BudgetAlert.delete().execute()
    budgets.check_all()
    assert _threshold_alerts() == [50]
    assert budgets.check_all()["alerts"] == 0


def test_temporary_raise_resolves_and_lasts_one_period(org):
    budget = _budget(org, amount_usd="10", notify_resolved="1")
    ingest.ingest(org, None, [_event("a", tokens=5_000_000)])  # $12.50
    assert budgets.status(budget).state == "exceeded"
    budgets.raise_temporarily(budget, SYSTEM, "10", "launch week")
    st = budgets.status(budget)
    assert st.limit == 20 * 10**9 and st.increase == 10 * 10**9 and st.state != "exceeded"
    resolved = BudgetAlert.get(BudgetAlert.kind == "resolved")
    assert resolved.threshold == 100
    assert Notification.select().where(Notification.event_type == "budget.resolved").count() >= 1
    next_period = budget_periods.current_period(budget, org.time_zone, NOW).end + timedelta(hours=1)
    assert budgets.status(budget, next_period).limit == 10 * 10**9  # the raise was for that period only
    with pytest.raises(ValidationError):
        budgets.raise_temporarily(budget, SYSTEM, "abc")


def test_budget_status_for_lists_covering_budgets_blocking_first(org):
    research = Department.create(organization=org, name="Research")
    lab = Department.create(organization=org, name="Lab", parent=research)
    whole = _budget(org, name="whole", amount_usd="1000")
    dept = _budget(org, name="research", department_id=str(research.id), amount_usd="5", enforcement="hard")
    anthropic = _budget(org, name="anthropic", provider="anthropic", amount_usd="1")
    ingest.ingest(org, None, [_event("a", tokens=4_000_000, department="Lab")])  # $10 in Lab
    result = budgets.budget_status_for(org, department=lab.id, provider="openai", model="gpt-4o")
    assert [s.budget.name for s in result] == ["research", "whole"]
    assert result[0].blocked and not result[1].blocked
    assert [s.budget.name for s in budgets.budget_status_for(org, provider="Anthropic")] == ["anthropic", "whole"]
    assert whole.id and dept.id and anthropic.id


def test_forecast_alert_fires_once_per_period(org):
    # A custom period from 20 days ago to 10 days ahead, whatever today is; $1 a day so far.
    today = NOW.date()
    events = [_event(f"h{i}", at=NOW - timedelta(days=i, hours=1), tokens=400_000) for i in range(1, 21)]
    ingest.ingest(org, None, events, now=NOW)
    budget = _budget(org, amount_usd="25", thresholds="100", period="custom",
                     custom_start=(today - timedelta(days=20)).isoformat(),
                     custom_end=(today + timedelta(days=10)).isoformat())
    st = budgets.status(budget)
    assert 19 * 10**9 <= st.spend <= 20 * 10**9 and st.state == "forecast"  # ~$20 spent; ~$30 projected
    assert st.forecast > st.limit and st.forecast_exceeds_on is not None
    assert today <= st.forecast_exceeds_on <= today + timedelta(days=10)
    [alert] = BudgetAlert.select().where(BudgetAlert.kind == "forecast")
    assert alert.forecast_nanos > alert.limit_nanos
    [n] = Notification.select().where(Notification.event_type == "budget.forecast", Notification.user == org_owner(org))
    assert "projected to exceed its limit on" in n.title
    budgets.refresh_forecast(Budget.get_by_id(budget.id))
    budgets.check_all()
    assert BudgetAlert.select().where(BudgetAlert.kind == "forecast").count() == 1  # once per period


def org_owner(org):
    from costguardian.models import Membership

    return Membership.get(Membership.organization == org, Membership.role == "owner").user_id


def test_department_merge_moves_budget_spend(org):
    from costguardian.services.team import departments

    a = Department.create(organization=org, name="A")
    b = Department.create(organization=org, name="B")
    budget_b = _budget(org, name="b", department_id=str(b.id))
    ingest.ingest(org, None, [_event("x", department="A"), _event("y", department="B")])
    assert budgets.status(budget_b).requests == 1
    departments.merge(a, b, SYSTEM)
    assert budgets.status(Budget.get_by_id(budget_b.id)).requests == 2


def test_user_budgets_match_emails_whatever_their_case(org):
    budget = _budget(org, name="ann", user="Ann@Acme.com")
    ingest.ingest(org, None, [_event("a", user="ANN@acme.COM"), _event("b", user="ann@acme.com"),
                              _event("c", user="end-user-42")])
    assert budgets.status(budget).requests == 2
    assert [s.budget.name for s in budgets.budget_status_for(org, user="Ann@ACME.com")] == ["ann"]


@time_machine.travel(datetime(2026, 11, 18, 12, 0, tzinfo=timezone.utc), tick=False)
def test_a_new_time_zone_does_not_send_this_periods_alerts_again(org):
    """Mid-month, where the period is November in both zones (on New Year's
    Eve in New York it is already January in Tokyo: a new period, new alerts)."""
    from costguardian.services.team import orgs

    budget = _budget(org, amount_usd="10", thresholds="50")
    ingest.ingest(org, None, [_event("a", tokens=3_000_000, at=datetime(2026, 11, 18, 11, 0))])  # $7.50
    budgets.check_all()  # the forecast alert too, on the days of a period where $7.50 projects above $10
    assert _threshold_alerts() == [50]
    alerts = BudgetAlert.select().count()
    orgs.update_settings(org, SYSTEM, org.name, "Asia/Tokyo", org.currency)
    budgets.check_all()
    assert _threshold_alerts() == [50] and BudgetAlert.select().count() == alerts
    assert budgets.status(Budget.get_by_id(budget.id)).spend == _brute_force(Budget.get_by_id(budget.id))[0]


def test_budgets_created_and_edited_during_concurrent_ingest_stay_exact(app, make_user, make_org, backend):
    with app.app_context(), db.connection_context():
        org = make_org("Acme", owner=make_user("owner@acme.com"))
    errors, made = [], []

    def ingester(n):
        try:
            with app.app_context(), db.connection_context():
                for i in range(15):
                    provider = "anthropic" if i % 3 else "openai"
                    model = "claude-sonnet-4-5" if i % 3 else "gpt-4o"
                    ingest.ingest(org, None, [_event(f"{n}-{i}-{j}", provider=provider, model=model, tokens=1000 + j)
                                              for j in range(5)])
        except Exception as exc:  # reported below
            errors.append(exc)

    def admin():
        try:
            with app.app_context(), db.connection_context():
                for i in range(4):
                    made.append(budgets.create(org, SYSTEM, {"name": f"b{i}", "amount_usd": "100",
                                                             "provider": "openai" if i % 2 else ""}))
                budgets.update(made[0], SYSTEM, {"name": "b0", "amount_usd": "100", "provider": "anthropic"})
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ingester, args=(n,)) for n in range(3)] + [threading.Thread(target=admin)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with app.app_context(), db.connection_context():
        for budget in made:
            budget = Budget.get_by_id(budget.id)
            assert (budgets.status(budget).spend, budgets.status(budget).requests) == _brute_force(budget), budget.name


def test_an_alert_whose_notification_failed_is_sent_by_the_periodic_check(org):
    budget = _budget(org, amount_usd="10", thresholds="50")
    ingest.ingest(org, None, [_event("a", tokens=3_000_000)])
    alert = BudgetAlert.get()
    # As if the sender died between writing the alert and notifying.
    Notification.delete().execute()
    BudgetAlert.update(event_id="", created_at=clock.now() - timedelta(minutes=5)).execute()
    assert budgets.check_all()["resent"] == 1
    assert Notification.select().where(Notification.event_type == "budget.threshold").count() >= 1
    assert BudgetAlert.get_by_id(alert.id).event_id not in ("", "sending")
    assert budgets.check_all()["resent"] == 0
    assert budget.id


DEC_2 = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)  # the day the suite was found red


def test_early_in_a_month_a_threshold_and_a_forecast_alert_both_fire(org):
    """On 2 December, $7.50 of a $10 monthly budget spent in two days projects
    far above the limit: the forecast alert joins the threshold alert (what
    the three tests above once assumed could not happen)."""
    with time_machine.travel(DEC_2, tick=False):
        _budget(org, amount_usd="10", thresholds="50")
        ingest.ingest(org, None, [_event("a", tokens=1_000_000, at=datetime(2026, 12, 1, 9)),
                                  _event("b", tokens=2_000_000, at=datetime(2026, 12, 2, 9))])
        budgets.check_all()
        kinds = sorted((a.kind, a.threshold) for a in BudgetAlert.select())
    assert kinds == [("forecast", 100), ("threshold", 50)]


def test_a_threshold_alert_raised_before_any_forecast_has_no_forecast_line(org):
    with time_machine.travel(DEC_2, tick=False):
        budget = _budget(org, amount_usd="10", thresholds="50")  # no spend, no history: nothing to project
        assert budgets.status(budget).forecast is None
        ingest.ingest(org, None, [_event("a", tokens=3_000_000, at=datetime(2026, 12, 2, 9))])  # $7.50
    alert = BudgetAlert.get(BudgetAlert.kind == "threshold")
    assert alert.forecast_nanos is None
    note = Notification.select().where(Notification.event_type == "budget.threshold").first()
    assert "$7.50" in note.body and "Forecast" not in note.body
    assert OutboxMessage.select().where(OutboxMessage.text_body.contains("$7.50")).exists()
    assert not OutboxMessage.select().where(OutboxMessage.text_body.contains("Forecast for the period")).exists()


def test_a_forecast_older_than_the_spend_is_not_shown(org):
    with time_machine.travel(datetime(2026, 12, 10, 12, 0, tzinfo=timezone.utc), tick=False):
        budget = _budget(org, amount_usd="100", thresholds="")
        ingest.ingest(org, None, [_event("a", tokens=400_000, at=datetime(2026, 12, 10, 9))])  # $1
        st = budgets.refresh_forecast(budget)
        assert st.forecast is not None and st.forecast >= st.spend
        ingest.ingest(org, None, [_event("b", tokens=20_000_000, at=datetime(2026, 12, 10, 11))])  # $50 more
        assert budgets.status(budget).forecast is None  # stale until the next refresh
        assert budgets.refresh_forecast(budget).forecast >= budgets.status(budget).spend


def test_budgets_deleted_during_concurrent_ingest_never_fail_a_batch(app, make_user, make_org, backend):
    """A batch that read the budgets before one was deleted must not write a
    counter for it afterwards (on PostgreSQL, a foreign-key error that failed
    the whole batch): deletion waits for the batches in flight."""
    with app.app_context(), db.connection_context():
        org = make_org("Acme", owner=make_user("owner@acme.com"))
    errors, done = [], threading.Event()

    def ingester(n):
        try:
            with app.app_context(), db.connection_context():
                for i in range(20):
                    ingest.ingest(org, None, [_event(f"{n}-{i}-{j}", tokens=1000 + j) for j in range(5)])
        except Exception as exc:  # reported below
            errors.append(exc)

    def admin():
        try:
            with app.app_context(), db.connection_context():
                i = 0
                while not done.is_set():
                    budget = budgets.create(org, SYSTEM, {"name": f"b{i}", "amount_usd": "100"})
                    budgets.delete(budget, SYSTEM)
                    i += 1
        except Exception as exc:  # reported below
            errors.append(exc)

    ingesters = [threading.Thread(target=ingester, args=(n,)) for n in range(3)]
    deleting = threading.Thread(target=admin)
    for t in [*ingesters, deleting]:
        t.start()
    for t in ingesters:
        t.join()
    done.set()
    deleting.join()
    assert errors == []
    with app.app_context(), db.connection_context():
        assert UsageEvent.select().where(UsageEvent.organization == org.id).count() == 3 * 20 * 5
        assert Budget.select().where(Budget.organization == org.id).count() == 0
        assert BudgetSpend.select().count() == 0


def test_ingest_checks_thresholds_only_for_counters_that_may_have_crossed_one(org):
    """The counter upsert returns each counter's new spend: one still under the
    budget's lowest threshold of its base amount is not checked, and one at or
    past it is — with the raise in the limit, as the check computes it."""
    low = _budget(org, name="Low", amount_usd="10", thresholds="50, 100")
    high = _budget(org, name="High", amount_usd="10", thresholds="90")
    budgets.raise_temporarily(high, SYSTEM, "10", "launch")  # limit $20: 90% is $18
    period = {b.id: budget_periods.current_period(b, org.time_zone, NOW).start for b in (low, high)}

    def checked(event_id: str, tokens: int) -> set[int]:
        row = ingest.validate_event(_event(event_id, tokens=tokens), ingest._Context(
            now=clock.now(), departments={}, aliases={}, key_user="", key_department=None))
        row.update(organization=org.id, api_key=None, cost_nanos=tokens * 2500, priced_by="catalog",
                   received_at=clock.now())
        with db.atomic():
            return {budget_id for budget_id, start in budget_accounting.add_events(org.id, [row])
                    if start == period[budget_id]}

    assert checked("a", 1_000_000) == set()  # $2.50: under 50% of Low's $10 and 90% of High's $10
    assert checked("b", 2_000_000) == {low.id}  # $7.50: Low at 75% may cross 50; High's 90% of $10 not reached
    assert checked("c", 1_000_000) == {low.id, high.id}  # $10: High past 90% of its base: checked (20 is its limit)
    assert [(a.budget_id, a.threshold) for a in BudgetAlert.select()] == []  # nothing told yet (no check ran)
    budgets.check_thresholds(org, {(low.id, period[low.id]), (high.id, period[high.id])})
    assert sorted((a.budget.name, a.threshold) for a in BudgetAlert.select()) == [("Low", 50), ("Low", 100)]

"""Calls that reach the database together are written together
(services/gateway/recording.py and admission.py, "group commit"): while one
thread holds the turn, the others queue; the next in turn writes all of them
in one transaction. The outcome must be what one call at a time gives:
admissions see the reservations of the calls before them, every recorded
call has its event, its log row and its reservation released, the counters
equal the events — and one call that cannot be written does not lose the
others."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from costguardian import clock
from costguardian.extensions import db
from costguardian.models import ApiKey, Budget, BudgetSpend, GatewayRequest, GatewayReservation, UsageEvent
from costguardian.services import keys
from costguardian.services.budgets import budgets
from costguardian.services.gateway import admission, recording
from costguardian.services.gateway.admission import Admission, Blocked, Call
from costguardian.services.gateway.recording import CallRecord
from tests.support import SYSTEM

PROMPT = [{"role": "user", "content": "Summarise the quarterly report in three bullet points."}]


def _call(org, key=None) -> Call:
    return Call(org=org, api_key=key, provider="openai", model="gpt-4o", user=None, department_id=None,
                body={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 1000})


def _hard_budget(org, amount_nanos: int) -> Budget:
    today = clock.today(org)
    return budgets.create(org, SYSTEM, {"name": "Hard", "amount_usd": budgets.usd(amount_nanos), "enforcement": "hard",
                                        "period": "custom", "custom_start": (today - timedelta(days=2)).isoformat(),
                                        "custom_end": (today + timedelta(days=2)).isoformat()})


def _queued_behind_the_turn(app, turn: threading.Lock, pending, count: int, work) -> list:
    """Run `work(n)` on `count` threads while the test holds `turn`; release
    it once all of them wait in `pending`. Returns their results (or errors)."""
    results: list = [None] * count

    def run(n):
        try:
            with app.app_context(), db.connection_context():
                results[n] = work(n)
        except Exception as exc:  # returned for the test to look at
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    with turn:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(pending()) < count:
            assert time.monotonic() < deadline, f"only {len(pending())} of {count} queued"
            time.sleep(0.005)
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.fixture
def org(app_ctx, make_user, make_org):
    return make_org("Acme", owner=make_user("owner@acme.com"))


def test_admissions_queued_together_each_see_the_ones_before_them(app, org):
    """Five calls wait for the turn against a hard budget with room for three:
    admitted together, three get a reservation and two are blocked — as one
    at a time."""
    est = admission.estimate(_call(org))
    budget = _hard_budget(org, 3 * est.cost_nanos + est.cost_nanos // 2)
    turns = app.extensions.setdefault("cg_gateway_admissions", admission._Turns())

    results = _queued_behind_the_turn(app, turns.turn, lambda: turns.pending, 5,
                                      lambda n: admission.admit(_call(org)))

    admitted = [r for r in results if isinstance(r, Admission)]
    assert len(admitted) == 3 and sum(isinstance(r, Blocked) for r in results) == 2, results
    assert all(a.id is not None for a in admitted) and len({a.id for a in admitted}) == 3
    held = GatewayReservation.select().where(GatewayReservation.budget == budget.id)
    assert held.count() == 3 and {r.amount_nanos for r in held} == {est.cost_nanos}
    assert "Blocked by the hard budget \"Hard\"" in str(next(r for r in results if isinstance(r, Blocked)))


def test_admissions_of_two_organizations_in_one_batch_keep_to_their_own_budgets(app, org, make_user, make_org):
    other = make_org("Globex", owner=make_user("owner@globex.com"))
    est = admission.estimate(_call(org))
    _hard_budget(org, est.cost_nanos + est.cost_nanos // 2)  # room for one
    _hard_budget(other, 10 * est.cost_nanos)  # room for all
    turns = app.extensions.setdefault("cg_gateway_admissions", admission._Turns())

    results = _queued_behind_the_turn(app, turns.turn, lambda: turns.pending, 6,
                                      lambda n: admission.admit(_call(org if n % 2 else other)))

    ours, theirs = results[1::2], results[0::2]
    assert sum(isinstance(r, Admission) for r in ours) == 1 and sum(isinstance(r, Blocked) for r in ours) == 2
    assert all(isinstance(r, Admission) for r in theirs)
    assert GatewayReservation.select().where(GatewayReservation.organization == other.id).count() == 3


def _record(org, key, n: int) -> CallRecord:
    return CallRecord(request_id=f"gw_group_{n}", org=org, api_key=key, endpoint="chat.completions",
                      started_at=clock.now(), requested_model="gpt-4o", provider="openai", model="gpt-4o",
                      forwarded=True, usage={"prompt_tokens": 1000 + n, "completion_tokens": 100 * (n + 1)},
                      latency_ms=5 + n)


def test_calls_finishing_together_are_recorded_and_released_together(app, org):
    key = keys.create_key(org, SYSTEM, "gateway", ["gateway"]).key
    est = admission.estimate(_call(org, key))
    budget = _hard_budget(org, 100 * est.cost_nanos)
    granted = [admission.admit(_call(org, key)) for _ in range(4)]
    assert GatewayReservation.select().count() == 4
    recorder = recording._recorder()

    statuses = _queued_behind_the_turn(app, recorder.turn, lambda: recorder.pending, 4,
                                       lambda n: recording.record(_record(org, key, n), granted[n]))

    assert statuses == ["accepted"] * 4
    events = UsageEvent.select().where(UsageEvent.organization == org.id)
    assert len({e.received_at for e in events}) == 1  # priced as one batch (alone, each has its own instant)
    assert sorted(e.event_id for e in events) == [f"gw_group_{n}" for n in range(4)]
    assert sorted(e.output_tokens for e in events) == [100, 200, 300, 400]
    assert GatewayRequest.select().where(GatewayRequest.organization == org.id).count() == 4
    assert GatewayReservation.select().count() == 0  # released in the same transaction
    spend = BudgetSpend.select().where(BudgetSpend.budget == budget.id).get()
    assert (spend.spend_nanos, spend.requests) == (sum(e.cost_nanos for e in events), 4)


def test_a_call_that_cannot_be_written_does_not_lose_the_others(app, org, caplog):
    """One call of the batch names an API key that no longer exists: the
    batch's transaction fails, and every call is written again alone — the
    others are recorded and released, that one is logged."""
    key = keys.create_key(org, SYSTEM, "gateway", ["gateway"]).key
    gone = ApiKey(id=key.id + 1000, organization=org, name="gone", user=None, department=None)
    _hard_budget(org, 100 * admission.estimate(_call(org, key)).cost_nanos)
    granted = [admission.admit(_call(org, key)) for _ in range(3)]
    recorder = recording._recorder()

    def work(n):
        return recording.record(_record(org, gone if n == 1 else key, n), granted[n])

    statuses = _queued_behind_the_turn(app, recorder.turn, lambda: recorder.pending, 3, work)

    assert statuses[0] == statuses[2] == "accepted" and statuses[1] != "accepted"
    assert sorted(e.event_id for e in UsageEvent.select()) == ["gw_group_0", "gw_group_2"]
    assert GatewayRequest.select().count() == 2
    assert GatewayReservation.select().count() == 0  # the failed call's reservation is released too
    assert "recording 3 gateway calls together failed" in caplog.text
    assert "recording gateway request gw_group_1 failed" in caplog.text


def test_calls_of_two_organizations_finishing_together_each_count_in_their_own(app, org, make_user, make_org):
    other = make_org("Globex", owner=make_user("owner@globex.com"))
    ours, theirs = (keys.create_key(o, SYSTEM, "gateway", ["gateway"]).key for o in (org, other))
    est = admission.estimate(_call(org, ours))
    budgets_ = {o.id: _hard_budget(o, 100 * est.cost_nanos) for o in (org, other)}
    granted = [admission.admit(_call(org if n % 2 else other, ours if n % 2 else theirs)) for n in range(6)]
    recorder = recording._recorder()

    def work(n):
        return recording.record(_record(org if n % 2 else other, ours if n % 2 else theirs, n), granted[n])

    statuses = _queued_behind_the_turn(app, recorder.turn, lambda: recorder.pending, 6, work)

    assert statuses == ["accepted"] * 6
    assert GatewayReservation.select().count() == 0
    for o in (org, other):
        events = list(UsageEvent.select().where(UsageEvent.organization == o.id))
        assert len(events) == 3 and {e.api_key_id for e in events} == {(ours if o is org else theirs).id}
        spend = BudgetSpend.select().where(BudgetSpend.budget == budgets_[o.id].id).get()
        assert (spend.spend_nanos, spend.requests) == (sum(e.cost_nanos for e in events), 3)
        assert GatewayRequest.select().where(GatewayRequest.organization == o.id).count() == 3

"""Budget leases (services/gateway/leases.py): far from a hard budget's
limit a process reserves a slice of its room once and admits its next calls
against it in memory; each call's recording lowers the lease by the call's
cost; a lease retires (giving back what it holds unused) when its time is
up, when the budgets change, when a call does not fit, or when its process
stops. Near the limit every call holds a reservation of its own. Whatever
the path, the database holds every in-flight call's estimate: the budget
holds across processes, nothing stays held, and no call is refused for money
a lease holds unused."""
from __future__ import annotations

import json
import logging
import subprocess
import time
from datetime import timedelta

import pytest
import time_machine

from costguardian import clock, settings_cache
from costguardian.extensions import db
from costguardian.models import ApiKey, Budget, BudgetSpend, GatewayReservation, UsageEvent
from costguardian.services import keys
from costguardian.services.budgets import budgets
from costguardian.services.gateway import admission, leases, recording, tokens
from costguardian.services.gateway.admission import Blocked, Call
from costguardian.services.gateway.recording import CallRecord
from tests.support import SYSTEM, python_command
from tests.test_gateway_admission import _brute_force
from tests.test_gateway_group_commit import _queued_behind_the_turn

pytestmark = pytest.mark.dated  # periods and expiry: runs again at CI's chosen instants (.ci/run)

PROMPT = [{"role": "user", "content": "Summarise the quarterly report in three bullet points."}]


def _call(org, max_tokens: int = 1000, key=None) -> Call:
    return Call(org=org, api_key=key, provider="openai", model="gpt-4o", user=None, department_id=None,
                body={"model": "gpt-4o", "messages": PROMPT, "max_tokens": max_tokens})


def _admit(org, call: Call) -> admission.Admission:
    """As the gateway's view admits: inside the organization's settings pin."""
    with settings_cache.pinned(org.id):
        return admission.admit(call)


def _custom(org) -> dict:
    today = clock.today(org)
    return {"period": "custom", "custom_start": (today - timedelta(days=2)).isoformat(),
            "custom_end": (today + timedelta(days=2)).isoformat()}


def _hard(org, amount_nanos: int, **fields) -> Budget:
    return budgets.create(org, SYSTEM, {"name": "Hard", "amount_usd": budgets.usd(amount_nanos),
                                        "enforcement": "hard", **(fields or _custom(org))})


def _record(org, granted: admission.Admission, output_tokens: int, n: int, key=None) -> str:
    """The gateway's recording of a finished call (its usage event, its log row, its holds released)."""
    return recording.record(CallRecord(
        request_id=f"gw_lease_{n}", org=org, api_key=key, endpoint="chat", started_at=clock.now(),
        requested_model="gpt-4o", provider="openai", model="gpt-4o", forwarded=True,
        usage={"prompt_tokens": granted.input_tokens_estimate, "completion_tokens": output_tokens,
               "total_tokens": granted.input_tokens_estimate + output_tokens}), granted)


def _row(lease: leases.Lease) -> GatewayReservation | None:
    return GatewayReservation.get_or_none(GatewayReservation.id == lease.row_id)


def _until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.02)


def _a_lease_and_a_call_too_big_for_it(org) -> tuple[leases.Lease, int, Call]:
    """A budget of 10,000 small calls, a lease taken by one of them (200 s,
    199 s of it unused), and a big call the budget has room for only if the
    lease's unused part is not counted as held: 9,800 s < its cost ≤ 9,999 s.
    Returns (the lease, s, the big call)."""
    small = _call(org, max_tokens=10)
    s = admission.estimate(small).cost_nanos
    out = admission.estimate(_call(org, max_tokens=11)).cost_nanos - s  # one more output token
    _hard(org, 10_000 * s)
    [lease] = _admit(org, small).leases
    assert lease.granted == 200 * s and lease.free() == 199 * s
    big = _call(org, max_tokens=10 + (9_900 * s - s) // out)
    assert 9_800 * s < admission.estimate(big).cost_nanos <= 9_999 * s
    return lease, s, big


@pytest.fixture(autouse=True)
def _tokenizer_loaded():
    """The calls' estimates counted by tiktoken from the first (a process's first calls are estimated by
    bytes while it loads in the background): the tests compare estimates made at different times."""
    tokens.encoding(tokens.encoding_name("gpt-4o"))


@pytest.fixture
def org(app_ctx, make_user, make_org):
    return make_org("Acme", owner=make_user("owner@acme.com"))


def test_far_from_the_limit_one_lease_admits_many_calls_and_their_costs_lower_it(org, app, caplog):
    call = _call(org)
    est = admission.estimate(call).cost_nanos
    budget = _hard(org, 10_000 * est)
    first = _admit(org, call)
    [row] = GatewayReservation.select()
    assert first.id is None and [lease.row_id for lease in first.leases] == [row.id]
    # 1/50 of the room (200 calls), fewer than LEASE_CALLS estimates
    assert row.admission is None and row.amount_nanos == 10_000 * est // leases.ROOM_SHARE == 200 * est
    [lease] = first.leases

    caplog.set_level(logging.DEBUG, logger="peewee")
    caplog.clear()
    more = [_admit(org, call) for _ in range(9)]
    written = [r.getMessage() for r in caplog.records if r.name == "peewee"
               and any(verb in r.getMessage().upper() for verb in ("INSERT", "UPDATE", "DELETE", "BEGIN"))]
    assert written == []  # admitted in memory: not one write
    caplog.set_level(logging.WARNING, logger="peewee")
    assert all(granted.leases == (lease,) and granted.id is None for granted in more)
    assert lease.in_flight == 10 * est and GatewayReservation.select().count() == 1

    statuses = [_record(org, granted, 100 * (n + 1), n) for n, granted in enumerate([first, *more])]
    assert statuses == ["accepted"] * 10
    costs = sum(e.cost_nanos for e in UsageEvent.select())
    assert 0 < costs < 10 * est
    assert (lease.in_flight, lease.settled) == (0, costs)
    assert _row(lease).amount_nanos == 200 * est - costs  # lowered by what the calls cost, now in spend
    status = budgets.status(Budget.get_by_id(budget.id))
    assert (status.spend, status.requests) == _brute_force(budget) == (costs, 10)

    leases.registry(app).stop()  # the process stops (or the lease's time is up): the rest goes back
    assert GatewayReservation.select().count() == 0


def test_near_the_limit_each_call_holds_a_reservation_of_its_own(org, app):
    call = _call(org)
    est = admission.estimate(call).cost_nanos
    _hard(org, 99 * est)  # room for 99 calls: fewer than MIN_ROOM_CALLS
    granted = [_admit(org, call) for _ in range(3)]
    assert all(g.leases == () and g.id is not None for g in granted)
    assert sorted(r.amount_nanos for r in GatewayReservation.select()) == [est] * 3
    assert leases.registry(app).current == {}


def test_no_leases_when_switched_off(org, app, monkeypatch):
    monkeypatch.setitem(app.config, "CG_GATEWAY_LEASE_SECONDS", 0)
    call = _call(org)
    _hard(org, 10_000 * admission.estimate(call).cost_nanos)
    granted = [_admit(org, call) for _ in range(2)]
    assert all(g.leases == () and g.id is not None for g in granted)
    assert GatewayReservation.select().count() == 2


def test_a_call_that_does_not_fit_its_lease_gets_the_unused_part_back_first(org, app):
    """The lease's unused money is given back in the transaction that admits
    the bigger call, before the check: counted as held it would refuse a
    call the budget has room for."""
    lease, s, big = _a_lease_and_a_call_too_big_for_it(org)
    granted = _admit(org, big)
    assert granted.leases == () and granted.id is not None  # too big for a lease: a reservation of its own
    assert lease.retired and lease.returned == 199 * s
    assert _row(lease).amount_nanos == s  # what its call in flight holds, nothing more
    with pytest.raises(Blocked):  # and now the budget is full
        _admit(org, big)


def test_a_lowered_budget_holds_at_once_for_the_next_call(org, app):
    call = _call(org)
    est = admission.estimate(call).cost_nanos
    budget = _hard(org, 10_000 * est)
    [lease] = _admit(org, call).leases
    budgets.update(Budget.get_by_id(budget.id), SYSTEM, {"name": "Hard", "amount_usd": budgets.usd(5 * est),
                                                        "enforcement": "hard", **_custom(org)})
    admitted = [_admit(org, call) for _ in range(4)]  # the lease's call in flight + 4 = 5 calls
    assert all(g.leases == () and g.id is not None for g in admitted)
    assert lease.retired and _row(lease).amount_nanos == est
    with pytest.raises(Blocked):
        _admit(org, call)


def test_a_call_pinned_before_an_edit_neither_takes_the_newer_lease_nor_gets_one(org, app):
    call = _call(org)
    est = admission.estimate(call).cost_nanos
    budget = _hard(org, 10_000 * est)
    before = settings_cache.version(org.id)
    budgets.update(Budget.get_by_id(budget.id), SYSTEM, {"name": "Hard", "amount_usd": budgets.usd(20_000 * est),
                                                        "enforcement": "hard", **_custom(org)})
    [lease] = _admit(org, call).leases  # a call pinned now: a lease by the new version
    with settings_cache.pinned(org.id, before):  # a call that read the settings before the edit
        stale = admission.admit(call)
    assert stale.leases == () and stale.id is not None  # held by a reservation of its own
    # Its admission wrote, so the process's lease gave back its unused part before the check.
    assert lease.retired and _row(lease).amount_nanos == lease.in_flight
    [fresh] = _admit(org, call).leases  # the next current call: a new lease
    assert fresh is not lease and fresh.version == settings_cache.version(org.id) != before


def test_a_quiet_process_gives_its_lease_back_on_time(org, app, monkeypatch):
    monkeypatch.setitem(app.config, "CG_GATEWAY_LEASE_SECONDS", 0.2)
    call = _call(org)
    est = admission.estimate(call).cost_nanos
    _hard(org, 10_000 * est)
    first, second = _admit(org, call), _admit(org, call)
    [lease] = first.leases
    assert second.leases == (lease,)
    _record(org, first, 500, 1)
    # The keeper retires it once its time is up: its unused part goes back, the call in flight stays held.
    _until(lambda: _row(lease) is not None and _row(lease).amount_nanos == est)
    assert lease.retired
    _record(org, second, 500, 2)
    _until(lambda: GatewayReservation.select().count() == 0)  # none of its calls in flight: the row goes
    assert leases.registry(app).idle()
    spend = BudgetSpend.select().get()
    assert (spend.spend_nanos, spend.requests) == (sum(e.cost_nanos for e in UsageEvent.select()), 2)


def test_a_new_period_gets_a_lease_of_its_own(org, app, monkeypatch):
    """LiteLLM #29576: a period reset must not inherit the old period's holds."""
    call = _call(org)
    est = admission.estimate(call).cost_nanos
    budget = _hard(org, 10_000 * est, period="daily")
    [old] = _admit(org, call).leases
    ends = budgets.status(budget).period.end
    with time_machine.travel(ends.replace(tzinfo=clock.zone("UTC")) + timedelta(seconds=1), tick=False):
        [new] = _admit(org, call).leases
        assert new is not old and new.key == (budget.id, ends) and old.key[1] < ends
        assert admission._held([new.key], clock.now()) == {new.key: new.granted}  # yesterday's lease not counted
        assert new.granted == 10_000 * est // leases.ROOM_SHARE  # the whole new day's room, not what yesterday left
    leases.registry(app).stop()  # both calls still in flight: each lease keeps just its call's estimate
    assert sorted((r.period_start, r.amount_nanos) for r in GatewayReservation.select()) == [
        (old.key[1], est), (ends, est)]


def test_a_crashed_process_leaves_its_lease_held_until_it_expires(org, app):
    call = _call(org)
    est = admission.estimate(call).cost_nanos
    budget = _hard(org, 10_000 * est)
    [lease] = _admit(org, call).leases
    key = lease.key
    leases.registry(app).stop(write=False)  # the process died: nothing given back
    assert admission._held([key], clock.now()) == {key: 200 * est}
    ttl = app.config["CG_GATEWAY_RESERVATION_TTL"]
    with time_machine.travel(clock.now_aware() + timedelta(seconds=ttl + 1), tick=False):
        assert admission._held([key], clock.now()) == {}  # expired: no longer counted
        assert admission.sweep_expired() == 1
        assert budgets.status(Budget.get_by_id(budget.id)).spend == 0


def test_a_leased_call_whose_batch_fails_is_recorded_alone_and_its_lease_stays_true(app, org, caplog):
    key = keys.create_key(org, SYSTEM, "gateway", ["gateway"]).key
    gone = ApiKey(id=key.id + 1000, organization=org, name="gone", user=None, department=None)
    est = admission.estimate(_call(org, key=key)).cost_nanos
    budget = _hard(org, 10_000 * est)
    granted = [_admit(org, _call(org, key=key)) for _ in range(3)]
    [lease] = granted[0].leases
    recorder = recording._recorder()

    statuses = _queued_behind_the_turn(app, recorder.turn, lambda: recorder.pending, 3,
                                       lambda n: _record(org, granted[n], 300, n, key=gone if n == 1 else key))

    assert statuses[0] == statuses[2] == "accepted" and statuses[1] != "accepted"
    assert "recording 3 gateway calls together failed" in caplog.text
    recorded = sum(e.cost_nanos for e in UsageEvent.select())
    assert lease.in_flight == 0 and lease.settled >= recorded  # never less than what reached the counters
    assert _row(lease).amount_nanos == lease.granted - lease.settled  # the row and the memory agree
    status = budgets.status(Budget.get_by_id(budget.id))
    assert (status.spend, status.requests) == _brute_force(budget) == (recorded, 2)


def test_two_processes_with_leases_keep_the_budget_and_give_everything_back(app, make_user, make_org):
    """Two processes of eight threads, each call admitted (leases while the
    room is large, then reservations of their own), recorded and settled,
    until the budget refuses: it is never exceeded, the counters equal the
    events, and once the processes exit nothing is held — the next call is
    refused only if the budget has no room for it."""
    with app.app_context(), db.connection_context():
        org = make_org("Acme", owner=make_user("owner@acme.com"))
        est = admission.estimate(_call(org)).cost_nanos
        limit = 250 * est
        budget = _hard(org, limit)
    workers = [subprocess.Popen(python_command(["-m", "tests.lease_worker", str(org.id), "8", "40", str(seed)]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    outcomes = []
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err[-3000:]
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    assert [o["errors"] for o in outcomes] == [[], []]
    admitted = sum(o["lease"] + o["reservation"] for o in outcomes)
    assert all(o["lease"] > 0 for o in outcomes)  # both processes held leases
    assert sum(o["reservation"] for o in outcomes) > 0 and sum(o["blocked"] for o in outcomes) > 0
    with app.app_context(), db.connection_context():
        status = budgets.status(Budget.get_by_id(budget.id))
        assert (status.spend, status.requests) == _brute_force(budget)
        assert status.requests == admitted
        assert status.spend <= limit  # every call cost at most its estimate
        assert GatewayReservation.select().count() == 0  # the processes gave their leases back when they exited
        call = _call(org)
        if limit - status.spend >= est:
            admission.settle(admission.admit(call))
        else:
            with pytest.raises(Blocked):
                admission.admit(call)


def test_a_call_recorded_twice_lowers_its_lease_row_and_memory_alike(org, app):
    """The second recording of a call finds its event stored already: the
    counters count it once, and whatever the lease was lowered by, its row
    and the process's memory of it agree (never a row lower than memory)."""
    call = _call(org)
    est = admission.estimate(call).cost_nanos
    budget = _hard(org, 10_000 * est)
    first, again = _admit(org, call), _admit(org, call)
    [lease] = first.leases
    assert _record(org, first, 400, 1) == "accepted"
    assert _record(org, again, 400, 1) == "duplicate"  # the same request id
    assert lease.in_flight == 0
    assert _row(lease).amount_nanos == lease.granted - lease.settled - lease.returned
    status = budgets.status(Budget.get_by_id(budget.id))
    assert (status.spend, status.requests) == _brute_force(budget) == (UsageEvent.get().cost_nanos, 1)


def test_a_call_without_a_pin_gets_the_processes_unused_lease_back_first(org, app):
    """In-app callers (the chat, the onboarding's first call) admit without a
    settings pin and cannot use leases: the process's unused lease must not
    count against them either."""
    lease, s, big = _a_lease_and_a_call_too_big_for_it(org)
    granted = admission.admit(big)  # no pin
    assert granted.id is not None and lease.retired and _row(lease).amount_nanos == s


def test_an_admission_waits_for_a_give_back_another_thread_has_planned(org, app):
    """The keeper plans a give-back, then writes it: an admission in between
    would read the row before it is lowered and count its unused part as
    held. It waits instead, and then sees the row lowered."""
    import threading

    lease, s, big = _a_lease_and_a_call_too_big_for_it(org)
    registry = leases.registry(app)
    result = []

    def admit_big():
        with app.app_context(), db.connection_context():
            try:
                result.append(_admit(org, big))
            except Exception as exc:  # looked at below
                result.append(exc)

    with registry.writing:  # the keeper's turn: it has retired the lease and planned its give-back
        registry.retire_all()
        give, drop = registry.plan()
        assert [(g.row_id, amount) for g, amount in give] == [(lease.row_id, 199 * s)]
        waiting = threading.Thread(target=admit_big)
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive() and result == []  # the admission waits for the give-back
        with db.atomic():
            leases.write_planned(give, drop)
        registry.done(give, drop, True)
    waiting.join(timeout=30)
    [granted] = result
    assert isinstance(granted, admission.Admission) and granted.id is not None
    assert _row(lease).amount_nanos == s

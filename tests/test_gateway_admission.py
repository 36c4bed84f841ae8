"""Gateway budget admission (services.gateway.admission): hard budgets hold
under concurrency on both databases, reservations expire and belong to one
period, soft budgets never block, a refusal names the budget and tells its
people once per period, the database being down fails closed."""
from __future__ import annotations

import random
import socket
import threading
import time
from datetime import timedelta

import pytest
import time_machine

from costguardian import clock
from costguardian.extensions import db
from costguardian.models import Budget, BudgetAlert, GatewayReservation, Notification, UsageEvent, User
from costguardian.services.budgets import accounting as budget_accounting, budgets, periods as budget_periods
from costguardian.services.gateway import admission, tokens
from costguardian.services.gateway.admission import Admission, Blocked, Call, Unavailable
from costguardian.services.usage import ingest
from tests.support import SYSTEM, add_member

pytestmark = pytest.mark.dated  # periods, resets and expiry: runs again at CI's chosen instants (.ci/run)

PROMPT = "Summarise the quarterly report in three bullet points."


def _call(org, *, model="gpt-4o", provider="openai", max_tokens=1000, user=None, tags=(), **body) -> Call:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], **body}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return Call(org=org, api_key=None, provider=provider, model=model, user=user, department_id=None,
                tags=list(tags), body=body)


def _record(org, call: Call, granted: Admission, output_tokens: int, event_id: str):
    """What the proxy does after the call: record its usage event through ingest."""
    result = ingest.ingest(org, None, [{
        "event_id": event_id, "provider": call.provider, "model": call.model,
        "input_tokens": granted.input_tokens_estimate, "output_tokens": output_tokens,
        "occurred_at": clock.now().isoformat() + "Z", **({"user": call.user} if call.user else {}),
        **({"tags": call.tags} if call.tags else {})}])
    assert result.results[0].status in ("accepted", "duplicate"), result.as_json()
    return result.results[0]


def _brute_force(budget: Budget) -> tuple[int, int]:
    """The budget's current-period spend straight from the raw events."""
    budget = Budget.get_by_id(budget.id)
    period = budget_periods.current_period(budget, budget.organization.time_zone, clock.now())
    scope = budget_accounting.Scope.of(budget)
    spend = requests = 0
    for e in UsageEvent.select().where(UsageEvent.organization == budget.organization_id,
                                       UsageEvent.occurred_at >= period.start, UsageEvent.occurred_at < period.end):
        if scope.matches(budget_accounting.event_row(e)):
            spend += e.cost_nanos or 0
            requests += 1
    return spend, requests


def _usd(nanos: int) -> str:
    return budgets.usd(nanos)


def _custom_around_now(org, days=2) -> dict:
    """A custom period around now: moving the clock minutes or hours never leaves it."""
    today = clock.today(org)
    return {"period": "custom", "custom_start": (today - timedelta(days=days)).isoformat(),
            "custom_end": (today + timedelta(days=days)).isoformat()}


@pytest.fixture
def org(app_ctx, make_user, make_org):
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    add_member(org, make_user("billing@acme.com"), "billing")
    return org


# --- the estimate -----------------------------------------------------------------------------------

def test_openai_prompts_are_counted_with_tiktoken_offline(org, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tiktoken tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(tokens, "_encodings", {})  # load again, now
    enc = tokens.encoding("o200k_base")
    assert enc is not None, "the o200k_base encoding must load from the bundled file, without the network"
    assert enc.encode_ordinary("hello world") == [24912, 2375]  # tiktoken's published o200k_base ids
    assert tokens.encoding("cl100k_base").encode_ordinary("hello world") == [15339, 1917]
    call = _call(org, max_tokens=500)
    est = admission.estimate(call)
    counted = len(enc.encode_ordinary(PROMPT))
    assert counted < est.input_tokens < counted + 30  # the prompt, its JSON keys, the message overhead
    assert est.max_output_tokens == 500 and est.priced
    # gpt-4o: $2.50 per million input tokens, $10 per million output tokens
    assert est.cost_nanos == est.input_tokens * 2_500 + 500 * 10_000


def test_the_bundled_encoding_files_are_checked_against_tiktokens_hashes():
    with pytest.raises(ValueError, match="SHA-256"):
        tokens._bundled_ranks("o200k_base")("https://openaipublic.blob.core.windows.net/…", expected_hash="0" * 64)


def test_other_providers_are_estimated_by_bytes_and_media_by_a_fixed_amount(org):
    text = "Ünïcödé " * 30  # 8 characters, 12 bytes each repetition
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "system": "Be brief.",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": text},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 90_000}}]}]}
    count = tokens.input_tokens("anthropic", "claude-sonnet-4-5", body)
    assert count >= -(-len(text.encode()) // 3) + tokens.IMAGE_TOKENS
    assert count < 360 // 3 + tokens.IMAGE_TOKENS + 100  # the image's base64 is not counted as text


def test_output_cap_comes_from_the_request_or_the_setting(org, app):
    assert admission.estimate(_call(org, max_tokens=None, max_completion_tokens=321)).max_output_tokens == 321
    assert admission.estimate(_call(org, max_tokens=None, max_output_tokens=77)).max_output_tokens == 77
    default = admission.estimate(_call(org, max_tokens=None))
    assert default.max_output_tokens == app.config["CG_GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS"] == 4096
    two = admission.estimate(_call(org, max_tokens=100, n=2))
    one = admission.estimate(_call(org, max_tokens=100))
    assert two.cost_nanos - one.cost_nanos == 100 * 10_000  # every choice's output is billed


def test_an_unpriced_model_reserves_nothing(org):
    budgets.create(org, SYSTEM, {"name": "Tight", "amount_usd": "0.000001", "enforcement": "hard"})
    granted = admission.admit(_call(org, model="acme-rocket-9", provider="acme-ai"))
    assert granted.reserved_nanos == 0 and granted.id is None  # nothing held: its calls are recorded at $0
    assert GatewayReservation.select().count() == 0


# --- admission ---------------------------------------------------------------------------------------

def test_no_budget_and_soft_budgets_never_block_nor_reserve(org):
    assert admission.admit(_call(org)).id is None
    budgets.create(org, SYSTEM, {"name": "Soft", "amount_usd": "0.000001", "enforcement": "soft"})
    granted = admission.admit(_call(org))
    assert granted.id is None and granted.reserved_nanos > 0
    assert GatewayReservation.select().count() == 0


def test_blocked_names_the_budget_its_reset_and_who_can_raise_it(org):
    owner = User.get(User.email == "owner@acme.com")
    budget = budgets.create(org, SYSTEM, {"name": "Eng monthly", "amount_usd": "0.001", "enforcement": "hard",
                                          "period": "monthly", "owner_id": owner.id})
    with pytest.raises(Blocked) as caught:
        admission.admit(_call(org))
    blocked = caught.value
    period = budgets.status(budget).period
    assert blocked.budget_name == "Eng monthly" and blocked.budget_id == budget.id
    assert blocked.resets_at == period.end  # naive UTC: the next period's start
    assert "Eng monthly" in blocked.message and "raise" in blocked.message
    assert "Olga Owner (the budget's owner) or an owner, admin or billing member" in blocked.message
    local_reset = period.end.replace(tzinfo=clock.zone("UTC")).astimezone(clock.zone(org))
    assert f"It resets at {local_reset:%Y-%m-%d %H:%M} {local_reset:%Z} ({org.time_zone})." in blocked.message
    assert GatewayReservation.select().count() == 0


def test_only_the_covering_budgets_count(org):
    budgets.create(org, SYSTEM, {"name": "Anthropic only", "amount_usd": "0.000001", "enforcement": "hard",
                                 "provider": "anthropic"})
    budgets.create(org, SYSTEM, {"name": "Team red", "amount_usd": "0.000001", "enforcement": "hard",
                                 "tag": "team:red"})
    assert admission.admit(_call(org)).id is None  # an OpenAI call without the tag
    with pytest.raises(Blocked) as caught:
        admission.admit(_call(org, tags=["team:red"]))
    assert caught.value.budget_name == "Team red"


def test_reservations_are_held_against_every_covering_hard_budget_and_raises_count(org):
    call = _call(org)
    est = admission.estimate(call)
    wide = budgets.create(org, SYSTEM, {"name": "Org", "amount_usd": _usd(10 * est.cost_nanos),
                                        "enforcement": "hard", **_custom_around_now(org)})
    narrow = budgets.create(org, SYSTEM, {"name": "GPT-4o", "amount_usd": _usd(2 * est.cost_nanos),
                                          "enforcement": "hard", "model": "gpt-4o", **_custom_around_now(org)})
    held = [admission.admit(call), admission.admit(call)]
    assert {r.budget_id for r in GatewayReservation.select()} == {wide.id, narrow.id}
    assert GatewayReservation.select().count() == 4
    with pytest.raises(Blocked) as caught:
        admission.admit(call)
    assert caught.value.budget_name == "GPT-4o"
    budgets.raise_temporarily(budgets.get(org, narrow.id), SYSTEM, _usd(est.cost_nanos))
    held.append(admission.admit(call))  # the raise is room
    for granted in held:
        admission.settle(granted)
    assert GatewayReservation.select().count() == 0


def test_settling_twice_and_recording_twice_count_once(org):
    """LiteLLM #35569: a retried settle or recording must not double-count."""
    call = _call(org)
    est = admission.estimate(call)
    budget = budgets.create(org, SYSTEM, {"name": "B", "amount_usd": _usd(3 * est.cost_nanos),
                                          "enforcement": "hard", **_custom_around_now(org)})
    granted = admission.admit(call)
    _record(org, call, granted, 1000, "req-1")
    _record(org, call, granted, 1000, "req-1")  # the proxy retried the recording: a duplicate
    admission.settle(granted)
    admission.settle(granted)
    assert GatewayReservation.select().count() == 0
    st = budgets.status(budget)
    assert (st.spend, st.requests) == _brute_force(budget) == (est.cost_nanos, 1)
    admission.settle(admission.admit(call))  # the room left is the limit minus one call
    admission.settle(admission.admit(call))
    _record(org, call, granted, 1000, "req-2")
    _record(org, call, granted, 1000, "req-3")
    with pytest.raises(Blocked):
        admission.admit(call)


def test_leaked_reservations_expire_and_are_swept(org, app):
    call = _call(org)
    est = admission.estimate(call)
    budgets.create(org, SYSTEM, {"name": "B", "amount_usd": _usd(2 * est.cost_nanos), "enforcement": "hard",
                                 **_custom_around_now(org)})
    admission.admit(call)
    admission.admit(call)  # two calls whose workers crashed: never settled
    with pytest.raises(Blocked):
        admission.admit(call)
    ttl = app.config["CG_GATEWAY_RESERVATION_TTL"]
    with time_machine.travel(clock.now_aware() + timedelta(seconds=ttl - 5), tick=False):
        with pytest.raises(Blocked):
            admission.admit(call)  # not yet expired
    with time_machine.travel(clock.now_aware() + timedelta(seconds=ttl + 1), tick=False):
        granted = admission.admit(call)  # the leaked ones stopped counting
        assert admission.sweep_expired() == 2
        assert [r.id for r in GatewayReservation.select()] == [granted.id]
        from tasks import sweep_gateway_reservations

        sweep_gateway_reservations.call_local()


def test_a_new_period_is_not_blocked_by_last_periods_reservations(org, app, monkeypatch):
    """LiteLLM #29576: a period reset must not inherit the old period's holds."""
    monkeypatch.setitem(app.config, "CG_GATEWAY_RESERVATION_TTL", 3 * 86400)  # still unexpired tomorrow
    call = _call(org)
    est = admission.estimate(call)
    budget = budgets.create(org, SYSTEM, {"name": "Daily", "amount_usd": _usd(est.cost_nanos),
                                          "enforcement": "hard", "period": "daily"})
    admission.admit(call)  # in flight (or leaked) at the day's end
    with pytest.raises(Blocked) as caught:
        admission.admit(call)
    reset = caught.value.resets_at
    assert reset == budgets.status(budget).period.end
    with time_machine.travel(reset.replace(tzinfo=clock.zone("UTC")) + timedelta(seconds=1), tick=False):
        granted = admission.admit(call)
        assert granted.id is not None
        assert GatewayReservation.select().count() == 2  # yesterday's is still there, not counted today


def test_the_blocked_notification_fires_once_per_period(org, app, monkeypatch):
    budget = budgets.create(org, SYSTEM, {"name": "Daily", "amount_usd": "0.000001", "enforcement": "hard",
                                          "period": "daily"})
    for _ in range(3):
        with pytest.raises(Blocked) as caught:
            admission.admit(_call(org))
    sent = list(Notification.select().where(Notification.event_type == "budget.blocked"))
    assert len({n.event_id for n in sent}) == 1
    assert {n.user.email for n in sent} == {"owner@acme.com"}  # the budget's recipients (owner, admin roles)
    assert "Daily" in sent[0].title
    assert BudgetAlert.select().where(BudgetAlert.budget == budget.id, BudgetAlert.kind == "blocked").count() == 1
    with time_machine.travel(caught.value.resets_at.replace(tzinfo=clock.zone("UTC")) + timedelta(seconds=1),
                             tick=False):
        with pytest.raises(Blocked):
            admission.admit(_call(org))
        events = {n.event_id for n in Notification.select().where(Notification.event_type == "budget.blocked")}
        assert len(events) == 2  # the next period's first refusal tells them again


def test_concurrent_refusals_send_one_notification(app, make_user, make_org):
    with app.app_context(), db.connection_context():
        org = make_org("Acme", owner=make_user("owner@acme.com"))
        budgets.create(org, SYSTEM, {"name": "Tiny", "amount_usd": "0.000001", "enforcement": "hard",
                                     **_custom_around_now(org)})
    results = _run_threads(app, 8, lambda n: _with_db(admission.admit, _call(org)))
    assert all(isinstance(r, Blocked) for r in results), results
    with app.app_context(), db.connection_context():
        assert len({n.event_id for n in Notification.select().where(Notification.event_type == "budget.blocked")}) == 1


# --- concurrency: the budget holds ------------------------------------------------------------------------

# Both databases' connection pools are smaller than 50 (16 on SQLite, 32 on
# PostgreSQL): like a gateway's workers, a call holds a connection while it
# talks to the database, not while it waits for the upstream.
_connections = threading.BoundedSemaphore(12)


def _with_db(fn, *args):
    with _connections, db.connection_context():
        return fn(*args)


def _run_threads(app, count: int, work) -> list:
    results: list = [None] * count
    start = threading.Barrier(count, timeout=60)

    def run(n):
        try:
            with app.app_context():
                start.wait()
                results[n] = work(n)
        except Exception as exc:  # returned for the test to look at
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


@pytest.mark.parametrize("actual", ["reserved", "realistic", "overrun"])
def test_fifty_concurrent_calls_never_spend_beyond_the_documented_bound(app, make_user, make_org, backend, actual):
    """50 threads admit → record the usage through ingest → settle against a
    hard budget with room for 10 calls at their estimate. The documented
    bound (docs/ARCHITECTURE.md "Gateway admission"): the final spend is at
    most the limit plus the excess (actual cost − reservation) of the calls
    in flight at the last admission — here checked against the excess of all
    admitted calls. "reserved": every call costs exactly its estimate;
    "realistic": less; "overrun": more (a model that wrote past the cap)."""
    with app.app_context(), db.connection_context():
        org = make_org("Acme", owner=make_user("owner@acme.com"))
        call = _call(org, max_tokens=2000)
        est = admission.estimate(call)
        limit = 10 * est.cost_nanos + est.cost_nanos // 2  # room for 10 calls, not 11
        budget = budgets.create(org, SYSTEM, {"name": "Hard", "amount_usd": _usd(limit), "enforcement": "hard",
                                              **_custom_around_now(org)})
        soft = budgets.create(org, SYSTEM, {"name": "Soft", "amount_usd": "0.000001", **_custom_around_now(org)})
    rng = random.Random(7)
    outputs = [{"reserved": 2000, "realistic": rng.randint(1, 2000), "overrun": 2000 + rng.randint(1, 1000)}[actual]
               for _ in range(50)]
    excess = [0] * 50

    def work(n):
        granted = _with_db(admission.admit, call)  # Blocked is returned as the result
        time.sleep(rng.random() / 100)  # the upstream answers
        with _connections, db.connection_context():  # the proxy's finish: record, then settle
            try:
                recorded = _record(org, call, granted, outputs[n], f"req-{n}")
                excess[n] = max(0, recorded.cost_nanos - granted.reserved_nanos)
                assert (excess[n] > 0) == (actual == "overrun")
                return granted
            finally:
                admission.settle(granted)

    results = _run_threads(app, 50, work)
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, Blocked)]
    assert unexpected == []
    admitted = [r for r in results if isinstance(r, Admission)]
    with app.app_context(), db.connection_context():
        st = budgets.status(Budget.get_by_id(budget.id))
        assert (st.spend, st.requests) == _brute_force(budget)
        assert st.requests == len(admitted) >= 1
        assert st.spend <= limit + sum(excess)
        if actual == "reserved":
            assert len(admitted) <= 10 and st.spend <= limit
        elif actual == "realistic":
            assert st.spend <= limit
        assert budgets.status(Budget.get_by_id(soft.id)).requests == len(admitted)  # soft: counted, never blocking
        assert GatewayReservation.select().count() == 0
        assert len(admitted) < 50
        assert BudgetAlert.select().where(BudgetAlert.kind == "blocked").count() == 1


def test_budgets_deleted_and_edited_while_calls_are_admitted(app, make_user, make_org):
    """Deleting a hard budget (its counters and reservations cascade) or
    editing it while calls are admitted: no call fails, nothing is left held."""
    with app.app_context(), db.connection_context():
        org = make_org("Acme", owner=make_user("owner@acme.com"))
        call = _call(org)
        kept = budgets.create(org, SYSTEM, {"name": "Kept", "amount_usd": "1000", "enforcement": "hard"})
        doomed = [budgets.create(org, SYSTEM, {"name": f"Doomed {i}", "amount_usd": "1000", "enforcement": "hard"})
                  for i in range(3)]

    def work(n):
        if n == 0:
            for budget in doomed:
                _with_db(budgets.delete, Budget.get_by_id(budget.id), SYSTEM)
            return "deleted"
        if n == 1:
            return _with_db(budgets.update, Budget.get_by_id(kept.id), SYSTEM,
                            {"name": "Kept", "amount_usd": "2000", "enforcement": "hard", "model": "gpt-4o"})
        results = []
        for _ in range(5):
            granted = _with_db(admission.admit, call)
            _with_db(admission.settle, granted)
            results.append(granted)
        return results

    results = _run_threads(app, 12, work)
    assert [r for r in results if isinstance(r, Exception)] == []
    with app.app_context(), db.connection_context():
        assert GatewayReservation.select().count() == 0
        assert Budget.select().count() == 1


# --- the database is down ---------------------------------------------------------------------------------

class _Unreachable:
    """Point the app's database at one that cannot be opened (a real failure
    to connect, not a mock), then back."""

    def __init__(self, tmp_path):
        from peewee import SqliteDatabase

        self.broken = SqliteDatabase(str(tmp_path / "missing-dir" / "db.sqlite"))

    def __enter__(self):
        self.previous = db.obj
        db.initialize(self.broken)

    def __exit__(self, *exc):
        db.initialize(self.previous)


def test_database_down_fails_closed_for_hard_budgets_and_open_otherwise(org, make_org, app, tmp_path, monkeypatch):
    budgets.create(org, SYSTEM, {"name": "Hard", "amount_usd": "100", "enforcement": "hard"})
    relaxed = make_org("Relaxed")
    budgets.create(relaxed, SYSTEM, {"name": "Soft", "amount_usd": "100"})
    admission.settle(admission.admit(_call(org)))
    admission.admit(_call(relaxed))
    unknown = make_org("Never seen")
    with _Unreachable(tmp_path):
        with pytest.raises(Unavailable) as caught:
            admission.admit(_call(org))
        assert "database" in caught.value.message and "CG_GATEWAY_FAIL_OPEN" in caught.value.message
        assert admission.admit(_call(relaxed)).id is None  # no hard budget: forwarded
        with pytest.raises(Unavailable):
            admission.admit(_call(unknown))  # nothing known about it: as if it had hard budgets
        monkeypatch.setitem(app.config, "CG_GATEWAY_FAIL_OPEN", True)
        assert admission.admit(_call(org)).id is None
        admission.settle(Admission(12345, 1, 1, 1))  # a settle that cannot reach the database does not raise

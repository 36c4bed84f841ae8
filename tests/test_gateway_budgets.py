"""Budgets through the gateway, as the official SDKs see them: a hard budget
without room answers 429 in each provider's shape, naming the budget, and
the SDKs are told not to retry; a call that is admitted settles its
reservation once its usage event is recorded."""
from __future__ import annotations

import anthropic
import openai
import pytest

from costguardian.models import BudgetSpend, GatewayReservation, UsageEvent
from costguardian.services.budgets import budgets
from tests.gateway_support import gateway, gateway_server  # noqa: F401  (fixtures)
from tests.support import SYSTEM

HELLO = [{"role": "user", "content": "Say hello."}]


def _hard_budget(org, amount_usd: str, **scope):
    return budgets.create(org, SYSTEM, {"name": "Search team cap", "amount_usd": amount_usd,
                                        "enforcement": "hard", **scope})


def test_a_hard_budget_without_room_is_a_429_in_openais_shape_naming_the_budget(gateway):
    _hard_budget(gateway.org, "0.000001")
    with pytest.raises(openai.RateLimitError) as caught:
        gateway.openai(max_retries=2).chat.completions.create(model="gpt-4o", messages=HELLO, max_tokens=100)
    error = caught.value.body
    assert "Search team cap" in error["message"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert caught.value.response.headers["x-cg-request-id"].startswith("gw_")
    assert gateway.upstream.requests == []
    [call] = gateway.calls(1)  # the SDK did not retry
    assert (call.status_code, call.outcome, call.forwarded) == (429, "blocked", False)
    assert "Search team cap" in call.error
    assert UsageEvent.select().count() == 0 and GatewayReservation.select().count() == 0


def test_a_hard_budget_without_room_is_a_429_in_anthropics_shape_naming_the_budget(gateway):
    _hard_budget(gateway.org, "0.000001")
    with pytest.raises(anthropic.RateLimitError) as caught:
        gateway.anthropic(max_retries=2).messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO)
    body = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "Search team cap" in body["error"]["message"] and body["request_id"].startswith("gw_")
    assert gateway.upstream.requests == []
    assert [c.outcome for c in gateway.calls(1)] == ["blocked"]


def test_an_admitted_call_is_recorded_then_settled(gateway):
    budget = _hard_budget(gateway.org, "2")  # room for fewer than 100 of these calls: a reservation per call
    with gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True) as stream:
        for _ in stream:
            pass
    gateway.anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=4000, messages=HELLO)
    events = gateway.events(2)
    assert GatewayReservation.select().count() == 0  # released once each call's event was in the counter
    [spend] = BudgetSpend.select().where(BudgetSpend.budget == budget.id)
    assert spend.spend_nanos == sum(e.cost_nanos for e in events) > 0 and spend.requests == 2


def test_calls_far_from_the_limit_are_held_by_a_lease_lowered_by_their_costs(gateway, app):
    from costguardian.services.gateway import leases

    budget = _hard_budget(gateway.org, "100")
    for _ in range(3):
        gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO)
    with gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True) as stream:
        for _ in stream:
            pass
    events = gateway.events(4)
    [lease] = GatewayReservation.select()  # one lease for the four calls: one write before the first
    assert lease.admission is None and lease.budget_id == budget.id
    [kept] = leases.registry(app).current.values()
    assert (kept.row_id, kept.in_flight) == (lease.id, 0)
    assert lease.amount_nanos == kept.granted - sum(e.cost_nanos for e in events) > 0
    assert kept.granted == 100 * 10**9 // leases.ROOM_SHARE  # 1/50 of the room ($2: fewer than 1000 estimates)
    [spend] = BudgetSpend.select().where(BudgetSpend.budget == budget.id)
    assert spend.spend_nanos == sum(e.cost_nanos for e in events) > 0 and spend.requests == 4
    leases.registry(app).stop()  # the process stops (or the lease's time is up): it gives the rest back
    assert GatewayReservation.select().count() == 0


def test_a_budget_scoped_to_a_tag_holds_only_calls_that_carry_it(gateway):
    _hard_budget(gateway.org, "0.000001", tag="feature:beta")
    gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, max_tokens=20)  # not covered
    with pytest.raises(openai.RateLimitError):
        gateway.openai(default_headers={"X-CG-Tags": "feature:beta"}).chat.completions.create(
            model="gpt-4o", messages=HELLO, max_tokens=20)
    assert [c.outcome for c in gateway.calls(2)] == ["ok", "blocked"]


def test_an_unreachable_budget_check_that_must_fail_closed_is_a_503(gateway, monkeypatch):
    from costguardian.services.gateway import admission

    def down(call):
        raise admission.Unavailable("The budget check is unavailable (the database cannot be reached); calls of "
                                    "organizations with hard budgets are refused until it is back.")

    monkeypatch.setattr(admission, "admit", down)
    with pytest.raises(anthropic.InternalServerError) as caught:
        gateway.anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 503 and "budget check is unavailable" in caught.value.body["error"]["message"]
    assert gateway.upstream.requests == []

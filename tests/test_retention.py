"""Retention of raw usage (services/ops/retention.py): the setting and its
plan cap, the nightly prune in batches (recorded like every periodic task),
totals that stay exact because rollups are kept, a reprice that leaves pruned
hours alone, ingest refusing events older than the kept window, and the
settings card and the explorer's note."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
import time_machine

import tasks
from costguardian.models import (AuditLog, BillingAccount, GatewayRequest, GatewayRequestBody, Organization, TaskRun,
                                 UsageEvent)
from costguardian.services.billing import plans
from costguardian.services.errors import ValidationError
from costguardian.services.ops import retention
from costguardian.services.usage import ingest, prices, queries
from costguardian.services.usage.queries import UsageFilter
from tests.support import SYSTEM

SEPTEMBER = datetime(2026, 9, 10, 12, 0)
NOW = datetime(2026, 12, 5, 12, 0)
SEPTEMBER_FILTER = UsageFilter(start=date(2026, 9, 1), end=date(2026, 9, 30))


def _events(org, when: datetime, count: int, prefix: str):
    result = ingest.ingest(org, None, [{"event_id": f"{prefix}{i}", "provider": "openai", "model": "gpt-4o-mini",
                                        "input_tokens": 1000 + i, "output_tokens": 100, "tags": ["team:a"],
                                        "occurred_at": when.isoformat() + "Z"} for i in range(count)], now=NOW)
    return result


def _request(org, when: datetime, request_id: str):
    GatewayRequest.create(organization=org, request_id=request_id, endpoint="chat.completions", started_at=when,
                          status_code=200, outcome="ok")
    GatewayRequestBody.create(organization=org, request_id=request_id, created_at=when)


@pytest.fixture
def history(make_org):
    """An organization with three September events and requests, two recent ones."""
    org = make_org("Acme", time_zone="UTC")
    with time_machine.travel(NOW.replace(tzinfo=timezone.utc), tick=False):
        assert [r.status for r in _events(org, SEPTEMBER, 3, "old").results] == ["accepted"] * 3
        assert [r.status for r in _events(org, NOW - timedelta(days=1), 2, "new").results] == ["accepted"] * 2
    for i, when in enumerate((SEPTEMBER, SEPTEMBER, NOW - timedelta(days=1))):
        _request(org, when, f"req-{i}")
    return org


def test_the_setting_is_empty_for_forever_or_a_bounded_number_of_days():
    assert retention.validated_days("") is None and retention.validated_days("0") is None
    assert retention.validated_days(" 45 ") == 45
    for bad in ("29", "3651", "a week", "1.5"):
        with pytest.raises(ValidationError) as caught:
            retention.validated_days(bad)
        assert "from 30 to 3650" in caught.value.errors["usage_event_retention_days"]


@time_machine.travel(NOW.replace(tzinfo=timezone.utc), tick=False)
def test_pruning_deletes_old_raw_rows_in_batches_and_the_totals_stay_exact(history):
    org = history
    before = queries.total(org, SEPTEMBER_FILTER)
    report = queries.explorer_report(org, SEPTEMBER_FILTER, "tag")
    assert before.requests == 3 and before.cost_nanos > 0
    retention.update_setting(org, SYSTEM, "30")
    tasks.prune_usage_events()  # immediate mode: runs through the real periodic wrapper

    assert sorted(e.event_id for e in UsageEvent.select()) == ["new0", "new1"]
    assert [r.request_id for r in GatewayRequest.select()] == ["req-2"]
    assert [b.request_id for b in GatewayRequestBody.select()] == ["req-2"]
    after = queries.total(org, SEPTEMBER_FILTER)
    assert (after.requests, after.cost_nanos, after.input_tokens) == (before.requests, before.cost_nanos,
                                                                      before.input_tokens)
    assert [(r.key, r.cost_nanos) for r in queries.explorer_report(org, SEPTEMBER_FILTER, "tag").rows] == \
        [(r.key, r.cost_nanos) for r in report.rows]
    run = TaskRun.get_by_id("prune_usage_events")
    assert (run.last_status, run.runs) == ("ok", 1)
    pruned = AuditLog.get(AuditLog.action == "org.usage_pruned")
    assert (pruned.detail["usage_events"], pruned.detail["gateway_requests"]) == (3, 2)
    assert retention.prune_all(batch=2) == {"usage_events": 0, "gateway_requests": 0}  # nothing more


@time_machine.travel(NOW.replace(tzinfo=timezone.utc), tick=False)
def test_small_batches_delete_everything_expired(history):
    org = history
    Organization.update(usage_event_retention_days=30).where(Organization.id == org.id).execute()
    assert retention.prune_all(batch=2) == {"usage_events": 3, "gateway_requests": 2}
    other = Organization.get_by_id(org.id)
    assert retention.prune_org(other, batch=2) == {"usage_events": 0, "gateway_requests": 0}


@time_machine.travel(NOW.replace(tzinfo=timezone.utc), tick=False)
def test_a_reprice_after_pruning_leaves_the_pruned_hours_as_they_were(history, app_ctx):
    org = history
    retention.update_setting(org, SYSTEM, "30")
    retention.prune_all()
    september = queries.total(org, SEPTEMBER_FILTER).cost_nanos
    recent = queries.total(org, UsageFilter(start=date(2026, 12, 1), end=date(2026, 12, 5))).cost_nanos

    prices.create_override(org, SYSTEM, provider="openai", model="gpt-4o-mini", effective_from=date(2026, 1, 1),
                           input_price="100", output_price="100")  # the reprice task runs inline

    assert queries.total(org, SEPTEMBER_FILTER).cost_nanos == september  # not zeroed, not changed
    assert queries.total(org, UsageFilter(start=date(2026, 12, 1), end=date(2026, 12, 5))).cost_nanos > recent


@time_machine.travel(NOW.replace(tzinfo=timezone.utc), tick=False)
def test_ingest_refuses_an_event_older_than_the_kept_window(make_org):
    org = make_org("Acme", time_zone="UTC")
    retention.update_setting(org, SYSTEM, "30")
    old = _events(org, NOW - timedelta(days=31), 1, "late").results[0]
    assert old.status == "rejected" and "older than this organization keeps" in old.errors["occurred_at"]
    assert _events(org, NOW - timedelta(days=29), 1, "fine").results[0].status == "accepted"


def test_with_billing_on_the_plan_caps_what_is_kept(make_org, app, monkeypatch):
    org = make_org("Acme")
    assert retention.effective_days(org) is None  # billing off: the organization's choice alone
    monkeypatch.setitem(app.config, "BILLING_ENABLED", True)
    assert retention.effective_days(org) == plans.free().retention_days
    retention.update_setting(org, SYSTEM, "3650")
    assert retention.effective_days(org) == plans.free().retention_days
    # A failed payment puts the organization on Free limits; its history is kept as its plan says.
    BillingAccount.create(organization=org, plan=plans.by_code("team"), status="unpaid", seats=5,
                          stripe_customer_id="cus_1", stripe_subscription_id="sub_1")
    assert retention.effective_days(org) == plans.by_code("team").retention_days
    retention.update_setting(org, SYSTEM, "90")
    assert retention.effective_days(org) == 90


# --- views ------------------------------------------------------------------------------

def test_owners_set_the_retention_in_settings(owner_client):
    client, _, org = owner_client
    refused = client.post("/settings/retention", {"usage_event_retention_days": "7"}, htmx=True)
    assert refused.status_code == 422 and "from 30 to 3650" in refused.get_data(as_text=True)

    saved = client.post("/settings/retention", {"usage_event_retention_days": "90"}, htmx=True)

    assert saved.status_code == 200 and "showToast" in saved.headers["HX-Trigger"]
    assert Organization.get_by_id(org.id).usage_event_retention_days == 90
    assert "Raw events older than 90 days are pruned" in client.get("/settings/").get_data(as_text=True)
    assert 'data-testid="requests-pruned"' in client.get("/gateway/requests").get_data(as_text=True)
    change = AuditLog.get(AuditLog.action == "org.updated")
    assert change.detail["changes"] == {"usage_event_retention": ["forever", "90 days"]}
    assert client.post("/settings/retention", {"usage_event_retention_days": ""}).status_code == 200
    assert Organization.get_by_id(org.id).usage_event_retention_days is None


def test_the_explorer_says_when_the_event_export_misses_pruned_events(owner_client):
    client, _, org = owner_client
    ingest.ingest(org, None, [{"event_id": "e1", "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10,
                               "output_tokens": 1}])
    assert 'data-testid="events-pruned"' not in client.get("/usage/?preset=last_90_days").get_data(as_text=True)
    retention.update_setting(org, SYSTEM, "30")
    assert 'data-testid="events-pruned"' not in client.get("/usage/?preset=last_7_days").get_data(as_text=True)
    assert 'data-testid="events-pruned"' in client.get("/usage/?preset=last_90_days").get_data(as_text=True)

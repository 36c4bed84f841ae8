"""The periodic budget check in batches (services/budgets/periodic.py):
every budget is checked exactly once per run, whatever the batch size."""
from __future__ import annotations

import pytest

from costguardian import clock
from costguardian.models import Budget, BudgetAlert, BudgetSpend
from costguardian.services.budgets import budgets, periodic
from costguardian.services.usage import ingest
from tests.observability_support import sample
from tests.support import SYSTEM


@pytest.fixture
def seven_budgets(app_ctx, make_user, make_org):
    made = []
    for name, count in (("Acme", 4), ("Globex", 3)):
        org = make_org(name, owner=make_user(f"owner@{name.lower()}.com"))
        ingest.ingest(org, None, [{"event_id": f"{name}-1", "provider": "openai", "model": "gpt-4o",
                                   "input_tokens": 1_000_000, "output_tokens": 0}])
        for i in range(count):
            made.append(budgets.create(org, SYSTEM, {"name": f"B{i}", "amount_usd": "1", "period": "monthly",
                                                     "notify_resolved": "on"}))
    return made


def test_the_plan_holds_every_budget_once_by_organization(seven_budgets):
    batches = periodic.plan(batch_size=3)
    assert [len(b) for b in batches] == [3, 3, 1]
    flat = [budget_id for batch in batches for budget_id in batch]
    assert sorted(flat) == sorted(b.id for b in seven_budgets) and len(set(flat)) == len(flat)
    by_org = [Budget.get_by_id(i).organization_id for i in flat]
    assert by_org == sorted(by_org)


def test_a_run_checks_every_budget_exactly_once_in_batches(seven_budgets, monkeypatch):
    monkeypatch.setattr(periodic, "BATCH_SIZE", 3)
    now = clock.now()
    checked = sample("cg_budget_checks_total", trigger="periodic")
    batch_runs = sample("cg_task_runs_total", task="check_budget_batch", outcome="ok")

    summary = periodic.run(now, stagger=0)  # immediate queue: each batch task runs inline

    assert summary["batches"] == 3 and summary["budgets"] == 7
    assert sample("cg_task_runs_total", task="check_budget_batch", outcome="ok") == batch_runs + 3
    assert sample("cg_budget_checks_total", trigger="periodic") == checked + 7  # not one budget twice
    stamped = {row.budget_id for row in BudgetSpend.select().where(BudgetSpend.forecast_at == now)}
    assert stamped == {b.id for b in seven_budgets}


def test_one_batch_is_checked_inline_and_a_second_run_says_nothing_new(seven_budgets):
    first = periodic.run(clock.now())
    assert first["budgets"] == 7 and "batches" not in first
    assert BudgetAlert.select().count() >= 7  # $2.50 of usage crossed each $1 budget: alerted once
    assert periodic.run(clock.now())["alerts"] == 0


def test_a_budget_deleted_before_its_batch_runs_is_skipped(seven_budgets):
    ids = [b.id for b in seven_budgets]
    Budget.delete().where(Budget.id == ids[0]).execute()
    assert sorted(periodic.check_batch(ids, clock.now())) == sorted(ids[1:])

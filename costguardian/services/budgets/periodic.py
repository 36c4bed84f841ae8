"""The periodic budget check (tasks.check_budgets, every 5 minutes), in
batches: thresholds ingest could not see, forecasts and their alerts, and
new-period notices, for every budget exactly once per run.

One run plans the batches — every budget id once, BATCH_SIZE ids each, in
(organization, id) order so a batch reads few organizations — and enqueues
one task per batch, each STAGGER_SECONDS after the previous, so 10,000
budgets (20 batches) spread over the first minutes of the period across
however many consumers there are, instead of one task holding one consumer.
A run with one batch or fewer checks inline. Checking is idempotent (the
alert table's unique key), so a batch retried or overlapping the next run
sends nothing twice. Measured by bench/budget_check.py."""
from __future__ import annotations

from datetime import datetime

from costguardian import clock
from costguardian.models import Budget, BudgetAlert, Organization
from costguardian.observability import metrics

BATCH_SIZE = 500
STAGGER_SECONDS = 6  # 20 batches start within 2 minutes of a 5-minute period


def plan(batch_size: int | None = None) -> list[list[int]]:
    """Every budget id exactly once, in batches, by organization then id."""
    size = batch_size or BATCH_SIZE
    ids = [budget_id for (budget_id,) in Budget.select(Budget.id).order_by(Budget.organization, Budget.id).tuples()]
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def check_batch(budget_ids: list[int], now: datetime | None = None) -> list[int]:
    """Check these budgets (those still existing); the ids checked."""
    from costguardian.services.budgets import budgets as service

    now = now or clock.now()
    checked: list[int] = []
    rows = list(Budget.select().where(Budget.id.in_(list(budget_ids))).order_by(Budget.organization, Budget.id))
    by_org: dict[int, list[Budget]] = {}
    for budget in rows:
        by_org.setdefault(budget.organization_id, []).append(budget)
    for org_id, group in by_org.items():
        org = Organization.get_by_id(org_id)
        service.check_thresholds(org, {(b.id, None) for b in group}, now)
        for budget in group:
            st = service.refresh_forecast(budget, now)
            if budget.notify_resolved:
                service._check_new_period(budget, st)
            checked.append(budget.id)
    metrics.budgets_checked("periodic", len(checked))
    return checked


def check_all(now: datetime | None = None) -> dict[str, int]:
    """Every budget in this process, batch after batch (tests, the
    embedded default with few budgets, and `run` for a single batch)."""
    from costguardian.services.budgets import budgets as service

    now = now or clock.now()
    before = BudgetAlert.select().count()
    checked = sum(len(check_batch(ids, now)) for ids in plan())
    return {"budgets": checked, "alerts": BudgetAlert.select().count() - before,
            "resent": service._send_unsent_alerts(now)}


def run(now: datetime | None = None, stagger: float = STAGGER_SECONDS) -> dict[str, int]:
    """The periodic task: inline for one batch, else one queued task per
    batch, staggered; alerts whose sending failed earlier go out here."""
    from costguardian.services import queue
    from costguardian.services.budgets import budgets as service

    now = now or clock.now()
    batches = plan()
    if len(batches) <= 1:
        return check_all(now)
    for number, ids in enumerate(batches):
        queue.enqueue("check_budget_batch", ids, now.isoformat(), delay=number * stagger)
    return {"batches": len(batches), "budgets": sum(map(len, batches)), "resent": service._send_unsent_alerts(now)}

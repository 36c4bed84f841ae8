"""Budgets over time: a period's raises and alerts, the periods before the
current one, the department allocation of an organization-wide budget, and
the report of every budget of a period kind for one period.

The current period's numbers come from the counters (budgets.statuses);
past periods are summed from the hourly rollups (budgets.period_spend_between).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from peewee import fn

from costguardian import clock
from costguardian.models import Budget, BudgetAlert, BudgetIncrease, Department, Organization
from costguardian.money import percent_of
from costguardian.services.budgets import accounting as budget_accounting, budgets, periods as budget_periods
from costguardian.services.team import departments as department_service
from costguardian.services.usage import queries as usage_queries


# --- one budget, one period ----------------------------------------------------------

def increase_total(budget: Budget, period: budget_periods.Period) -> int:
    """What temporary raises added to the budget's limit in that period."""
    total = (BudgetIncrease.select(fn.COALESCE(fn.SUM(BudgetIncrease.amount_nanos), 0))
             .where(BudgetIncrease.budget == budget, BudgetIncrease.period_start == period.start).scalar())
    return int(total or 0)


def increases_for(budget: Budget, period: budget_periods.Period) -> list[BudgetIncrease]:
    """The budget's raises in that period, oldest first."""
    return list(BudgetIncrease.select()
                .where(BudgetIncrease.budget == budget, BudgetIncrease.period_start == period.start)
                .order_by(BudgetIncrease.created_at))


def alerts_in(budget: Budget, period: budget_periods.Period) -> list[BudgetAlert]:
    """The alerts the budget raised in that period, in the order they came."""
    return list(BudgetAlert.select()
                .where(BudgetAlert.budget == budget, BudgetAlert.period_day == period.first_day)
                .order_by(BudgetAlert.created_at, BudgetAlert.id))


def previous_periods(budget: Budget, count: int = 6) -> list[dict]:
    """Up to `count - 1` periods before the current one, newest first: spend,
    requests, the limit with that period's raises, and the percent used."""
    result = []
    for period in budgets.past_periods(budget, count)[1:]:
        spend, requests = budgets.period_spend_between(budget, period)
        limit = budget.amount_nanos + increase_total(budget, period)
        result.append({"period": period, "spend": spend, "requests": requests, "limit": limit,
                       "percent": percent_of(spend, limit)})
    return result


# --- department allocation -------------------------------------------------------------

@dataclass
class AllocationRow:
    department: Department
    depth: int
    path: str
    spend: int
    budget: Budget | None
    limit: int | None
    forecast: int | None
    forecast_method: str  # "budget forecast", "run rate" or ""
    spend_share: float | None
    budget_share: float | None


def org_wide_budgets(org: Organization, kind: str) -> list[Budget]:
    """The organization's budgets of a period kind that cover everything (no scope), by name."""
    return list(Budget.in_org(org).where(
        Budget.period == kind, Budget.scope_department.is_null(), Budget.scope_user.is_null(),
        Budget.scope_api_key.is_null(), Budget.scope_provider.is_null(), Budget.scope_model.is_null(),
        Budget.scope_tag.is_null()).order_by(Budget.name, Budget.id))


def department_budgets(org: Organization, kind: str) -> dict[int, Budget]:
    """Department id -> the department's own budget of that period kind (the
    oldest one scoped to the department and nothing else)."""
    found: dict[int, Budget] = {}
    for b in (Budget.in_org(org).where(Budget.period == kind, Budget.scope_department.is_null(False))
              .order_by(Budget.id)):
        if not (b.scope_user or b.scope_api_key_id or b.scope_provider or b.scope_model or b.scope_tag):
            found.setdefault(b.scope_department_id, b)
    return found


def _run_rate(spend: int, period: budget_periods.Period, now: datetime) -> int | None:
    elapsed = (min(now, period.end) - period.start).total_seconds()
    total = (period.end - period.start).total_seconds()
    if elapsed <= 0:
        return None
    return int(spend * total / elapsed)


def allocation(org: Organization, kind: str, chosen_id: int | None = None, now: datetime | None = None) -> dict:
    """How an organization-wide budget of a period kind (the chosen one, or
    the first by name) splits over the department tree: each department's
    spend (its sub-departments' included), its own budget, forecast and
    shares, plus what no department budget covers."""
    now = now or clock.now()
    period = budget_periods.period_at(kind, org.time_zone, now)
    candidates = org_wide_budgets(org, kind)
    org_budget = next((b for b in candidates if b.id == chosen_id), candidates[0] if candidates else None)
    org_status = budgets.status(org_budget, now) if org_budget else None
    own = usage_queries.department_spend(org, period.start, period.end)
    total = sum(own.values())
    parents = department_service.parent_ids(org)
    dept_statuses = {s.budget.scope_department_id: s
                     for s in budgets.statuses(list(department_budgets(org, kind).values()), now)}
    org_limit = org_status.limit if org_status else None
    rows = []
    for node in department_service.tree(org):
        d = node.department
        spend = sum(own.get(i, 0) for i in budget_accounting.descendant_ids(org.id, d.id, parents))
        st = dept_statuses.get(d.id)
        if st is not None and st.forecast is not None:
            forecast, method = st.forecast, "budget forecast"
        else:
            forecast, method = _run_rate(spend, period, now), "run rate"
        rows.append(AllocationRow(
            department=d, depth=node.depth, path=node.path, spend=spend, budget=st.budget if st else None,
            limit=st.limit if st else None, forecast=forecast, forecast_method=method if forecast is not None else "",
            spend_share=100.0 * spend / total if total else None,
            budget_share=100.0 * st.limit / org_limit if st and org_limit else None))
    top_level_limits = sum(r.limit or 0 for r in rows if r.depth == 0)
    # Usage in no department (or in one since deleted): the total minus the top-level departments'.
    unassigned_spend = total - sum(r.spend for r in rows if r.depth == 0)
    return {
        "kind": kind, "period": period, "org_budgets": candidates, "org_budget": org_budget,
        "org_status": org_status, "rows": rows, "total": total,
        "org_forecast": (org_status.forecast if org_status and org_status.forecast is not None
                         else _run_rate(total, period, now)),
        "org_forecast_method": ("budget forecast" if org_status and org_status.forecast is not None else "run rate"),
        "allocated": top_level_limits,
        "unallocated": (org_limit - top_level_limits) if org_limit is not None else None,
        "unassigned_spend": unassigned_spend,
        "unassigned_share": 100.0 * unassigned_spend / total if total else None,
        "unassigned_forecast": _run_rate(unassigned_spend, period, now),
    }


# --- the report ----------------------------------------------------------------------------

@dataclass
class ReportRow:
    budget: Budget
    scope: str
    period: budget_periods.Period
    spend: int
    requests: int
    limit: int
    percent: Decimal
    state: str
    alerts: list


def report_period(org: Organization, kind: str, offset: int, now: datetime) -> budget_periods.Period | None:
    """The period of that kind `offset` periods before the current one (None for custom budgets)."""
    if kind == "custom":
        return None
    period = budget_periods.period_at(kind, org.time_zone, now)
    for _ in range(offset):
        period = budget_periods.period_at(kind, org.time_zone, period.start - timedelta(seconds=1))
    return period


def report(org: Organization, kind: str, offset: int, now: datetime | None = None) -> dict:
    """Every budget of a period kind for one period (offset periods back): the
    spend (from rollups for past periods, the counter for the current one),
    limit including raises, percent, state and the alerts raised."""
    now = now or clock.now()
    period = report_period(org, kind, offset, now)
    chosen = list(Budget.in_org(org).where(Budget.period == kind).order_by(Budget.name, Budget.id))
    current = {s.budget.id: s for s in budgets.statuses(chosen, now)} if offset == 0 or kind == "custom" else {}
    rows = []
    for budget in chosen:
        st = current.get(budget.id)
        budget_period = st.period if st is not None else period
        if st is not None:
            spend, requests, limit, state = st.spend, st.requests, st.limit, st.state
        else:
            spend, requests = budgets.period_spend_between(budget, budget_period)
            limit = budget.amount_nanos + increase_total(budget, budget_period)
            crossed = [t for t in budget.threshold_list if limit > 0 and spend * 100 >= t * limit]
            state = "exceeded" if spend >= limit else ("warning" if any(t < 100 for t in crossed) else "ok")
        rows.append(ReportRow(budget, budgets.scope_text(budget), budget_period, spend, requests, limit,
                              percent_of(spend, limit), state, alerts_in(budget, budget_period)))
    return {"kind": kind, "offset": offset, "period": period, "rows": rows,
            "total_spend": sum(r.spend for r in rows), "ended": period is not None and period.end <= now}

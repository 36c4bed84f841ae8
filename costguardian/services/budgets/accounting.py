"""Budget spend counters: exact, and cheap to read.

Each budget has one `BudgetSpend` row per period, kept by ingest *inside the
transaction that stores the events* (services.usage.rollups.store_events calls
`add_events`), so a counter always equals the sum of its scope's stored
events, duplicates never count (only inserted events are added) and reading a
budget's spend is one primary-key lookup whatever the history size.

Counters are kept for the current period and later ones: an event for the
current period counts even if it arrives late (back-dated); an event from an
earlier period changes no counter (reports of past periods sum the rollups).
A new or edited budget, or one whose history was rewritten (repricing, a
department merge, a time-zone change), is backfilled by `rebuild`, which sums
the hourly rollups for the period (the raw events when the organization's
time zone puts period edges inside an hour) under a lock that concurrent
ingest waits for, so no event is counted twice or missed.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from peewee import EXCLUDED, PostgresqlDatabase, SqliteDatabase, fn

from costguardian import clock, settings_cache
from costguardian.prepared import Prepared
from costguardian.db import write_transaction
from costguardian.extensions import db
from costguardian.models import (Budget, BudgetSpend, Department, Organization, UsageEvent, UsageRollup,
                                 UsageTagRollup)
from costguardian.models.usage import NO_DEPARTMENT
from costguardian.services.budgets import periods as budget_periods


def descendant_ids(org_id: int, department_id: int, parents: dict[int, int | None] | None = None) -> set[int]:
    """The department and every department under it."""
    if parents is None:
        parents = dict(Department.select(Department.id, Department.parent).where(
            Department.organization == org_id).tuples())
    children: dict[int | None, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, stack = set(), [department_id]
    while stack:
        current = stack.pop()
        if current in found:
            continue
        found.add(current)
        stack.extend(children.get(current, ()))
    return found


@dataclass
class Scope:
    """What a budget covers, ready to test events against."""

    budget: Budget
    departments: set[int] | None
    user: str | None
    api_key: int | None
    provider: str | None
    model: str | None
    tag: str | None

    @classmethod
    def of(cls, budget: Budget, parents: dict | None = None) -> "Scope":
        departments = None
        if budget.scope_department_id:
            departments = descendant_ids(budget.organization_id, budget.scope_department_id, parents)
        return cls(budget, departments, budget.scope_user, budget.scope_api_key_id, budget.scope_provider,
                   budget.scope_model, budget.scope_tag)

    def matches(self, row: dict) -> bool:
        """`row` is an event as ingest stores it (services.usage.ingest.validate_event)."""
        if self.departments is not None and row.get("department") not in self.departments:
            return False
        if self.user is not None and row.get("user_ref") != self.user:
            return False
        if self.api_key is not None and row.get("api_key") != self.api_key:
            return False
        if self.provider is not None and row.get("provider") != self.provider:
            return False
        if self.model is not None and row.get("model") != self.model:
            return False
        if self.tag is not None and self.tag not in (row.get("tags") or ()):
            return False
        return True


# Read by every ingest batch and gateway admission: SQL built once (costguardian.prepared).
_BUDGETS_OF = Prepared(lambda org_id: Budget.select().where(Budget.organization == org_id))
TIME_ZONE_OF = Prepared(lambda org_id: Organization.select(Organization.time_zone)
                        .where(Organization.id == org_id).tuples())


def org_scopes(org_id: int) -> list[Scope]:
    """Every budget of the organization as a Scope (kept per process while
    its settings do not change: costguardian/settings_cache.py)."""
    return settings_cache.cached("scopes", org_id, None, lambda: _load_scopes(org_id))


def time_zone_of(org_id: int) -> str | None:
    return settings_cache.cached("time_zone", org_id, None, lambda: TIME_ZONE_OF.scalar(org_id))


def _load_scopes(org_id: int) -> list[Scope]:
    budgets = _BUDGETS_OF.all(org_id)
    if not budgets:
        return []
    parents = None
    if any(b.scope_department_id for b in budgets):
        parents = dict(Department.select(Department.id, Department.parent)
                       .where(Department.organization == org_id).tuples())
    return [Scope.of(b, parents) for b in budgets]


def add_events(org_id: int, rows: list[dict], now: datetime | None = None) -> set[tuple[int, datetime]]:
    """Add freshly inserted events to their budgets' counters (called inside
    the ingest transaction). Returns the (budget id, period start) pairs
    touched in the current period whose spend may have crossed a threshold,
    for the alert check after commit: a counter still under its budget's
    lowest threshold of the base amount is left out (raises only add to the
    limit, so no threshold of it can be crossed), which spares the check's
    reads on almost every call."""
    deltas, current, budgets = _collect(org_id, [(rows, 1)], now)
    if deltas:
        spends = _upsert(deltas)
        current = {key for key in current if _may_cross(budgets[key[0]], spends.get(key))}
    return current


def _may_cross(budget: Budget, spend: int | None) -> bool:
    """Could a counter at `spend` have crossed one of the budget's thresholds?
    (None: the spend is not known, so it could.)"""
    thresholds = budget.threshold_list
    if not thresholds:
        return False
    return spend is None or budget.amount_nanos <= 0 or spend * 100 >= min(thresholds) * budget.amount_nanos


def apply_rewrite(org_id: int, before: list[dict], after: list[dict]) -> set[tuple[int, datetime]]:
    """Repricing or renaming changed these events (inside its transaction):
    take them out as they were and add them as they are now."""
    deltas, current, _ = _collect(org_id, [(before, -1), (after, 1)], None)
    deltas = {k: v for k, v in deltas.items() if v != [0, 0]}
    if deltas:
        _upsert(deltas)
    return current


def event_row(event, model: str | None = None, cost: int | None | bool = False) -> dict:
    """A stored UsageEvent as the dict `Scope.matches` reads."""
    return {"department": event.department_id, "user_ref": event.user_ref, "api_key": event.api_key_id,
            "provider": event.provider, "model": model or event.model, "tags": event.tags,
            "occurred_at": event.occurred_at, "cost_nanos": event.cost_nanos if cost is False else cost}


def _org_lock(org_id: int, exclusive: bool) -> None:
    """On PostgreSQL, writers of counters hold the organization row: ingest
    and repricing share it (they run side by side), a rebuild takes it alone.
    So a rebuild's sum waits for every batch that read the budgets before a
    budget changed, and batches after it read the new budgets. (SQLite's
    write transactions are serial already.)"""
    if isinstance(db.obj, PostgresqlDatabase):
        query = Organization.select(Organization.id).where(Organization.id == org_id)
        (query.for_update() if exclusive else query.for_update("FOR SHARE")).execute()


def _collect(org_id: int, batches: list[tuple[list[dict], int]], now: datetime | None):
    _org_lock(org_id, exclusive=False)
    scopes = org_scopes(org_id)
    if not scopes:
        return {}, set(), {}
    now = now or clock.now()
    tz_name = time_zone_of(org_id)
    deltas: dict[tuple[int, datetime], list[int]] = {}
    current: set[tuple[int, datetime]] = set()
    for scope in scopes:
        budget = scope.budget
        this_period = budget_periods.current_period(budget, tz_name, now)
        if this_period is None:
            continue
        periods: dict[datetime, budget_periods.Period | None] = {}
        for rows, sign in batches:
            for row in rows:
                if not scope.matches(row):
                    continue
                occurred = row["occurred_at"]
                slot = occurred.replace(minute=occurred.minute // 15 * 15, second=0, microsecond=0)
                if slot not in periods:
                    periods[slot] = budget_periods.period_of_event(budget, tz_name, occurred)
                period = periods[slot]
                if period is not None and not period.contains(occurred):  # a slot astride a period edge
                    period = budget_periods.period_of_event(budget, tz_name, occurred)
                if period is None or period.start < this_period.start:
                    continue  # outside a custom range, or an earlier period: reports read rollups
                delta = deltas.setdefault((budget.id, period.start), [0, 0])
                delta[0] += sign * (row["cost_nanos"] or 0)
                delta[1] += sign
                if period.start == this_period.start:
                    current.add((budget.id, period.start))
    return deltas, current, {scope.budget.id: scope.budget for scope in scopes}


def _upsert(deltas: dict[tuple[int, datetime], list[int]]) -> dict[tuple[int, datetime], int]:
    """Add the deltas to the counters; returns each counter's spend after it
    (empty where the database cannot say: SQLite before 3.35 has no RETURNING)."""
    now = clock.now()
    flat = [value for (budget_id, start), (spend, requests) in sorted(deltas.items())  # one lock order
            for value in (budget_id, start, spend, requests, now)]
    if isinstance(db.obj, SqliteDatabase) and sqlite3.sqlite_version_info < (3, 35, 0):
        _counter_upsert(flat).execute()
        return {}
    return {(budget_id, start): int(spend) for budget_id, start, spend in _UPSERT_COUNTERS.execute(*flat)}


_COUNTER_FIELDS = [BudgetSpend.budget, BudgetSpend.period_start, BudgetSpend.spend_nanos, BudgetSpend.requests,
                   BudgetSpend.updated_at]


def _counter_upsert(flat):
    """Add the rows of `flat` (budget, period start, spend, requests, now; five values a row) to the counters."""
    width = len(_COUNTER_FIELDS)
    return (BudgetSpend.insert_many([tuple(flat[i:i + width]) for i in range(0, len(flat), width)],
                                    fields=_COUNTER_FIELDS)
            .on_conflict(conflict_target=[BudgetSpend.budget, BudgetSpend.period_start],
                         update={BudgetSpend.spend_nanos: BudgetSpend.spend_nanos + EXCLUDED.spend_nanos,
                                 BudgetSpend.requests: BudgetSpend.requests + EXCLUDED.requests,
                                 BudgetSpend.updated_at: EXCLUDED.updated_at}))


# Its SQL is kept per number of counters (a call touches its covering budgets' counters).
_UPSERT_COUNTERS = Prepared(lambda *flat: _counter_upsert(flat).returning(
    BudgetSpend.budget, BudgetSpend.period_start, BudgetSpend.spend_nanos).tuples())


# --- sums over the history (backfill, reports, checks) -------------------------------

def _on_bucket_edges(org_id: int, *instants: datetime) -> bool:
    """Do the instants fall on edges of the organization's rollup buckets
    (whole UTC hours, or 30 past in Kolkata, 15 past in Kathmandu)?"""
    from costguardian.services.usage import rollups  # it imports this module

    aligned_to = rollups.alignment(org_id)
    return all(rollups.is_bucket_edge(aligned_to, i) for i in instants)


def spend_between(scope: Scope, start: datetime, end: datetime) -> tuple[int, int]:
    """(spend in nanos, requests) of the scope's events in [start, end): from
    the hourly rollups when the edges are edges of the organization's buckets
    (local hours), else the events."""
    if _on_bucket_edges(scope.budget.organization_id, start, end):
        table = UsageTagRollup if scope.tag is not None else UsageRollup
        query = table.select(fn.COALESCE(fn.SUM(table.cost_nanos), 0), fn.COALESCE(fn.SUM(table.requests), 0)).where(
            table.organization == scope.budget.organization_id, table.hour >= start, table.hour < end)
        if scope.tag is not None:
            query = query.where(table.tag == scope.tag)
        if scope.departments is not None:
            query = query.where(table.department_id.in_(sorted(scope.departments) or [NO_DEPARTMENT - 1]))
        if scope.user is not None:
            query = query.where(table.user_ref == scope.user)
        if scope.api_key is not None:
            query = query.where(table.api_key_id == scope.api_key)
        if scope.provider is not None:
            query = query.where(table.provider == scope.provider)
        if scope.model is not None:
            query = query.where(table.model == scope.model)
        spend, requests = query.tuples().get()
        return int(spend), int(requests)
    query = UsageEvent.select(UsageEvent.cost_nanos, UsageEvent.tags, UsageEvent.department, UsageEvent.user_ref,
                              UsageEvent.api_key, UsageEvent.provider, UsageEvent.model).where(
        UsageEvent.organization == scope.budget.organization_id, UsageEvent.occurred_at >= start,
        UsageEvent.occurred_at < end)
    spend = requests = 0
    for cost, tags, department, user_ref, api_key, provider, model in query.tuples().iterator():
        row = {"tags": tags, "department": department, "user_ref": user_ref, "api_key": api_key,
               "provider": provider, "model": model}
        if scope.matches(row):
            spend += cost or 0
            requests += 1
    return spend, requests


def rebuild(budget: Budget, now: datetime | None = None) -> BudgetSpend | None:
    """Recompute the budget's counter for its current period from history,
    and drop counters of other periods (they would be stale). Safe against
    concurrent ingest: the sum is taken holding the organization lock
    (`_org_lock`), which every ingest batch shares from before it reads the
    budgets until it commits; so every batch either committed before the sum
    (and is in it) or waits and then adds its events to the rebuilt counter."""
    now = now or clock.now()
    tz_name = Organization.select(Organization.time_zone).where(Organization.id == budget.organization_id).scalar()
    period = budget_periods.current_period(budget, tz_name, now)
    BudgetSpend.delete().where(BudgetSpend.budget == budget.id, BudgetSpend.period_start != period.start).execute()
    # The row exists before the transaction, so the update below always finds it.
    (BudgetSpend.insert(budget=budget.id, period_start=period.start, spend_nanos=0, requests=0, updated_at=now)
     .on_conflict_ignore().execute())
    scope = Scope.of(budget)
    with write_transaction():
        _org_lock(budget.organization_id, exclusive=True)
        key = (BudgetSpend.budget == budget.id) & (BudgetSpend.period_start == period.start)
        spend, requests = spend_between(scope, period.start, period.end)
        BudgetSpend.update(spend_nanos=spend, requests=requests, updated_at=clock.now(),
                           forecast_at=None).where(key).execute()
    return BudgetSpend.get_or_none(key)


def delete_budget(budget: Budget) -> None:
    """Delete a budget (its counters, raises, alerts and reservations
    cascade) holding the organization lock alone: an ingest batch that read
    the budgets before cannot then write a counter for a budget that is gone
    (on PostgreSQL a foreign-key error that failed the whole batch), and the
    batches after it no longer see the budget. Admission takes the same row
    first (FOR KEY SHARE), so it queues behind the deletion too."""
    with write_transaction():
        _org_lock(budget.organization_id, exclusive=True)
        budget.delete_instance()


def rebuild_org(org) -> int:
    """After history was rewritten (repricing, a merge, a new time zone)."""
    budgets = list(Budget.select().where(Budget.organization == org))
    for budget in budgets:
        rebuild(budget)
    return len(budgets)


def period_spend(budget: Budget, period_start: datetime) -> tuple[int, int]:
    row = BudgetSpend.get_or_none(BudgetSpend.budget == budget.id, BudgetSpend.period_start == period_start)
    return (row.spend_nanos, row.requests) if row else (0, 0)


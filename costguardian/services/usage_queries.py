"""Questions about spend, answered from the hourly rollups (never by scanning
events): totals, grouped by a dimension, per day or month in the
organization's time zone.

Rollups are hourly in UTC. A local day is the UTC hours that start inside it,
which is exact for every zone with whole-hour offsets; for the few zones with
half-hour offsets (India, parts of Australia) a day's edges are off by 30
minutes.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from peewee import fn

from costguardian.models import (NO_DEPARTMENT, NO_KEY, NO_USER, ApiKey, Department, Membership, User, UsageRollup,
                                 UsageTagRollup)

GROUPS = ("provider", "model", "api_key", "user", "department", "tag")
INTERVALS = ("total", "day", "month")
_COLUMN = {"provider": "provider", "model": "model", "api_key": "api_key_id", "user": "user_ref",
           "department": "department_id", "tag": "tag"}


@dataclass
class Totals:
    requests: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    unpriced_requests: int = 0

    def add(self, other: "Totals") -> None:
        for f in fields(Totals):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens


@dataclass
class Row(Totals):
    key: object = None  # the group's value (provider name, key id, …), None for the whole
    label: str = ""
    period: date | None = None  # first day of the day/month bucket, None for "total"


@dataclass
class UsageFilter:
    start: date  # inclusive, in the organization's time zone
    end: date  # inclusive
    providers: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    api_key_ids: list[int] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    department_ids: list[int] = field(default_factory=list)  # sub-departments included
    tags: list[str] = field(default_factory=list)


def zone(org) -> ZoneInfo:
    return ZoneInfo(org.time_zone or "UTC")


def today(org) -> date:
    return datetime.now(timezone.utc).astimezone(zone(org)).date()


def month_range(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    next_first = (first + timedelta(days=32)).replace(day=1)
    return first, next_first - timedelta(days=1)


def utc_bounds(org, start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, end+1 00:00) local, as naive UTC, floored to the hour."""
    tz = zone(org)

    def to_utc(day: date) -> datetime:
        moment = datetime.combine(day, time.min, tz).astimezone(timezone.utc).replace(tzinfo=None)
        return moment.replace(minute=0, second=0, microsecond=0)

    return to_utc(start), to_utc(end + timedelta(days=1))


def department_subtree(org, ids: list[int]) -> list[int]:
    """The departments and every department below them."""
    if not ids:
        return []
    children = defaultdict(list)
    for dept in Department.in_org(org).select(Department.id, Department.parent):
        children[dept.parent_id].append(dept.id)
    result, todo = set(), list(ids)
    while todo:
        current = todo.pop()
        if current in result:
            continue
        result.add(current)
        todo.extend(children.get(current, ()))
    return sorted(result)


def _table(flt: UsageFilter, group_by: str | None):
    return UsageTagRollup if flt.tags or group_by == "tag" else UsageRollup


def _conditions(org, table, flt: UsageFilter):
    start, end = utc_bounds(org, flt.start, flt.end)
    conditions = [table.organization == org, table.hour >= start, table.hour < end]
    if flt.providers:
        conditions.append(table.provider.in_(flt.providers))
    if flt.models:
        conditions.append(table.model.in_(flt.models))
    if flt.api_key_ids:
        conditions.append(table.api_key_id.in_(flt.api_key_ids))
    if flt.users:
        conditions.append(table.user_ref.in_(flt.users))
    if flt.department_ids:
        conditions.append(table.department_id.in_(department_subtree(org, flt.department_ids)))
    if flt.tags:
        conditions.append(table.tag.in_(flt.tags))
    return conditions


def _sums(table):
    return [fn.SUM(getattr(table, m)).alias(m) for m in UsageRollup.MEASURES]


def summarize(org, flt: UsageFilter, group_by: str | None = None, interval: str = "total") -> list[Row]:
    """Rows of totals per group (and per local day or month), biggest cost first
    within each period. `group_by` None gives one row per period."""
    if group_by is not None and group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
    table = _table(flt, group_by)
    columns = []
    if group_by is not None:
        columns.append(getattr(table, _COLUMN[group_by]))
    if interval != "total":
        columns.append(table.hour)
    query = table.select(*columns, *_sums(table)).where(*_conditions(org, table, flt)).tuples()
    if columns:
        query = query.group_by(*columns)
    tz = zone(org)
    buckets: dict[tuple, Row] = {}
    width = len(columns)
    for record in query:
        key = record[0] if group_by is not None else None
        period = None
        if interval != "total":
            local = record[width - 1].replace(tzinfo=timezone.utc).astimezone(tz).date()
            period = local if interval == "day" else local.replace(day=1)
        measures = Totals(*[int(v or 0) for v in record[width:]])
        row = buckets.get((key, period))
        if row is None:
            row = buckets[(key, period)] = Row(key=key, period=period)
        row.add(measures)
    rows = [r for r in buckets.values() if r.requests]
    rows.sort(key=lambda r: (r.period or date.min, -r.cost_nanos, -r.requests, str(r.key)))
    label_rows(org, group_by, rows)
    return rows


def total(org, flt: UsageFilter) -> Totals:
    rows = summarize(org, flt)
    return rows[0] if rows else Totals()


def daily_series(org, flt: UsageFilter, stack_by: str | None = None, top: int = 6):
    """(days, {series label: [cost_nanos per day]}) for a stacked daily chart;
    groups beyond the `top` biggest are summed as "Other"."""
    days = [flt.start + timedelta(days=i) for i in range((flt.end - flt.start).days + 1)]
    rows = summarize(org, flt, group_by=stack_by, interval="day")
    by_group: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    group_cost: dict[str, int] = defaultdict(int)
    for row in rows:
        label = row.label if stack_by else "Spend"
        by_group[label][row.period] += row.cost_nanos
        group_cost[label] += row.cost_nanos
    ranked = sorted(group_cost, key=lambda g: -group_cost[g])
    keep, rest = ranked[:top], ranked[top:]
    series = {g: [by_group[g].get(d, 0) for d in days] for g in keep}
    if rest:
        series["Other"] = [sum(by_group[g].get(d, 0) for g in rest) for d in days]
    return days, series


def label_rows(org, group_by: str | None, rows: list[Row]) -> None:
    """Readable names: key names, department names, members' names."""
    if group_by is None:
        return
    names: dict = {}
    if group_by == "api_key":
        ids = [r.key for r in rows if r.key != NO_KEY]
        names = {k.id: k.name for k in ApiKey.in_org(org).where(ApiKey.id.in_(ids))} if ids else {}
        names[NO_KEY] = "(no key)"
    elif group_by == "department":
        ids = [r.key for r in rows if r.key != NO_DEPARTMENT]
        names = {d.id: d.name for d in Department.in_org(org).where(Department.id.in_(ids))} if ids else {}
        names[NO_DEPARTMENT] = "(no department)"
    elif group_by == "user":
        names = member_names(org, [r.key for r in rows if r.key])
        names[NO_USER] = "(no user)"
    for row in rows:
        row.label = str(names.get(row.key, row.key))


def member_names(org, refs: list[str]) -> dict[str, str]:
    """Members' display names for user references that are their emails;
    other references (a customer's own end-user ids) stay as they are."""
    if not refs:
        return {}
    lowered = {r.lower(): r for r in refs}
    query = (User.select(User.email, User.name).join(Membership)
             .where(Membership.organization == org, User.email.in_(list(lowered))))
    return {lowered[u.email]: (f"{u.name} ({u.email})" if u.name else u.email) for u in query}


def dimension_values(org, dimension: str, since: datetime | None = None, limit: int = 500) -> list:
    """The distinct values a filter can offer, most used first."""
    table = UsageTagRollup if dimension == "tag" else UsageRollup
    column = getattr(table, _COLUMN[dimension])
    conditions = [table.organization == org]
    if since is not None:
        conditions.append(table.hour >= since)
    query = (table.select(column, fn.SUM(table.requests)).where(*conditions)
             .group_by(column).order_by(fn.SUM(table.requests).desc()).limit(limit).tuples())
    return [value for value, _ in query]

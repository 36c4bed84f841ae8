"""Questions about spend, answered from the hourly rollups (never by scanning
events): totals, grouped by a dimension, per day or month in the
organization's time zone.

Rollup buckets are the organization's local hours (rollups.bucket_start: they
start 30 minutes past the UTC hour in Asia/Kolkata, 15 in Asia/Kathmandu), so
a local day is a whole number of buckets and its totals are exact in every
zone. The exception is a zone whose offset moves by half an hour over the year
(Australia/Lord_Howe): its buckets follow the standard offset, and in the
daylight-saving months its day edges are 30 minutes off.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from peewee import SQL, Case, PostgresqlDatabase, fn

from costguardian import clock
from costguardian.models import (NO_DEPARTMENT, NO_KEY, NO_USER, ApiKey, Department, Membership, User,
                                 UsageDayRollup, UsageDayTagRollup, UsageDimension, UsageRollup, UsageTagRollup)
from costguardian.services.usage import days as day_rollups, rollups

GROUPS = ("provider", "model", "api_key", "user", "department", "tag")
INTERVALS = ("total", "day", "month")
# What the explorer can group by: the dimensions, or the local day.
EXPLORER_GROUPS = ("provider", "model", "department", "user", "api_key", "tag", "day")
# Named date ranges, relative to today in the organization's time zone.
PRESETS = {"today": "Today", "last_7_days": "Last 7 days", "this_month": "This month",
           "last_month": "Last month", "last_30_days": "Last 30 days", "last_90_days": "Last 90 days"}
MAX_RANGE_DAYS = 366 * 3
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
        for name in _MEASURE_NAMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens


_MEASURE_NAMES = tuple(f.name for f in fields(Totals))


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
    source: str = ""  # "" every source; "gateway" or "ingest" (see SOURCES)


# Where usage came from. The gateway tags every event it records `source:gateway`;
# everything else came through the ingest API (or the demo). The rollups have no
# source column, so "gateway" reads that tag's rows of the per-tag rollups and
# "ingest" is every row minus them (two range scans; the second reads only the
# gateway's rows). The per-tag rollups count an event once per tag, so a source
# cannot be combined with a tag filter or grouping (SourceWithTag).
GATEWAY_TAG = "source:gateway"
SOURCES = {"gateway": "Gateway", "ingest": "Ingest API"}


class SourceWithTag(ValueError):
    """A source filter with a tag filter or grouping: not answerable from the rollups."""


zone = clock.zone
today = clock.today


def month_range(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    next_first = (first + timedelta(days=32)).replace(day=1)
    return first, next_first - timedelta(days=1)


def same_day_last_month(day: date) -> date:
    """The same day of the month before, clamped to its length (31 Mar → 28/29 Feb)."""
    first_previous, last_previous = month_range(day.replace(day=1) - timedelta(days=1))
    return first_previous.replace(day=min(day.day, last_previous.day))


def preset_range(preset: str, day: date) -> tuple[date, date]:
    """The first and last day of a named range (PRESETS) seen from `day`."""
    if preset == "today":
        return day, day
    if preset == "this_month":
        return day.replace(day=1), day
    if preset == "last_month":
        return month_range(day.replace(day=1) - timedelta(days=1))
    if preset.startswith("last_") and preset.endswith("_days"):
        return day - timedelta(days=int(preset[5:-5]) - 1), day
    raise ValueError(f"preset must be one of {', '.join(PRESETS)}")


def exact_bounds(org, start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, end+1 00:00) local, as naive UTC: for exact timestamps
    (sign-ins, memberships), whatever the zone's offset."""
    tz = zone(org)

    def to_utc(day: date) -> datetime:
        return datetime.combine(day, time.min, tz).astimezone(timezone.utc).replace(tzinfo=None)

    return to_utc(start), to_utc(end + timedelta(days=1))


def utc_bounds(org, start: date, end: date) -> tuple[datetime, datetime]:
    """The same on the organization's rollup buckets: the buckets that start
    in those days. Equal to exact_bounds wherever local midnight is a bucket
    edge: every zone but one whose offset moves by half an hour in summer
    (Australia/Lord_Howe; see docs/ARCHITECTURE.md)."""
    first, last = exact_bounds(org, start, end)
    aligned_to = rollups.alignment(org)
    return rollups.bucket_at_or_after(aligned_to, first), rollups.bucket_at_or_after(aligned_to, last)


def department_subtree(org, ids: list[int]) -> list[int]:
    """The departments and every department below them."""
    if not ids:
        return []
    children = defaultdict(list)
    for dept in Department.in_org(org).select(Department.id, Department.parent):
        children[dept.parent_id].append(dept.id)
    result, pending = set(), list(ids)
    while pending:
        current = pending.pop()
        if current in result:
            continue
        result.add(current)
        pending.extend(children.get(current, ()))
    return sorted(result)


def _table(org, flt: UsageFilter, group_by: str | None):
    hourly = UsageTagRollup if flt.tags or group_by == "tag" else UsageRollup
    return hourly.DAILY if day_rollups.ready(org) else hourly


def _parts(org, flt: UsageFilter, group_by: str | None) -> list[tuple[object, list, int]]:
    """What to read for `flt`: [(rollup table, extra conditions, sign)], summed
    with their signs. One part without a source; the gateway's tag rows for
    "gateway"; every row minus the gateway's for "ingest". The daily rollups
    when the organization's are ready (a filter is always whole local days),
    else the hourly ones."""
    if not flt.source:
        return [(_table(org, flt, group_by), [], 1)]
    if flt.source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}")
    if flt.tags or group_by == "tag":
        raise SourceWithTag("a source cannot be combined with a tag filter or grouping")
    rows, tag_rows = (UsageDayRollup, UsageDayTagRollup) if day_rollups.ready(org) else (UsageRollup, UsageTagRollup)
    gateway = (tag_rows, [tag_rows.tag == GATEWAY_TAG], 1)
    if flt.source == "gateway":
        return [gateway]
    return [(rows, [], 1), (tag_rows, gateway[1], -1)]


def rollup_conditions(org, table, flt: UsageFilter) -> list:
    """The WHERE of `flt` on a rollup table (hourly or daily, with or without tags)."""
    if _is_daily(table):
        conditions = [table.organization == org, table.day >= flt.start, table.day <= flt.end]
    else:
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


def _is_daily(table) -> bool:
    return table in (UsageDayRollup, UsageDayTagRollup)


def _sums(table):
    return [fn.SUM(getattr(table, m)).alias(m) for m in UsageRollup.MEASURES]


def summarize(org, flt: UsageFilter, group_by: str | None = None, interval: str = "total") -> list[Row]:
    """Rows of totals per group (and per local day or month), biggest cost first
    within each period. `group_by` None gives one row per period."""
    if group_by is not None and group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
    sums: dict[tuple, list[int]] = {}
    for table, extra, sign in _parts(org, flt, group_by):
        group_columns = [getattr(table, _COLUMN[group_by])] if group_by is not None else []
        for segment, day in _day_segments(org, table, flt, interval != "total"):
            columns = group_columns + ([day] if day is not None else [])
            query = (table.select(*columns, *_sums(table))
                     .where(*rollup_conditions(org, table, flt), *extra, *segment).tuples())
            if columns:
                query = query.group_by(*columns)
            width = len(columns)
            for record in query:
                key = record[0] if group_by is not None else None
                period = None
                if day is not None:
                    local = _as_date(record[width - 1])
                    period = local if interval == "day" else local.replace(day=1)
                acc = sums.get((key, period))
                if acc is None:
                    acc = sums[(key, period)] = [0] * len(UsageRollup.MEASURES)
                for i, value in enumerate(record[width:]):
                    acc[i] += sign * int(value or 0)
    rows = [Row(*acc, key=key, period=period) for (key, period), acc in sums.items() if acc[0]]
    rows.sort(key=lambda r: (r.period or date.min, -r.cost_nanos, -r.requests, str(r.key)))
    label_rows(org, group_by, rows)
    return rows


def summarize_many(org, flt: UsageFilter, groups: tuple[str, ...]) -> dict[str, list[Row]]:
    """summarize(org, flt, group_by=g) for several groups at once, from one
    scan of the rollups grouped by all of them (the dashboard's top lists)."""
    if "tag" in groups or not set(groups) <= set(GROUPS):
        raise ValueError("summarize_many takes groups other than tag")
    sums: dict[str, dict[object, list[int]]] = {g: {} for g in groups}
    for table, extra, sign in _parts(org, flt, None):
        columns = [getattr(table, _COLUMN[g]) for g in groups]
        query = (table.select(*columns, *_sums(table)).where(*rollup_conditions(org, table, flt), *extra)
                 .group_by(*columns).tuples())
        width = len(columns)
        for record in query:
            measures = [sign * int(v or 0) for v in record[width:]]
            for index, group in enumerate(groups):
                acc = sums[group].setdefault(record[index], [0] * len(UsageRollup.MEASURES))
                for i, value in enumerate(measures):
                    acc[i] += value
    result = {}
    for group in groups:
        rows = [Row(*acc, key=key) for key, acc in sums[group].items() if acc[0]]
        rows.sort(key=lambda r: (-r.cost_nanos, -r.requests, str(r.key)))
        label_rows(org, group, rows)
        result[group] = rows
    return result


def total(org, flt: UsageFilter) -> Totals:
    rows = summarize(org, flt)
    return rows[0] if rows else Totals()


def _day_segments(org, table, flt: UsageFilter, by_day: bool) -> list[tuple[list, object]]:
    """How to bucket rollup hours into the organization's local days in SQL:
    [(extra conditions, local-day expression)], one per stretch of the range
    with a constant UTC offset (two around a DST change). Without `by_day`,
    one segment with no expression."""
    if not by_day:
        return [([], None)]
    if _is_daily(table):
        return [([], table.day)]
    start, end = utc_bounds(org, flt.start, flt.end)
    return [([table.hour >= seg_start, table.hour < seg_end], _local_date_sql(table.hour, minutes))
            for seg_start, seg_end, minutes in _offset_segments(org, start, end)]


def _offset_segments(org, start: datetime, end: datetime) -> list[tuple[datetime, datetime, int]]:
    """[start, end) cut where the zone's UTC offset changes, with each piece's
    offset in minutes. Checked per day, then per hour within a day that changes."""
    tz = zone(org)

    def offset(moment: datetime) -> int:
        return int(moment.replace(tzinfo=timezone.utc).astimezone(tz).utcoffset().total_seconds() // 60)

    segments, seg_start, current = [], start, offset(start)
    day = start
    while day < end:
        next_day = min(day + timedelta(days=1), end)
        if offset(next_day - timedelta(hours=1)) != current or offset(next_day) != current:
            hour = day
            while hour < next_day:
                if offset(hour) != current:
                    segments.append((seg_start, hour, current))
                    seg_start, current = hour, offset(hour)
                hour += timedelta(hours=1)
        day = next_day
    segments.append((seg_start, end, current))
    return segments


def _local_date_sql(hour, minutes: int):
    """The local date of a UTC hour column, for a fixed offset, in SQL."""
    if isinstance(UsageRollup._meta.database.obj, PostgresqlDatabase):
        return (hour + SQL(f"INTERVAL '{int(minutes)} minutes'")).cast("date")
    return fn.date(hour, f"{int(minutes):+d} minutes").coerce(False)  # a date, not parsed as the hour's datetime


def _as_date(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(value)


def daily_series(org, flt: UsageFilter, stack_by: str | None = None, top: int = 6):
    """(days, {series label: [cost_nanos per day]}) for a stacked daily chart;
    groups beyond the `top` biggest are summed as "Other", groups without
    cost are left out. Reads only the cost, per hour and group."""
    if stack_by is not None and stack_by not in GROUPS:
        raise ValueError(f"stack_by must be one of {', '.join(GROUPS)}")
    by_key: dict = defaultdict(lambda: defaultdict(int))
    for table, extra, sign in _parts(org, flt, stack_by):
        columns = [getattr(table, _COLUMN[stack_by])] if stack_by else []
        for segment, day in _day_segments(org, table, flt, True):
            query = (table.select(*columns, day, fn.SUM(table.cost_nanos))
                     .where(*rollup_conditions(org, table, flt), *extra, *segment).group_by(*columns, day).tuples())
            for record in query:
                by_key[record[0] if stack_by else None][_as_date(record[-2])] += sign * int(record[-1] or 0)
    return _series(org, flt, stack_by, by_key, top)


def _series(org, flt: UsageFilter, stack_by: str | None, by_key: dict, top: int):
    """(days, series) from {group key: {local day: cost_nanos}}."""
    days = [flt.start + timedelta(days=i) for i in range((flt.end - flt.start).days + 1)]
    if stack_by is None:
        return days, {"Spend": [by_key.get(None, {}).get(d, 0) for d in days]}
    rows = [Row(key=key, cost_nanos=sum(per_day.values())) for key, per_day in by_key.items()]
    rows = [r for r in rows if r.cost_nanos]
    label_rows(org, stack_by, rows)
    rows.sort(key=lambda r: (-r.cost_nanos, r.label))
    series: dict[str, list[int]] = {}
    for row in rows[:top]:
        values = [by_key[row.key].get(d, 0) for d in days]
        if row.label in series:  # two groups with one name (e.g. keys): one series
            values = [a + b for a, b in zip(series[row.label], values)]
        series[row.label] = values
    if rows[top:]:
        series["Other"] = [sum(by_key[r.key].get(d, 0) for r in rows[top:]) for d in days]
    return days, series


@dataclass
class ExplorerReport:
    rows: list
    total: Totals
    days: list
    series: dict


def explorer_report(org, flt: UsageFilter, group: str, top: int = 6) -> ExplorerReport:
    """The explorer's table, total and daily chart from one scan of the rollups
    (grouped by the dimension and hour, bucketed into local days here)."""
    if group not in EXPLORER_GROUPS:
        raise ValueError(f"group must be one of {', '.join(EXPLORER_GROUPS)}")
    group_by = None if group == "day" else group
    day_rows = summarize(org, flt, group_by=group_by, interval="day")
    overall = Totals()
    by_key: dict = defaultdict(lambda: defaultdict(int))
    merged: dict = {}
    for row in day_rows:
        overall.add(row)
        by_key[row.key][row.period] += row.cost_nanos
        if group == "day":
            continue
        into = merged.get(row.key)
        if into is None:
            into = merged[row.key] = Row(key=row.key, label=row.label)
        into.add(row)
    if group == "day":
        rows = day_rows
        for row in rows:
            row.key, row.label = row.period, row.period.isoformat()
        by_key = {None: by_key[None]} if None in by_key else {}
    else:
        rows = sorted(merged.values(), key=lambda r: (-r.cost_nanos, -r.requests, str(r.key)))
    if group == "tag" and not flt.tags:
        overall = total(org, flt)  # an event with two tags is in two tag rows, but spent once
    days, series = _series(org, flt, group_by, by_key, top)
    return ExplorerReport(rows, overall, days, series)


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


def dimension_values(org, dimension: str, since: datetime | None = None, limit: int = 500,
                     by_name: bool = False) -> list:
    """The distinct values a filter can offer, most used first (a scan of the
    rollups), or in alphabetical order with `by_name` (a lookup in the small
    table of values ingest keeps: cheap over any history)."""
    table = UsageTagRollup if dimension == "tag" else UsageRollup
    column = getattr(table, _COLUMN[dimension])
    conditions = [table.organization == org]
    if since is not None:
        conditions.append(table.hour >= since)
    if by_name:  # from the small table ingest keeps, not the rollups
        query = (UsageDimension.select(UsageDimension.value)
                 .where(UsageDimension.organization == org, UsageDimension.dimension == dimension,
                        *([UsageDimension.last_hour >= since] if since is not None else []))
                 .order_by(UsageDimension.value).limit(limit).tuples())
        return [value for value, in query]
    query = (table.select(column, fn.SUM(table.requests)).where(*conditions)
             .group_by(column).order_by(fn.SUM(table.requests).desc()).limit(limit).tuples())
    return [value for value, _ in query]


def explore(org, flt: UsageFilter, group: str) -> list[Row]:
    """The explorer's table: one row per value of a dimension (biggest cost
    first), or per local day (oldest first) when `group` is "day"."""
    if group not in EXPLORER_GROUPS:
        raise ValueError(f"group must be one of {', '.join(EXPLORER_GROUPS)}")
    if group == "day":
        rows = summarize(org, flt, interval="day")
        for row in rows:
            row.key, row.label = row.period, row.period.isoformat()
        return rows
    return summarize(org, flt, group_by=group)


def has_usage(org) -> bool:
    """Has the organization ever recorded usage?"""
    return UsageRollup.select(UsageRollup.hour).where(UsageRollup.organization == org).limit(1).exists()


def department_spend(org, start: datetime, end: datetime) -> dict[int, int]:
    """Cost in nanos per department id (NO_DEPARTMENT for usage in none) over
    the UTC hours in [start, end): each department's own usage, not its
    sub-departments'."""
    rows = (UsageRollup.select(UsageRollup.department_id, fn.SUM(UsageRollup.cost_nanos))
            .where(UsageRollup.organization == org, UsageRollup.hour >= start, UsageRollup.hour < end)
            .group_by(UsageRollup.department_id).tuples())
    return {department_id: int(cost or 0) for department_id, cost in rows}


def unpriced_models(org, limit: int | None = None, start: date | None = None, end: date | None = None) -> list:
    """Models with events of unknown cost, most requests first (provider,
    model, requests, first_hour, last_hour), at most `limit` of them; only
    the days from `start` to `end` (in the organization's zone) when given,
    counted exactly as the explorer counts that period."""
    query = rollups.unpriced_models(org)
    if start is not None and end is not None:
        first, last = utc_bounds(org, start, end)
        query = query.where(UsageRollup.hour >= first, UsageRollup.hour < last)
    return list(query.limit(limit) if limit is not None else query)


def value_exists(org, dimension: str, value) -> bool:
    """Does any of the organization's usage carry this value of a dimension?"""
    table = UsageTagRollup if dimension == "tag" else UsageRollup
    column = getattr(table, _COLUMN[dimension])
    return table.select(table.hour).where(table.organization == org, column == value).limit(1).exists()


@dataclass
class MonthToDate:
    """This month so far against the same days of last month, and today."""

    day: date
    this_month: Totals
    last_month_same_days: Totals  # the 1st up to the same day of the month before
    last_month: Totals  # the whole month before
    today: Totals
    last_month_start: date
    last_month_same_day: date
    last_month_end: date

    @property
    def change_percent(self) -> Decimal | None:
        """The change against the same days of last month, None when there was no spend then."""
        before = self.last_month_same_days.cost_nanos
        if not before:
            return None
        return (Decimal(self.this_month.cost_nanos - before) * 100 / Decimal(before)).quantize(Decimal("0.1"))


def month_to_date(org, day: date | None = None) -> MonthToDate:
    """One read of the days from the 1st of last month to `day`, bucketed in SQL
    into four stretches of local days (last month up to the same day, the rest
    of last month, this month before today, today) and summed four ways."""
    day = day or today(org)
    last_start, last_end = month_range(day.replace(day=1) - timedelta(days=1))
    last_same = same_day_last_month(day)
    # local-day boundaries of the stretches, as UTC hours
    firsts = (last_start, last_same + timedelta(days=1), day.replace(day=1), day)
    if day_rollups.ready(org):
        table, column = UsageDayRollup, UsageDayRollup.day
        edges = list(firsts) + [day + timedelta(days=1)]
    else:
        table, column = UsageRollup, UsageRollup.hour
        edges = [utc_bounds(org, first, first)[0] for first in firsts] + [utc_bounds(org, day, day)[1]]
    bucket = Case(None, [(column < edge, index) for index, edge in enumerate(edges[1:])], None)
    query = (table.select(bucket, *_sums(table))
             .where(table.organization == org, column >= edges[0], column < edges[-1])
             .group_by(SQL("1")).tuples())  # by position: PostgreSQL sees a re-bound CASE as another expression
    parts = [Totals() for _ in range(4)]
    for index, *measures in query:
        if index is not None:
            parts[index].add(Totals(*[int(v or 0) for v in measures]))

    def combined(*indexes) -> Totals:
        totals = Totals()
        for i in indexes:
            totals.add(parts[i])
        return totals

    return MonthToDate(
        day=day, this_month=combined(2, 3), last_month_same_days=combined(0), last_month=combined(0, 1),
        today=combined(3), last_month_start=last_start, last_month_same_day=last_same, last_month_end=last_end,
    )


def department_paths(org) -> dict[int, str]:
    """Each department's name with its parents', e.g. "Engineering › Platform"."""
    departments = {d.id: d for d in Department.in_org(org).select(Department.id, Department.name, Department.parent)}

    def path(dept, seen=()) -> str:
        parent = departments.get(dept.parent_id)
        if parent is None or parent.id in seen:
            return dept.name
        return f"{path(parent, seen + (dept.id,))} › {dept.name}"

    return {dept_id: path(dept) for dept_id, dept in departments.items()}


def filter_choices(org, with_users: bool = True) -> dict[str, list[tuple]]:
    """(value, label) pairs for each filter of the explorer: the values the
    organization's usage carries, its departments, keys and members
    (`with_users` False: no "user" list, which pages replace by a picker,
    services.team.members.user_refs_matching)."""
    users = [u for u in dimension_values(org, "user", by_name=True) if u != NO_USER] if with_users else []
    members = [u.email for u in User.select(User.email).join(Membership)
               .where(Membership.organization == org)] if with_users else []
    known = set(users)
    users += [email for email in members if email not in known]
    names = member_names(org, users)
    keys = ApiKey.in_org(org).select(ApiKey.id, ApiKey.name, ApiKey.env, ApiKey.prefix, ApiKey.revoked_at)
    return {
        "provider": [(v, v) for v in dimension_values(org, "provider", by_name=True)],
        "model": [(v, v) for v in dimension_values(org, "model", by_name=True)],
        "tag": [(v, v) for v in dimension_values(org, "tag", by_name=True)],
        "user": sorted(((u, names.get(u, u)) for u in users), key=lambda c: c[1].lower()),
        "department": [(NO_DEPARTMENT, "(no department)")] + sorted(department_paths(org).items(),
                                                                     key=lambda c: c[1].lower()),
        "key": [(NO_KEY, "(no key)")] + sorted(
            ((k.id, f"{k.name} ({k.display_key}{', revoked' if k.revoked_at else ''})") for k in keys),
            key=lambda c: c[1].lower()),
    }

"""Platform-wide figures for the console's Overview and Usage pages: small
counts, and spend and events from the hourly rollups (never a scan of usage
events). Days are UTC days: rollup hours are UTC, so a day is exactly the 24
hours that start inside it. Events count by when they occurred (the rollups'
hour), which is when they were ingested unless the sender back-dated them."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from peewee import PostgresqlDatabase, fn

from costguardian.extensions import db
from costguardian.models import Organization, UsageRollup, User
from costguardian.money import NANOS_PER_USD
from costguardian.timefmt import parse_day

TOP = 50  # rows per dimension on the Usage page
DEFAULT_DAYS = 30
MAX_RANGE_DAYS = 366
ACTIVE_WINDOWS = (7, 30)  # days: "active users" saw a page within them


def _day_sql(column):
    """The UTC date of a datetime column, in SQL."""
    if isinstance(db.obj, PostgresqlDatabase):
        return column.cast("date")
    return fn.date(column).coerce(False)  # text 'YYYY-MM-DD', not parsed as a datetime


def _as_date(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(value)


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """The UTC hours of the days start…end (inclusive): [start 00:00, end+1 00:00)."""
    return datetime.combine(start, time()), datetime.combine(end + timedelta(days=1), time())


def _in_range(start: date, end: date):
    low, high = _bounds(start, end)
    return (UsageRollup.hour >= low) & (UsageRollup.hour < high)


@dataclass
class Figures:
    """Summed rollup measures of one row (a day, a provider, …)."""

    key: object = None
    label: str = ""
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    unpriced_requests: int = 0

    def minus(self, other: "Figures") -> "Figures":
        return Figures(self.key, self.label, *(getattr(self, m) - getattr(other, m) for m in _MEASURES))


_MEASURES = ("requests", "input_tokens", "output_tokens", "cost_nanos", "unpriced_requests")


def _sums():
    return [fn.COALESCE(fn.SUM(getattr(UsageRollup, m)), 0).alias(m) for m in _MEASURES]


def _figures(key, label, values) -> Figures:
    return Figures(key, label, *(int(v or 0) for v in values))


def _add(into: dict, key, values) -> None:
    into[key] = [a + int(b or 0) for a, b in zip(into.get(key, [0] * len(_MEASURES)), values)]


def _grouped(start: date, end: date):
    """The range's rollups summed by (UTC day, organization, provider, model):
    one read of the table, from which every total and table of the report
    is added up (a few thousand rows, where five grouped reads each scanned
    every rollup row of the range)."""
    day = _day_sql(UsageRollup.hour)
    return (UsageRollup.select(day.alias("day"), UsageRollup.organization, UsageRollup.provider, UsageRollup.model,
                               *_sums())
            .where(_in_range(start, end))
            .group_by(day, UsageRollup.organization, UsageRollup.provider, UsageRollup.model).tuples())


def daily(start: date, end: date) -> list[Figures]:
    """One row per day of the range, days without usage included."""
    day = _day_sql(UsageRollup.hour)
    rows = {_as_date(d): values for d, *values in
            UsageRollup.select(day.alias("day"), *_sums()).where(_in_range(start, end)).group_by(day).tuples()}
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return [_figures(d, d.isoformat(), rows.get(d, ())) for d in days]


@dataclass
class Table:
    """The biggest rows of one dimension and the rest summed."""

    name: str
    title: str
    rows: list[Figures]
    others: Figures | None = None  # beyond the top rows (None: every row is shown)


def _top(sums: dict, label_of, total: Figures, top: int) -> tuple[list[Figures], Figures | None]:
    cost, requests = _MEASURES.index("cost_nanos"), _MEASURES.index("requests")
    ordered = sorted(sums.items(), key=lambda item: (-item[1][cost], -item[1][requests], str(item[0])))
    shown = [_figures(key, label_of(key), values) for key, values in ordered[:top]]
    if len(ordered) <= top:
        return shown, None
    rest = total
    for row in shown:
        rest = rest.minus(row)
    return shown, Figures(None, "Everything else", *(getattr(rest, m) for m in _MEASURES))


DIMENSIONS = {"provider": "By provider", "model": "By model", "organization": "By organization"}


@dataclass
class UsageReport:
    start: date
    end: date
    total: Figures
    days: list[Figures]
    tables: list[Table] = field(default_factory=list)


def usage(start: date, end: date, top: int = TOP) -> UsageReport:
    """System-wide spend and events for the range (UTC days, inclusive), by
    day, provider, model and organization, from one read of the rollups."""
    by_day: dict = {}
    by: dict[str, dict] = {name: {} for name in DIMENSIONS}
    for day, org_id, provider, model, *values in _grouped(start, end):
        _add(by_day, _as_date(day), values)
        _add(by["provider"], provider, values)
        _add(by["model"], (provider, model), values)
        _add(by["organization"], org_id, values)
    days = [_figures(d, d.isoformat(), by_day.get(d, ()))
            for d in (start + timedelta(days=i) for i in range((end - start).days + 1))]
    total = Figures(None, "Total", *(sum(getattr(d, m) for d in days) for m in _MEASURES))
    names = dict(Organization.select(Organization.id, Organization.name)
                 .where(Organization.id.in_(list(by["organization"]))).tuples()) if by["organization"] else {}
    labels = {"provider": lambda key: key, "model": lambda key: f"{key[1]} ({key[0]})",
              "organization": lambda key: names.get(key, f"#{key} (deleted)")}
    report = UsageReport(start, end, total, days)
    for name, title in DIMENSIONS.items():
        rows, others = _top(by[name], labels[name], total, top)
        report.tables.append(Table(name, title, rows, others))
    return report


EXPORTS = ("day",) + tuple(DIMENSIONS)


def usage_csv(table: str, report: UsageReport) -> str:
    """One table of the report as CSV (exact dollars, nine decimals)."""
    from costguardian.services.usage.exports import _SafeWriter  # no cell starts a formula

    if table == "day":
        rows = report.days
    else:
        found = next(t for t in report.tables if t.name == table)
        rows = found.rows + ([found.others] if found.others else [])
    out = io.StringIO()
    writer = _SafeWriter(out)
    writer.writerow([table, "events", "input_tokens", "output_tokens", "cost_usd", "unpriced_events"])
    for row in rows:
        whole, frac = divmod(row.cost_nanos, NANOS_PER_USD)
        writer.writerow([row.label, row.requests, row.input_tokens, row.output_tokens, f"{whole}.{frac:09d}",
                         row.unpriced_requests])
    return out.getvalue()


def parse_range(args, today: date) -> tuple[date, date, dict[str, str]]:
    """The range a form asks for (`start`, `end`: YYYY-MM-DD), by default the
    last 30 days; with a message per field that is wrong."""
    errors: dict[str, str] = {}
    end = today
    start = today - timedelta(days=DEFAULT_DAYS - 1)
    values = {}
    for name, default in (("start", start), ("end", end)):
        raw = (args.get(name) or "").strip()
        try:
            values[name] = parse_day(raw) or default
        except ValueError as exc:
            errors[name] = str(exc)
            values[name] = default
    start, end = values["start"], values["end"]
    if not errors:
        if end < start:
            errors["end"] = "The end must not come before the start."
        elif (end - start).days + 1 > MAX_RANGE_DAYS:
            errors["start"] = f"At most {MAX_RANGE_DAYS} days at once."
    if errors:
        start, end = today - timedelta(days=DEFAULT_DAYS - 1), today
    return start, end, errors


# --- the Overview ------------------------------------------------------------------

@dataclass
class Overview:
    organizations: int
    suspended_organizations: int
    users: int
    disabled_users: int
    active_users: dict[int, int]  # window in days -> users seen within it
    events_today: int
    events_month: int
    spend_month_nanos: int
    unpriced_month: int
    month_start: date
    days: list[Figures]  # the last 30 days, for the charts
    new_users: list[tuple[date, int]]


def new_users_per_day(start: date, end: date) -> list[tuple[date, int]]:
    low, high = _bounds(start, end)
    day = _day_sql(User.created_at)
    counts = {_as_date(d): n for d, n in
              User.select(day.alias("day"), fn.COUNT(User.id)).where(User.created_at >= low, User.created_at < high)
              .group_by(day).tuples()}
    return [(d, counts.get(d, 0)) for d in (start + timedelta(days=i) for i in range((end - start).days + 1))]


def overview(now: datetime) -> Overview:
    today = now.date()
    month_start = today.replace(day=1)
    first = min(month_start, today - timedelta(days=DEFAULT_DAYS - 1))
    every_day = daily(first, today)  # one read for the month's figures and the 30-day charts
    month = Figures(None, "Month", *(sum(getattr(d, m) for d in every_day if d.key >= month_start)
                                     for m in _MEASURES))
    days = every_day[-DEFAULT_DAYS:]
    active = {n: User.select().where(User.last_seen_at >= now - timedelta(days=n)).count() for n in ACTIVE_WINDOWS}
    return Overview(
        organizations=Organization.select().count(),
        suspended_organizations=Organization.select().where(Organization.suspended_at.is_null(False)).count(),
        users=User.select().count(),
        disabled_users=User.select().where(User.is_disabled == True).count(),  # noqa: E712 (SQL)
        active_users=active,
        events_today=days[-1].requests,
        events_month=month.requests,
        spend_month_nanos=month.cost_nanos,
        unpriced_month=month.unpriced_requests,
        month_start=month_start,
        days=days,
        new_users=new_users_per_day(today - timedelta(days=DEFAULT_DAYS - 1), today),
    )

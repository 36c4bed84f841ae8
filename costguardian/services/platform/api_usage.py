"""System-wide usage for the admin JSON API: spend and events across every
organization, by UTC day, provider, model or organization, from the hourly
rollups only (one GROUP BY per page and one for the total; usage_event is
never read)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from peewee import PostgresqlDatabase, fn

from costguardian.models import Organization, UsageRollup

GROUPS = ("day", "provider", "model", "organization")
MAX_DAYS = 366 * 3  # one answer covers at most three years


@dataclass
class UsageRow:
    key: object  # the day ("2026-11-01"), provider, model or organization id; None for the total
    label: str
    requests: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    unpriced_requests: int = 0
    provider: str | None = None  # for group_by=model: a model is counted per provider
    slug: str | None = None  # for group_by=organization


def _day_column():
    if isinstance(UsageRollup._meta.database.obj, PostgresqlDatabase):
        return UsageRollup.hour.cast("date")
    return fn.date(UsageRollup.hour).coerce(False)  # "YYYY-MM-DD", not parsed back into a datetime


def _columns(group_by: str) -> list:
    if group_by == "day":
        return [_day_column()]
    if group_by == "provider":
        return [UsageRollup.provider]
    if group_by == "model":
        return [UsageRollup.model, UsageRollup.provider]
    return [UsageRollup.organization]


def _sums() -> list:
    return [fn.COALESCE(fn.SUM(getattr(UsageRollup, m)), 0).alias(m) for m in UsageRollup.MEASURES]


def _day_key(value) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    return value.isoformat() if isinstance(value, date) else str(value)


def summary(start: date, end: date, group_by: str, page: int = 1,
            per_page: int = 50) -> tuple[list[UsageRow], int, UsageRow]:
    """One page of rows for the UTC days [start, end] grouped by `group_by`
    (days in order; other groups biggest cost first), how many rows there
    are in all, and the range's total."""
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    window = (UsageRollup.hour >= datetime.combine(start, datetime.min.time()),
              UsageRollup.hour < datetime.combine(end + timedelta(days=1), datetime.min.time()))
    columns = _columns(group_by)
    grouped = UsageRollup.select(*columns, *_sums()).where(*window).group_by(*columns)
    if group_by == "day":
        ordered = grouped.order_by(columns[0])
    else:
        ordered = grouped.order_by(fn.SUM(UsageRollup.cost_nanos).desc(), fn.SUM(UsageRollup.requests).desc(),
                                   *columns)
    width = len(columns)
    records = list(ordered.paginate(page, per_page).tuples())
    rows = []
    for record in records:
        measures = [int(v or 0) for v in record[width:]]
        key = record[0]
        if group_by == "day":
            key = _day_key(key)
        rows.append(UsageRow(key, str(key), *measures, provider=record[1] if group_by == "model" else None))
    if group_by == "organization" and rows:
        names = {o.id: o for o in Organization.select(Organization.id, Organization.name, Organization.slug)
                 .where(Organization.id.in_([r.key for r in rows]))}
        for row in rows:
            org = names.get(row.key)
            row.label, row.slug = (org.name, org.slug) if org else (f"#{row.key}", None)
    elif group_by == "model":
        for row in rows:
            row.label = f"{row.key} ({row.provider})"
    count = grouped.count()
    total = UsageRollup.select(*_sums()).where(*window).tuples().first() or ()
    return rows, count, UsageRow(None, "Total", *[int(v or 0) for v in total])

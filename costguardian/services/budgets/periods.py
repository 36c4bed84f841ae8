"""Budget periods: calendar-aligned in the organization's time zone.

A monthly budget resets at local midnight on the 1st, a weekly one at local
midnight on Monday (ISO weeks), a quarterly one on 1 January/April/July/
October, a yearly one on 1 January; a custom period runs from local midnight of
its first day to local midnight after its last. Periods are stored and compared
as naive UTC instants (the storage rule), computed through zoneinfo, so a DST
change inside a period makes it 23 or 25 hours longer, never shifts its edges.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from markupsafe import Markup

PERIODS = {
    "daily": "Daily",
    "weekly": "Weekly (Monday to Sunday)",
    "monthly": "Monthly",
    "quarterly": "Quarterly",
    "yearly": "Yearly",
    "custom": "Custom dates",
}


@dataclass(frozen=True)
class Period:
    start: datetime  # naive UTC, inclusive
    end: datetime  # naive UTC, exclusive
    first_day: date  # local calendar days, both inclusive
    last_day: date

    @property
    def label(self) -> str:
        """Calendar days, ISO, never shifted by a zone: `2026-12-01 – 2026-12-31`."""
        if self.first_day == self.last_day:
            return self.first_day.isoformat()
        return f"{self.first_day.isoformat()} – {self.last_day.isoformat()}"

    @property
    def html_label(self) -> Markup:
        """The label for a narrow table cell: it may break at the dash
        between the days, never inside a day (browsers break after a hyphen)."""
        days = [self.first_day] if self.first_day == self.last_day else [self.first_day, self.last_day]
        return Markup(" – ").join(Markup('<span class="nowrap">{}</span>').format(day.isoformat()) for day in days)

    @property
    def days(self) -> list[date]:
        return [self.first_day + timedelta(days=i) for i in range((self.last_day - self.first_day).days + 1)]

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def _utc(local_day: date, zone: ZoneInfo) -> datetime:
    """Local midnight of a day, as naive UTC."""
    return datetime.combine(local_day, time(0), tzinfo=zone).astimezone(timezone.utc).replace(tzinfo=None)


def local_date(instant: datetime, zone: ZoneInfo) -> date:
    return instant.replace(tzinfo=timezone.utc).astimezone(zone).date()


def _first_day(kind: str, day: date) -> date:
    if kind == "daily":
        return day
    if kind == "weekly":
        return day - timedelta(days=day.weekday())
    if kind == "monthly":
        return day.replace(day=1)
    if kind == "quarterly":
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if kind == "yearly":
        return date(day.year, 1, 1)
    raise ValueError(f"unknown period {kind!r}")


def _next_first_day(kind: str, first: date) -> date:
    if kind == "daily":
        return first + timedelta(days=1)
    if kind == "weekly":
        return first + timedelta(days=7)
    months = {"monthly": 1, "quarterly": 3, "yearly": 12}[kind]
    month = first.month - 1 + months
    return date(first.year + month // 12, month % 12 + 1, 1)


def period_at(kind: str, tz_name: str, instant: datetime, custom: tuple[date, date] | None = None) -> Period | None:
    """The period of this kind that contains `instant` (naive UTC); for a
    custom range, the range itself, or None when `instant` is outside it."""
    zone = ZoneInfo(tz_name)
    if kind == "custom":
        first, last = custom
        period = Period(_utc(first, zone), _utc(last + timedelta(days=1), zone), first, last)
        return period if period.contains(instant) else None
    first = _first_day(kind, local_date(instant, zone))
    following = _next_first_day(kind, first)
    return Period(_utc(first, zone), _utc(following, zone), first, following - timedelta(days=1))


def current_period(budget, tz_name: str, now: datetime) -> Period | None:
    """The budget's period at `now`. A custom budget before its range starts
    shows the range (nothing spent yet); after it ended, the range too."""
    if budget.period == "custom":
        zone = ZoneInfo(tz_name)
        first, last = budget.custom_start, budget.custom_end
        return Period(_utc(first, zone), _utc(last + timedelta(days=1), zone), first, last)
    return period_at(budget.period, tz_name, now)


def previous_period(budget, tz_name: str, period: Period) -> Period | None:
    if budget.period == "custom":
        return None
    return period_at(budget.period, tz_name, period.start - timedelta(seconds=1))


def period_of_event(budget, tz_name: str, occurred_at: datetime) -> Period | None:
    custom = (budget.custom_start, budget.custom_end) if budget.period == "custom" else None
    return period_at(budget.period, tz_name, occurred_at, custom)

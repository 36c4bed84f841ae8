"""Budget periods: calendar-aligned in the organization's time zone."""
from __future__ import annotations

from datetime import date, datetime
from types import SimpleNamespace

import pytest

from costguardian.services.budgets.periods import current_period, period_at, previous_period

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)


def test_monthly_resets_at_local_midnight_on_the_first():
    # 00:30 UTC on 1 Dec is still 30 Nov in New York (UTC-5).
    p = period_at("monthly", "America/New_York", datetime(2026, 12, 1, 0, 30))
    assert (p.first_day, p.last_day) == (date(2026, 11, 1), date(2026, 11, 30))
    assert p.start == datetime(2026, 11, 1, 4)  # EDT (UTC-4) on 1 Nov
    assert p.end == datetime(2026, 12, 1, 5)  # EST (UTC-5) on 1 Dec
    # 23:30 UTC on 30 Nov is already 1 Dec in Tokyo (UTC+9).
    p = period_at("monthly", "Asia/Tokyo", datetime(2026, 11, 30, 15, 30))
    assert p.first_day == date(2026, 12, 1) and p.start == datetime(2026, 11, 30, 15)


def test_dst_change_makes_a_day_23_or_25_hours_long():
    spring = period_at("daily", "Europe/Berlin", datetime(2026, 3, 29, 12))
    assert (spring.end - spring.start).total_seconds() == 23 * 3600
    autumn = period_at("daily", "Europe/Berlin", datetime(2026, 10, 25, 12))
    assert (autumn.end - autumn.start).total_seconds() == 25 * 3600
    month = period_at("monthly", "Europe/Berlin", datetime(2026, 3, 15))
    assert month.start == datetime(2026, 2, 28, 23) and month.end == datetime(2026, 3, 31, 22)


def test_weeks_start_on_monday_and_quarters_and_years():
    week = period_at("weekly", "UTC", datetime(2026, 11, 26, 9))  # a Thursday
    assert (week.first_day, week.last_day) == (date(2026, 11, 23), date(2026, 11, 29))
    q = period_at("quarterly", "UTC", datetime(2026, 11, 26))
    assert (q.first_day, q.last_day) == (date(2026, 10, 1), date(2026, 12, 31))
    q1 = period_at("quarterly", "UTC", datetime(2026, 3, 31, 23, 59))
    assert (q1.first_day, q1.last_day) == (date(2026, 1, 1), date(2026, 3, 31))
    y = period_at("yearly", "Pacific/Auckland", datetime(2026, 12, 31, 11, 30))  # already 1 Jan 2027 there
    assert y.first_day == date(2027, 1, 1)


@pytest.mark.parametrize("instant, first, last", [
    (datetime(2028, 2, 29, 12), date(2028, 2, 1), date(2028, 2, 29)),  # leap year
    (datetime(2027, 2, 28, 12), date(2027, 2, 1), date(2027, 2, 28)),
    (datetime(2026, 12, 31, 23, 59, 59), date(2026, 12, 1), date(2026, 12, 31)),  # year end
    (datetime(2026, 4, 30, 0, 0), date(2026, 4, 1), date(2026, 4, 30)),
])
def test_month_ends_and_leap_years(instant, first, last):
    p = period_at("monthly", "UTC", instant)
    assert (p.first_day, p.last_day) == (first, last)
    assert p.contains(instant)


def test_custom_range_is_local_whole_days():
    p = period_at("custom", "America/Los_Angeles", datetime(2026, 12, 10), (date(2026, 12, 1), date(2026, 12, 15)))
    assert p.start == datetime(2026, 12, 1, 8) and p.end == datetime(2026, 12, 16, 8)
    assert period_at("custom", "UTC", datetime(2027, 1, 1), (date(2026, 12, 1), date(2026, 12, 15))) is None
    budget = SimpleNamespace(period="custom", custom_start=date(2026, 12, 1), custom_end=date(2026, 12, 15))
    assert current_period(budget, "UTC", datetime(2025, 1, 1)).first_day == date(2026, 12, 1)
    assert previous_period(budget, "UTC", p) is None


def test_previous_period():
    budget = SimpleNamespace(period="monthly")
    p = current_period(budget, "UTC", datetime(2026, 3, 10))
    prev = previous_period(budget, "UTC", p)
    assert (prev.first_day, prev.last_day) == (date(2026, 2, 1), date(2026, 2, 28))
    assert p.label == "2026-03-01 – 2026-03-31"

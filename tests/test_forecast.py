"""The budget forecast method (services.forecast) on small synthetic series."""
from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from costguardian.services.budgets import forecast

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)

USD = 1_000_000_000
TODAY = date(2026, 12, 10)  # a Thursday; the period is December


def _history(values, end: date = TODAY) -> list[tuple[date, int]]:
    """Daily spend (dollars) for the days before `end`, oldest first."""
    start = end - timedelta(days=len(values))
    return [(start + timedelta(days=i), int(v * USD)) for i, v in enumerate(values)]


def _december_after(today: date = TODAY) -> list[date]:
    return [today + timedelta(days=i) for i in range(1, (date(2026, 12, 31) - today).days + 1)]


def _spent(history, since: date = date(2026, 12, 1)) -> int:
    return sum(v for d, v in history if d >= since)


def test_flat_history_projects_flat_times_days():
    history = _history([100] * 56)
    spent = _spent(history)  # 9 days of December
    result = forecast.project(history, TODAY, spent, _december_after(), 1.0, 9.0)
    assert result.method == "trend"
    assert abs(result.total - 31 * 100 * USD) < USD  # 31 days × $100
    assert result.low <= result.total <= result.high
    assert result.crossing(2000 * USD) == date(2026, 12, 20)  # the 20th day reaches $2,000
    assert result.crossing(10_000 * USD) is None


def test_noisy_flat_history_gets_no_invented_trend():
    rng = random.Random(4)
    history = _history([100 * max(0.0, rng.gauss(1, 0.15)) for _ in range(56)])
    spent = _spent(history)
    result = forecast.project(history, TODAY, spent, _december_after(), 1.0, 9.0)
    expected = spent + 22 * 100 * USD
    assert abs(result.total - expected) < 0.05 * expected
    assert result.low < expected < result.high


def test_weekly_pattern_is_respected():
    days = [TODAY - timedelta(days=56 - i) for i in range(56)]
    history = [(d, (20 if d.weekday() >= 5 else 100) * USD) for d in days]
    spent = _spent(history)
    result = forecast.project(history, TODAY, spent, _december_after(), 1.0, 9.0)
    rest = [TODAY] + _december_after()
    expected = spent + sum((20 if d.weekday() >= 5 else 100) * USD for d in rest)
    assert abs(result.total - expected) < 0.02 * expected
    # each day of the path adds that weekday's spend: Saturday 12 Dec little, Monday 14 Dec a lot
    steps = {day: b[1] - a[1] for a, b in zip(result.path, result.path[1:]) for day in [b[0]]}
    assert steps[date(2026, 12, 12)] < 0.4 * steps[date(2026, 12, 14)]


def test_a_spike_does_not_explode_the_projection():
    values = [100] * 56
    values[-3] = 1000  # a 10x day three days ago
    history = _history(values)
    spent = _spent(history)
    result = forecast.project(history, TODAY, spent, _december_after(), 1.0, 9.0)
    expected = spent + 22 * 100 * USD  # the spike counts once, in what was spent
    assert abs(result.total - expected) < 0.03 * expected
    # the naive run rate would have said spent / 9 × 31
    assert result.total < spent / 9 * 31


def test_a_clear_trend_is_followed_and_damped():
    history = _history([100 + 3 * i for i in range(56)])  # +$3 a day, every day
    spent = _spent(history)
    result = forecast.project(history, TODAY, spent, _december_after(), 1.0, 9.0)
    flat = spent + 22 * (100 + 3 * 56) * USD  # the last level held
    undamped = spent + sum((100 + 3 * (56 + k)) * USD for k in range(22))
    assert flat < result.total < undamped


def test_growth_projection_beats_the_run_rate():
    history = _history([100 * 1.02 ** i for i in range(56)])
    spent = _spent(history)
    actual = spent + sum(int(100 * 1.02 ** (56 + k) * USD) for k in range(22))
    result = forecast.project(history, TODAY, spent, _december_after(), 1.0, 9.0)
    run_rate = spent / 9 * 31
    assert abs(result.total - actual) < abs(run_rate - actual)


def test_no_history_uses_the_run_rate():
    result = forecast.project([], TODAY, 90 * USD, _december_after(), 0.5, 9.0)
    assert result.method == "run rate"
    days_left = 0.5 + 21
    assert abs(result.total - (90 + 10 * days_left) * USD) < USD // 1000
    assert result.low == 90 * USD and result.high == result.total
    assert forecast.project([], TODAY, 0, _december_after(), 1.0, 0.0).total == 0


def test_never_below_what_was_spent_and_never_negative():
    history = _history([200 - 4 * i for i in range(56)])  # falling to zero and below
    result = forecast.project(history, TODAY, 50 * USD, _december_after(), 1.0, 9.0)
    assert result.total >= 50 * USD and result.low >= 50 * USD
    assert all(later[1] >= earlier[1] for earlier, later in zip(result.path, result.path[1:]))


def test_band_widens_with_noise():
    rng = random.Random(1)
    calm = _history([100 * rng.gauss(1, 0.02) for _ in range(56)])
    noisy = _history([100 * max(0.0, rng.gauss(1, 0.3)) for _ in range(56)])
    width = [(r.high - r.low) for r in (forecast.project(h, TODAY, _spent(h), _december_after(), 1.0, 9.0)
                                        for h in (calm, noisy))]
    assert width[0] < width[1] / 5

"""Spend forecasts for a budget period: robust level and trend, with a
weekday/weekend pattern, from the scope's recent daily spend.

The method (documented with its backtest in docs/ARCHITECTURE.md and
docs/PERFORMANCE.md):

1. History: the scope's spend per local day for up to 56 days before today.
2. Weekly pattern: with at least two weeks of history, weekday and weekend
   factors = their mean daily spend / the overall mean (clipped to 0.05–3);
   each day is divided by its factor ("deseasonalised").
3. Level and trend, robust to spikes: the Theil–Sen slope (the median of
   every pairwise slope) of the last 28 deseasonalised days, and the level
   today = the median of (value − slope × day) + slope × today. A slope the
   history cannot tell from noise is shrunk towards zero: multiplied by
   max(0, 1 − 1 / t²), t = slope / its standard error (t ≤ 1 keeps no
   trend, t = 2 keeps 75%, t = 4 keeps 94%; chosen by the backtest). The
   trend is damped (each further day adds 0.95× the previous day's
   increment), so one steep week does not project to infinity.
4. Projection: spend so far + the rest of today (today's expected spend ×
   the share of the day still to come) + each remaining day's level ×
   its weekday factor, never below zero.
5. Band, about an 80% interval (±1.28 σ of the projected total): each
   remaining day's own noise (robust σ = 1.4826 × median absolute residual,
   independent days), plus the uncertainty of the level (1.25 σ / √n) and of
   the slope (σ / √Σ(x − x̄)²), which do not average out over the days left.
6. With fewer than 3 days of history: the period's run rate so far.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from statistics import median

HISTORY_DAYS = 56
TREND_DAYS = 28
DAMPING = 0.95
Z80 = 1.2816
SHRINK_T = 1.0


@dataclass
class Forecast:
    total: int  # projected spend at period end, nanos
    low: int
    high: int
    path: list[tuple[date, int, int, int]] = field(default_factory=list)  # (day, cumulative expected, low, high)
    method: str = "trend"

    def crossing(self, amount: int) -> date | None:
        """The first day the expected cumulative spend reaches `amount`."""
        for day, expected, _, _ in self.path:
            if expected >= amount:
                return day
        return None


def _is_weekend(day: date) -> bool:
    return day.weekday() >= 5


def weekly_factors(history: list[tuple[date, int]]) -> tuple[float, float]:
    """(weekday factor, weekend factor)."""
    if len(history) < 14:
        return 1.0, 1.0
    weekend = [v for d, v in history if _is_weekend(d)]
    weekday = [v for d, v in history if not _is_weekend(d)]
    overall = sum(v for _, v in history) / len(history)
    if not weekend or not weekday or overall <= 0:
        return 1.0, 1.0
    clip = lambda f: min(max(f, 0.05), 3.0)  # noqa: E731
    return clip(sum(weekday) / len(weekday) / overall), clip(sum(weekend) / len(weekend) / overall)


def theil_sen(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(slope, intercept), robust to outliers."""
    if len(points) < 2:
        return 0.0, (points[0][1] if points else 0.0)
    slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1:] if x2 != x1]
    slope = median(slopes) if slopes else 0.0
    intercept = median(y - slope * x for x, y in points)
    return slope, intercept


def project(history: list[tuple[date, int]], today: date, spent: int, remaining_days: list[date],
            today_fraction_left: float, period_days_elapsed: float = 0.0) -> Forecast:
    """`history`: (day, spend) for days before today (oldest first, gaps are
    zero-spend days the caller filled in); `spent`: the period's spend so far;
    `remaining_days`: the period's days after today; `today_fraction_left`:
    0–1, how much of today is still to come."""
    history = history[-HISTORY_DAYS:]
    if len(history) < 3:
        rate = spent / period_days_elapsed if period_days_elapsed > 0 else 0.0
        days_left = today_fraction_left + len(remaining_days)
        total = spent + int(rate * days_left)
        path, cumulative = [], spent + rate * today_fraction_left
        path.append((today, int(cumulative), int(cumulative), int(cumulative)))
        for day in remaining_days:
            cumulative += rate
            path.append((day, int(cumulative), int(cumulative), int(cumulative)))
        return Forecast(total, spent, max(total, spent), path, method="run rate")

    f_weekday, f_weekend = weekly_factors(history)
    factor = lambda d: f_weekend if _is_weekend(d) else f_weekday  # noqa: E731
    origin = history[0][0]
    x = lambda d: float((d - origin).days)  # noqa: E731
    recent = history[-TREND_DAYS:]
    points = [(x(d), v / factor(d)) for d, v in recent]
    slope, intercept = theil_sen(points)
    residuals = [y - (intercept + slope * px) for px, y in points]
    sigma = 1.4826 * median(abs(r) for r in residuals)
    # How well the history pins the level and the trend (ordinary least-squares
    # standard errors, with the robust sigma; the median is ~1.25x noisier).
    x_mean = sum(px for px, _ in points) / len(points)
    sxx = sum((px - x_mean) ** 2 for px, _ in points)
    level_se = 1.2533 * sigma / math.sqrt(len(points))
    slope_se = sigma / math.sqrt(sxx) if sxx > 0 else 0.0
    # A trend the history cannot tell from noise is shrunk towards none
    # (t = slope / its standard error; t = 1 keeps nothing, t = 2 keeps 75%).
    if slope_se > 0 and slope != 0:
        slope *= max(0.0, 1.0 - (SHRINK_T * slope_se / slope) ** 2)
        intercept = median(y - slope * px for px, y in points)

    def steps_ahead(day: date) -> float:
        steps = (day - today).days
        return sum(DAMPING ** k for k in range(1, steps + 1)) if steps > 0 else 0.0

    def level(day: date) -> float:
        return max(intercept + slope * (x(today) + steps_ahead(day)), 0.0)

    # The band: each day's own noise, plus the level's and the trend's
    # uncertainty, which do not average out over the days left.
    noise = weight = lever = 0.0

    def band() -> float:
        return Z80 * math.sqrt(noise + (level_se * weight) ** 2 + (slope_se * lever) ** 2)

    expected_today = level(today) * factor(today)
    cumulative = spent + expected_today * today_fraction_left
    noise = (sigma * factor(today)) ** 2 * today_fraction_left
    weight = factor(today) * today_fraction_left
    lever = weight * (x(today) - x_mean)
    path = [(today, int(cumulative), int(max(spent, cumulative - band())), int(cumulative + band()))]
    for day in remaining_days:
        cumulative += level(day) * factor(day)
        noise += (sigma * factor(day)) ** 2
        weight += factor(day)
        lever += factor(day) * (x(today) + steps_ahead(day) - x_mean)
        path.append((day, int(cumulative), int(max(spent, cumulative - band())), int(cumulative + band())))
    _, total, low, high = path[-1]
    return Forecast(total, low, high, path)

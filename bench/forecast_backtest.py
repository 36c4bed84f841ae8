"""Backtest of the budget forecast (services.budgets.forecast.project) against a naive
run rate, on synthetic daily series and on the demo organization's usage.

    .venv/bin/python bench/forecast_backtest.py [--seeds 5] [--months 6] [--demo-events 100000] [--no-demo]

For each series, on forecast days 5, 10, 15, 20 and 25 of 30-day "months"
(several months per series, several random seeds for the synthetic ones): the
forecast is made at the end of that day (the days so far are spent, the
method sees every earlier day as history), and its projected month total is
compared with the month's actual total. Reported per series and forecast day:
MAPE of the method, MAPE of the run rate (spend so far / days elapsed × 30),
the share of actual totals inside the method's [low, high] band, and the
method's mean signed error (bias). Prints Markdown tables for
docs/PERFORMANCE.md. Not a test.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from costguardian import clock
from costguardian.services.budgets import forecast  # noqa: E402  (pure Python, no app needed)

MONTH = 30
FORECAST_DAYS = (5, 10, 15, 20, 25)
WARMUP = 56  # days of history before the first evaluated month
START = date(2025, 1, 6)  # a Monday
NANOS = 1_000_000_000


def _noise(rng: random.Random, sd: float = 0.1) -> float:
    return max(0.0, rng.gauss(1.0, sd))


def synthetic(kind: str, days: int, rng: random.Random) -> list[float]:
    """Daily spend in dollars for `days` days from START."""
    values = []
    for t in range(days):
        day = START + timedelta(days=t)
        month_day = (t - WARMUP) % MONTH if t >= WARMUP else -1
        if kind == "flat":
            v = 100.0
        elif kind == "growing 2%/day":
            v = 100.0 * 1.02 ** t
        elif kind == "weekly (weekends 20%)":
            v = 20.0 if day.weekday() >= 5 else 100.0
        elif kind == "10× one-day spike":
            # one spike a month, on a different day each month
            month = (t - WARMUP) // MONTH if t >= WARMUP else -1
            v = 1000.0 if month >= 0 and month_day == (3 + 7 * month) % 27 else 100.0
        elif kind == "step ×2 (day 12 of month 1)":
            v = 200.0 if t >= WARMUP + 11 else 100.0
        else:
            raise ValueError(kind)
        values.append(v * _noise(rng))
    return values


SYNTHETIC = ["flat", "growing 2%/day", "weekly (weekends 20%)", "10× one-day spike", "step ×2 (day 12 of month 1)"]


def backtest(values: list[float], start: date, months: list[int]) -> dict[int, list[tuple]]:
    """{forecast day: [(method total, low, high, run rate, actual)]} over the months
    starting at the given day offsets."""
    nanos = [int(v * NANOS) for v in values]
    results: dict[int, list[tuple]] = {d: [] for d in FORECAST_DAYS}
    for first in months:
        actual = sum(nanos[first:first + MONTH])
        for d in FORECAST_DAYS:
            spent = sum(nanos[first:first + d])
            history = [(start + timedelta(days=i), nanos[i]) for i in range(first + d)]
            today = start + timedelta(days=first + d)  # the next day, at its midnight
            remaining = [start + timedelta(days=first + i) for i in range(d + 1, MONTH)]
            projection = forecast.project(history, today, spent, remaining, 1.0, float(d))
            run_rate = spent / d * MONTH
            results[d].append((projection.total, projection.low, projection.high, run_rate, actual))
    return results


def summarize(results: dict[int, list[tuple]]) -> dict[int, tuple[float, float, float, float]]:
    """{day: (method MAPE %, run-rate MAPE %, share in band %, method bias %)}."""
    table = {}
    for d, rows in results.items():
        method = [abs(t - a) / a for t, _, _, _, a in rows if a > 0]
        naive = [abs(r - a) / a for _, _, _, r, a in rows if a > 0]
        inside = [low <= a <= high for _, low, high, _, a in rows]
        bias = [(t - a) / a for t, _, _, _, a in rows if a > 0]
        table[d] = (100 * statistics.mean(method), 100 * statistics.mean(naive), 100 * statistics.mean(inside),
                    100 * statistics.mean(bias))
    return table


def demo_series(events: int) -> dict[str, list[tuple[date, int]]]:
    """Daily spend of the demo organization and three of its scopes (90 days)."""
    instance = Path(tempfile.mkdtemp(prefix="cg-forecast-"))
    os.environ["CG_INSTANCE_PATH"] = str(instance)
    os.environ["DATABASE_URL"] = f"sqlite:///{instance}/demo.db"
    os.environ["HUEY_URL"] = f"sqlite:///{instance}/huey.db"
    from costguardian import create_app
    from costguardian.db import migrate
    from costguardian.extensions import db
    from costguardian.models import Budget, Department, Organization
    from costguardian.services.budgets import periods as budget_periods, budgets
    from costguardian.services.demo import seed as demo, usage as demo_usage

    app = create_app({"RATELIMIT_ENABLED": False})
    app.app_context().push()
    migrate(db.obj)
    series = {}
    with db.connection_context():
        demo.seed(instance)
        org = Organization.get(Organization.name == demo.DEMO_ORG)
        demo_usage.generate(org, events, seed=3)
        research = Department.in_org(org).where(Department.name == "Research").get()
        today = budget_periods.local_date(clock.now(), ZoneInfo(org.time_zone))
        first, last = today - timedelta(days=demo_usage.DAYS - 1), today - timedelta(days=1)  # whole days only
        for label, scope in (("demo: organization", {}), ("demo: Research dept.", {"scope_department": research}),
                             ("demo: provider openai", {"scope_provider": "openai"}),
                             ("demo: tag env:prod", {"scope_tag": "env:prod"})):
            budget = Budget(organization=org, name=label, amount_nanos=1, period="monthly", **scope)
            series[label] = budgets.daily_spend(budget, first, last, org.time_zone)
    return series


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--demo-events", type=int, default=100_000)
    parser.add_argument("--no-demo", action="store_true")
    args = parser.parse_args()

    tables: dict[str, dict] = {}
    for kind in SYNTHETIC:
        merged: dict[int, list] = {d: [] for d in FORECAST_DAYS}
        for seed in range(args.seeds):
            rng = random.Random(f"{kind}-{seed}")
            values = synthetic(kind, WARMUP + args.months * MONTH, rng)
            result = backtest(values, START, [WARMUP + m * MONTH for m in range(args.months)])
            for d in FORECAST_DAYS:
                merged[d].extend(result[d])
        tables[kind] = (summarize(merged), len(merged[FORECAST_DAYS[0]]))
    if not args.no_demo:
        for label, daily in demo_series(args.demo_events).items():
            values = [v / NANOS for _, v in daily]
            # 89 whole days: months on days 30–59 and 60–89 (history: 29 and 59 days)
            months = [len(values) - 2 * MONTH, len(values) - MONTH]
            result = backtest(values, daily[0][0], months)
            tables[label] = (summarize(result), len(months))

    print(f"| series | forecasts per day | {' | '.join(f'day {d}' for d in FORECAST_DAYS)} |")
    print(f"|---|---|{'---|' * len(FORECAST_DAYS)}")
    for label, (table, n) in tables.items():
        cells = [f"{m:.1f} / {r:.1f} / {b:.0f}%" for m, r, b, _ in (table[d] for d in FORECAST_DAYS)]
        print(f"| {label} | {n} | {' | '.join(cells)} |")
    print("\ncells: method MAPE % / run-rate MAPE % / actuals inside the method's band")
    print("\nmethod bias (mean signed error %), by forecast day:")
    for label, (table, _) in tables.items():
        print(f"  {label:32} " + "  ".join(f"{table[d][3]:+6.1f}" for d in FORECAST_DAYS))
    overall_m = statistics.mean(t[d][0] for t, _ in tables.values() for d in FORECAST_DAYS)
    overall_r = statistics.mean(t[d][1] for t, _ in tables.values() for d in FORECAST_DAYS)
    print(f"\nmean over every series and day: method {overall_m:.1f}%, run rate {overall_r:.1f}%")
    if math.isnan(overall_m):
        sys.exit(1)


if __name__ == "__main__":
    main()

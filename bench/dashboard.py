"""Dashboard and explorer server time over a large demo organization, beside
the same answers computed from the raw events.

    .venv/bin/python bench/dashboard.py --instance /tmp/cg-1m [--events 1000000] [--database-url URL]

The instance folder keeps the scratch database (SQLite unless --database-url)
between runs; the demo organization is seeded through the ingest service up to
--events. Pages are timed through the WSGI app in-process (server time only).
The baseline computes each page's main numbers with SQL over usage_event.
Not a test: results go to docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import p95, scratch_app, seeded_demo, signed_in, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instance", required=True, help="folder for the scratch database and secrets")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database-url")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    app, instance, backend = scratch_app(args.instance, args.database_url)

    from peewee import fn

    from costguardian.extensions import db
    from costguardian.models import UsageEvent, UsageRollup
    from costguardian.services.usage import queries as usage_queries

    # Seeding sends budget notifications, which need the app; the timed
    # requests below get an app context of their own each.
    with app.app_context(), db.connection_context():
        credentials, org = seeded_demo(instance, args.events)
        events = UsageEvent.in_org(org).count()
        rollups = UsageRollup.select().where(UsageRollup.organization == org).count()

    client = signed_in(app, credentials["email"], credentials["password"])

    with db.connection_context():
        today = usage_queries.today(org)
        month_start, month_end = usage_queries.month_range(today)
        start_utc, end_utc = usage_queries.utc_bounds(org, month_start, month_end)
        last_30_start, _ = usage_queries.utc_bounds(org, today - timedelta(days=29), today)

    def raw_dashboard():
        """The dashboard's month total, top models and 30-day daily series from events."""
        with db.connection_context():
            base = UsageEvent.select().where(UsageEvent.organization == org)
            list(base.select(fn.COUNT(UsageEvent.id), fn.SUM(UsageEvent.cost_nanos))
                 .where(UsageEvent.occurred_at >= start_utc, UsageEvent.occurred_at < end_utc).tuples())
            list(base.select(UsageEvent.model, fn.SUM(UsageEvent.cost_nanos))
                 .where(UsageEvent.occurred_at >= start_utc, UsageEvent.occurred_at < end_utc)
                 .group_by(UsageEvent.model).tuples())
            day = fn.DATE(UsageEvent.occurred_at) if db.obj.__class__.__name__.startswith("Sqlite") \
                else UsageEvent.occurred_at.cast("date")
            list(base.select(day, UsageEvent.provider, fn.SUM(UsageEvent.cost_nanos))
                 .where(UsageEvent.occurred_at >= last_30_start).group_by(day, UsageEvent.provider).tuples())

    def raw_explorer():
        """The explorer's month grouped by model from events."""
        with db.connection_context():
            list(UsageEvent.select(UsageEvent.model, fn.COUNT(UsageEvent.id), fn.SUM(UsageEvent.input_tokens),
                                   fn.SUM(UsageEvent.output_tokens), fn.SUM(UsageEvent.cost_nanos))
                 .where(UsageEvent.organization == org, UsageEvent.occurred_at >= start_utc,
                        UsageEvent.occurred_at < end_utc).group_by(UsageEvent.model).tuples())

    month = usage_queries.UsageFilter(month_start, today)
    last_30 = usage_queries.UsageFilter(today - timedelta(days=29), today)

    def rollup_dashboard():
        """The dashboard's numbers, as its view computes them (rollups)."""
        with db.connection_context():
            usage_queries.month_to_date(org, today)
            usage_queries.summarize_many(org, month, ("model", "user", "department", "api_key"))
            usage_queries.daily_series(org, last_30, "provider")

    def rollup_explorer():
        with db.connection_context():
            usage_queries.explorer_report(org, month, "model")

    pages = {
        "dashboard /": "/",
        "explorer this month by model": f"/usage/?from={month_start}&to={month_end}&group_by=model",
        "explorer 90 days by department": f"/usage/?from={today - timedelta(days=89)}&to={today}&group_by=department",
        "explorer 90 days, tag filter, by provider":
            f"/usage/?from={today - timedelta(days=89)}&to={today}&tag=env:prod&group_by=provider",
    }
    results = {}
    for label, url in pages.items():
        first = client.get(url)
        assert first.status_code == 200, (label, first.status_code)
        results[label] = timed(lambda u=url: client.get(u), args.repeat)
    answers = {"dashboard numbers": (rollup_dashboard, raw_dashboard),
               "explorer table, month by model": (rollup_explorer, raw_explorer)}

    print(f"backend {backend}; {events:,} events, {rollups:,} rollup rows "
          f"({events / max(rollups, 1):.1f}x fewer); {args.repeat} requests per page")
    print(f"{'page (server time, rendering included)':45} {'p50 ms':>8} {'p95 ms':>8}")
    for label, samples in results.items():
        print(f"{label:45} {statistics.median(samples):8.1f} {p95(samples):8.1f}")
    print(f"{'the same answer':45} {'rollups p50':>12} {'raw events p50':>15} {'ratio':>7}")
    for label, (fast, slow) in answers.items():
        fast_p50 = statistics.median(timed(fast, args.repeat))
        slow_p50 = statistics.median(timed(slow, max(3, args.repeat // 5)))
        print(f"{label:45} {fast_p50:12.1f} {slow_p50:15.1f} {slow_p50 / fast_p50:6.0f}x")
    print(json.dumps({"events": events, "rollups": rollups}))


if __name__ == "__main__":
    main()

"""The platform console's pages over a large installation: server time of the
overview, system-wide usage, organizations, users and audit log, beside the
overview's numbers computed from the raw events.

    .venv/bin/python bench/console.py --instance /tmp/cg-1m [--events 1000000] [--orgs 20] [--database-url URL]

The instance folder keeps the scratch database between runs (the same one
bench/dashboard.py uses: the demo organization with --events events); --orgs
more organizations get a few thousand events each, so the per-organization
groupings have something to group. Pages are timed through the WSGI app
in-process, signed in as the demo superadmin. Not a test: results go to
docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
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
    parser.add_argument("--orgs", type=int, default=20, help="more organizations, with a few thousand events each")
    parser.add_argument("--database-url")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    app, instance, backend = scratch_app(args.instance, args.database_url)

    from peewee import fn

    from costguardian import clock
    from costguardian.extensions import db
    from costguardian.models import AuditLog, Organization, UsageEvent, UsageRollup, User
    from costguardian.services.actor import Actor
    from costguardian.services.demo import usage as demo_usage
    from costguardian.services.team import accounts, orgs

    with app.app_context(), db.connection_context():
        credentials, _ = seeded_demo(instance, args.events)
        root = User.by_email("root@example.com")
        if root is None:  # an instance seeded before the demo had platform admins
            root = accounts.sign_up("root@example.com", "Root Admin", credentials["password"], Actor.system())
        root.platform_role = "superadmin"
        root.save(only=[User.platform_role])
        for n in range(Organization.select().count() - 1, args.orgs):
            owner = accounts.sign_up(f"owner{n}@bench.example.com", f"Owner {n}", credentials["password"],
                                     Actor.system())
            other = orgs.create_organization(f"Bench Org {n}", owner, Actor.system())
            demo_usage.generate(other, 3_000, seed=n)
        events = UsageEvent.select().count()
        rollups = UsageRollup.select().count()
        organizations = Organization.select().count()
        audit_rows = AuditLog.select().count()

    client = signed_in(app, "root@example.com", credentials["password"])

    today = clock.now().date()
    pages = {
        "overview /admin/": "/admin/",
        "usage, last 30 days": "/admin/usage/",
        f"usage, 90 days ({today - timedelta(days=89)} to {today})":
            f"/admin/usage/?start={today - timedelta(days=89)}&end={today}",
        "organizations, first page": "/admin/organizations/",
        "users, first page": "/admin/users/",
        "audit log, first page": "/admin/audit/",
        "system health": "/admin/health/",
    }
    results = {}
    for label, url in pages.items():
        first = client.get(url)
        assert first.status_code == 200, (label, first.status_code)
        results[label] = timed(lambda u=url: client.get(u), args.repeat)

    month_start = today.replace(day=1)

    def raw_overview():
        """The overview's month numbers and 30-day events series, from the events."""
        with db.connection_context():
            list(UsageEvent.select(fn.COUNT(UsageEvent.id), fn.SUM(UsageEvent.cost_nanos))
                 .where(UsageEvent.occurred_at >= month_start).tuples())
            day = fn.DATE(UsageEvent.occurred_at) if backend == "SQLite" else UsageEvent.occurred_at.cast("date")
            list(UsageEvent.select(day, fn.COUNT(UsageEvent.id), fn.SUM(UsageEvent.cost_nanos))
                 .where(UsageEvent.occurred_at >= today - timedelta(days=29)).group_by(day).tuples())

    def rollup_overview():
        from costguardian.services.platform import stats

        with app.app_context(), db.connection_context():
            stats.overview(clock.now())

    print(f"backend {backend}; {organizations:,} organizations, {events:,} events, {rollups:,} rollup rows, "
          f"{audit_rows:,} audit rows; {args.repeat} requests per page")
    print(f"{'console page (server time, rendering included)':52} {'p50 ms':>8} {'p95 ms':>8}")
    for label, samples in results.items():
        print(f"{label:52} {statistics.median(samples):8.1f} {p95(samples):8.1f}")
    fast = statistics.median(timed(rollup_overview, args.repeat))
    slow = statistics.median(timed(raw_overview, max(3, args.repeat // 5)))
    print(f"overview numbers: rollups {fast:.1f} ms, raw events {slow:.1f} ms ({slow / fast:.0f}x)")


if __name__ == "__main__":
    main()

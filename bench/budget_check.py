"""The periodic budget check (tasks.check_budgets, every 5 minutes) at 10,000 budgets.

    .venv/bin/python bench/budget_check.py [--budgets 10000] [--orgs 4] [--database-url URL]

Seeds a scratch database (SQLite unless --database-url): a few organizations,
each with members, budgets scoped to them (one made by the budget service,
the rest inserted as copies of its row with another name and user) and 30 days
of usage through the ingest service, which keeps the budgets' counters. Then
times whole runs of the check: `budgets.check_all` (everything in one task)
and, when the batched check exists, each batch of `periodic.check_batch` — the
slowest batch is what one consumer must finish within the period.
Not a test: results go to docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import scratch_app  # noqa: E402


def seed(orgs_count: int, budget_count: int, members: int) -> None:
    from costguardian import clock
    from costguardian.extensions import db
    from costguardian.models import Budget, Membership, User
    from costguardian.services.actor import Actor
    from costguardian.services.budgets import budgets
    from costguardian.services.team import accounts, orgs
    from costguardian.services.usage import ingest

    actor = Actor.system()
    now = clock.now()
    per_org = budget_count // orgs_count
    for o in range(orgs_count):
        owner = accounts.sign_up(f"owner{o}@bench.example.com", "Owner", "bench password 1", actor)
        org = orgs.create_organization(f"Bench {o}", owner, actor)
        emails = [f"m{i}.o{o}@bench.example.com" for i in range(members)]
        with db.atomic():
            User.insert_many([{"email": e, "name": e, "password_hash": "x", "created_at": now} for e in emails]
                             ).execute()
            Membership.insert_many([{"organization": org.id, "user": u.id, "role": "member", "created_at": now}
                                    for u in User.select().where(User.email.in_(emails))]).execute()
        first = budgets.create(org, actor, {"name": "Per member 0", "amount_usd": "0.5", "period": "monthly",
                                            "thresholds": "50,80,100", "user": emails[0]})
        row = {k: v for k, v in first.__data__.items() if k != "id"}
        with db.atomic():
            copies = [{**row, "name": f"Per member {b}", "scope_user": emails[b % members],
                       "period": ("monthly", "weekly", "daily")[b % 3]} for b in range(1, per_org)]
            for start in range(0, len(copies), 500):
                Budget.insert_many(copies[start:start + 500]).execute()
        events = [{"event_id": f"o{o}-{i}-{d}", "provider": "openai", "model": "gpt-4o-mini",
                   "input_tokens": 200_000 + 1000 * (i % 7), "output_tokens": 40_000, "user": emails[i],
                   "occurred_at": (now - timedelta(days=d, hours=i % 5)).isoformat() + "Z"}
                  for i in range(members) for d in range(30)]
        for start in range(0, len(events), 500):
            result = ingest.ingest(org, None, events[start:start + 500], now=now)
            assert result.count("accepted") == len(events[start:start + 500]), "events refused"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budgets", type=int, default=10_000)
    parser.add_argument("--orgs", type=int, default=4)
    parser.add_argument("--members", type=int, default=100, help="members with usage per organization")
    parser.add_argument("--database-url")
    parser.add_argument("--instance")
    args = parser.parse_args()

    app, _instance, backend = scratch_app(args.instance, args.database_url, prefix="cg-budget-check-")
    logging.getLogger("costguardian").setLevel(logging.WARNING)
    from costguardian import clock
    from costguardian.extensions import db
    from costguardian.models import Budget, BudgetAlert
    from costguardian.services.budgets import budgets

    app.app_context().push()  # alerts render their notifications
    with db.connection_context():
        started = time.monotonic()
        seed(args.orgs, args.budgets, args.members)
        print(f"seeded {Budget.select().count():,} budgets in {args.orgs} organizations "
              f"in {time.monotonic() - started:.0f} s")
        print(f"backend: {backend}")
        for run in ("first run (raises the alerts)", "second run (nothing new)"):
            started = time.monotonic()
            counts = budgets.check_all(clock.now())
            took = time.monotonic() - started
            print(f"check_all, {run}: {took:.1f} s for {counts['budgets']:,} budgets "
                  f"({took * 1000 / max(1, counts['budgets']):.2f} ms each), {counts['alerts']:,} alerts")
        try:
            from costguardian.services.budgets import periodic
        except ImportError:
            return
        batches = periodic.plan()
        timings = []
        for ids in batches:
            started = time.monotonic()
            periodic.check_batch(ids, clock.now())
            timings.append(time.monotonic() - started)
        print(f"batched: {len(batches)} batches of ≤{periodic.BATCH_SIZE}; slowest {max(timings):.1f} s, "
              f"total {sum(timings):.1f} s; {BudgetAlert.select().count():,} alerts in all "
              "(ingest raised the threshold alerts as it counted; the check adds the forecast ones)")


if __name__ == "__main__":
    main()

"""Budget status cost with no history and with 1M events, beside the same
spend summed from the hourly rollups, and the ingest cost of budgets.

    .venv/bin/python bench/budget_status.py [--events 1000000] [--database-url URL] [--instance DIR]

Builds a fresh scratch database (SQLite in a temporary folder unless
--database-url, which must name an empty database), creates the demo
organization with ten budgets of different scopes and periods, and times
(the best of 3 rounds of --repeat calls, after a warm-up):

- `budgets.budget_status_for(...)`: the gateway's call for one request;
- `budgets.org_statuses(org)`: every budget of the organization (the status API);
- the alternative the issue names: each budget's current-period spend summed
  from the hourly rollups (`budget_accounting.spend_between`),

first with 0 events, then after seeding --events through the ingest service
(services.demo.usage, 90 days, with the budgets in place), and prints the
ratios. It also checks that the counters equal the rollup sums, and times
ingest of 500-event batches into an organization with no budget and one with
the same ten budgets (batches alternate between the two, so both grow alike).
Not a test: results go to docs/PERFORMANCE.md.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import p95, scratch_app, timed  # noqa: E402


# name, amount_usd, period, scope fields
BUDGETS = [
    ("Organization monthly", 50_000, "monthly", {}),
    ("Organization daily", 2_500, "daily", {}),
    ("Organization quarterly", 150_000, "quarterly", {}),
    ("Engineering monthly", 20_000, "monthly", {"department": "Engineering"}),
    ("Research × Anthropic", 4_000, "monthly", {"department": "Research", "provider": "anthropic"}),
    ("OpenAI monthly", 15_000, "monthly", {"provider": "openai"}),
    ("gpt-4o weekly", 2_000, "weekly", {"model": "gpt-4o", "provider": "openai"}),
    ("Production tag weekly", 8_000, "weekly", {"tag": "env:prod"}),
    ("Customer 001 monthly", 1_000, "monthly", {"user": "customer-001"}),
    ("Support bot key yearly", 100_000, "yearly", {"api_key": "support-bot"}),
]
ROUNDS = 3
MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-haiku-4-5"),
          ("anthropic", "claude-sonnet-4-5"), ("google", "gemini-2.5-flash")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database-url")
    parser.add_argument("--instance", help="folder for the scratch database and secrets (default: a new temp folder)")
    parser.add_argument("--repeat", type=int, default=500)
    parser.add_argument("--rollup-repeat", type=int, default=100)
    parser.add_argument("--ingest-batches", type=int, default=40, help="500-event batches per organization")
    args = parser.parse_args()

    app, instance, backend = scratch_app(args.instance, args.database_url, prefix="cg-budget-bench-")

    from costguardian import clock
    from costguardian.extensions import db
    from costguardian.models import Budget, Department, Organization, UsageEvent, UsageRollup, User
    from costguardian.services.budgets import accounting as budget_accounting, budgets
    from costguardian.services.demo import seed as demo, usage as demo_usage
    from costguardian.services.team import orgs
    from costguardian.services.usage import ingest
    from costguardian.services.actor import Actor

    app.app_context().push()  # alerts render their notifications
    actor = Actor.system()

    with db.connection_context():
        if User.select().exists():
            sys.exit("Give an empty database: this benchmark builds its own data.")
        (instance / "demo_credentials.json").unlink(missing_ok=True)
        demo.seed(instance)
        org = Organization.get(Organization.name == demo.DEMO_ORG)
        api_keys = demo_usage.demo_keys(org)

        def make_budgets(target) -> list:
            departments = {d.name: d.id for d in Department.in_org(target)}
            keys_by_name = {k.name: k.id for k in demo_usage.demo_keys(target).values()}
            made = []
            for name, amount, period, scope in BUDGETS:
                # Hard, so the gateway's admission reserves against the covering ones.
                data = {"name": name, "amount_usd": amount, "period": period, "thresholds": "50,80,100,150",
                        "enforcement": "hard"}
                if "department" in scope:
                    data["department_id"] = departments[scope["department"]]
                if "api_key" in scope:
                    data["api_key_id"] = keys_by_name[scope["api_key"]]
                for field in ("provider", "model", "tag", "user"):
                    if field in scope:
                        data[field] = scope[field]
                made.append(budgets.create(target, actor, data))
            return made

        made = make_budgets(org)
        departments = {d.name: d.id for d in Department.in_org(org)}
        # A call from the research notebooks to Claude Sonnet: covered by 4 of the 10 budgets.
        gateway_call = {"user": "member@example.com", "api_key": api_keys["research notebooks"].id,
                        "department": departments["Research"], "provider": "anthropic",
                        "model": "claude-sonnet-4-5", "tags": ["env:prod"]}
        covering = len(budgets.budget_status_for(org, **gateway_call))

        from costguardian.services.gateway import admission

        call = admission.Call(org=org, api_key=api_keys["research notebooks"], provider="anthropic",
                              model="claude-sonnet-4-5", user="member@example.com",
                              department_id=departments["Research"], tags=["source:gateway", "env:prod"],
                              body={"model": "claude-sonnet-4-5", "max_tokens": 1024,
                                    "messages": [{"role": "user", "content": "Summarise this quarter. " * 40}]})

        def admit_and_settle():
            admission.settle(admission.admit(call))

        def counters_all():
            budgets.org_statuses(org)

        def counters_gateway():
            budgets.budget_status_for(org, **gateway_call)

        def rollups_all():
            now = clock.now()
            tz_name = org.time_zone
            for budget in Budget.in_org(org):
                period = budgets._period(budget, now, tz_name)
                budget_accounting.spend_between(budget_accounting.Scope.of(budget), period.start, period.end)

        def best_of(fn, repeat: int) -> list[float]:
            """Warm up, then the round (of ROUNDS) with the lowest median: other
            processes on the machine only ever make a round slower."""
            timed(fn, max(10, repeat // 10))
            return min((timed(fn, repeat) for _ in range(ROUNDS)), key=statistics.median)

        def measure() -> dict:
            return {"gateway": best_of(counters_gateway, args.repeat), "all": best_of(counters_all, args.repeat),
                    "admission": best_of(admit_and_settle, args.repeat),
                    "rollups": best_of(rollups_all, args.rollup_repeat)}

        empty = measure()

        have = UsageEvent.in_org(org).count()
        started = time.monotonic()
        demo_usage.generate(org, args.events - have, seed=1)
        seeded_in = time.monotonic() - started
        events = UsageEvent.in_org(org).count()
        rollup_rows = UsageRollup.select().where(UsageRollup.organization == org).count()
        full = measure()

        # Exact: every counter equals its period's sum over the rollups.
        exact = all(
            (st.spend, st.requests) == budget_accounting.spend_between(
                budget_accounting.Scope.of(st.budget), st.period.start, st.period.end)
            for st in budgets.org_statuses(org))

        # Ingest overhead: two fresh organizations, one with the ten budgets.
        owner = User.by_email(demo.OWNER_EMAIL)
        plain = _bench_org(orgs, Department, "Bench plain", owner, actor, demo)
        budgeted = _bench_org(orgs, Department, "Bench budgeted", owner, actor, demo)
        plain_key = demo_usage.demo_keys(plain)["research notebooks"]
        make_budgets(budgeted)
        budgeted_key = demo_usage.demo_keys(budgeted)["research notebooks"]
        rng = random.Random(2)
        ingest_ms = {"plain": [], "budgeted": []}
        for n in range(args.ingest_batches * 2):
            which = "plain" if n % 2 == 0 else "budgeted"
            target, key = (plain, plain_key) if which == "plain" else (budgeted, budgeted_key)
            batch = _batch(rng, n, clock.now())
            started = time.perf_counter()
            result = ingest.ingest(target, key, batch)
            ingest_ms[which].append((time.perf_counter() - started) * 1000)
            assert result.count("accepted") == len(batch), result.as_json()

    def row(label, samples):
        return f"{label:66} {statistics.median(samples):9.3f} {p95(samples):9.3f}"

    print(f"backend {backend}; demo organization with {len(made)} budgets; "
          f"{events:,} events ({rollup_rows:,} rollup rows) seeded in {seeded_in:.0f} s with the budgets in place")
    print(f"{'call (ms, in-process)':66} {'p50':>9} {'p95':>9}")
    for label, key, reps in ((f"budget_status_for (gateway; {covering} covering budgets)", "gateway", args.repeat),
                             ("org_statuses (all 10 budgets, counters)", "all", args.repeat),
                             ("gateway admission: admit + settle (hard budgets)", "admission", args.repeat),
                             ("same spend from hourly rollups (10 × spend_between)", "rollups", args.rollup_repeat)):
        print(row(f"{label}, 0 events [{reps}]", empty[key]))
        print(row(f"{label}, {events:,} events [{reps}]", full[key]))
    print(f"{'ratio p50 at ' + format(events, ',') + ' / at 0 events':66} "
          f"{'gateway':>9} {'all':>9} {'admission':>9} {'rollups':>9}")
    ratios = {k: statistics.median(full[k]) / statistics.median(empty[k])
              for k in ("gateway", "all", "admission", "rollups")}
    print(f"{'':66} {ratios['gateway']:9.2f} {ratios['all']:9.2f} {ratios['admission']:9.2f} "
          f"{ratios['rollups']:9.2f}")
    print(f"rollups / counters at {events:,} events (p50, all budgets): "
          f"{statistics.median(full['rollups']) / statistics.median(full['all']):.0f}x")
    print(f"counters equal the rollup sums: {'yes' if exact else 'NO'}")
    plain_ms, budget_ms = statistics.median(ingest_ms["plain"]), statistics.median(ingest_ms["budgeted"])
    print(f"ingest of a 500-event batch (in-process, {args.ingest_batches} batches each): "
          f"0 budgets p50 {plain_ms:.1f} ms ({500_000 / plain_ms:,.0f} events/s), "
          f"10 budgets p50 {budget_ms:.1f} ms ({500_000 / budget_ms:,.0f} events/s), "
          f"overhead {100 * (budget_ms / plain_ms - 1):+.0f}%")
    print(json.dumps({"backend": backend, "events": events, "rollups": rollup_rows, "seconds_to_seed": round(seeded_in),
                      "p50": {k: [round(statistics.median(empty[k]), 3), round(statistics.median(full[k]), 3)]
                              for k in empty},
                      "p95": {k: [round(p95(empty[k]), 3), round(p95(full[k]), 3)] for k in empty},
                      "ingest_p50_ms": {k: round(statistics.median(v), 1) for k, v in ingest_ms.items()}}))


def _bench_org(orgs, Department, name, owner, actor, demo):
    org = orgs.create_organization(name, owner, actor, time_zone="Europe/Berlin")
    made = {}
    for department, parent in demo.DEPARTMENTS:
        made[department] = Department.create(organization=org, name=department, parent=made.get(parent))
    return org


def _batch(rng: random.Random, n: int, now) -> list[dict]:
    """500 events of this month (so every matching counter moves), 10% back-dated by up to a week."""
    events = []
    for i in range(500):
        provider, model = MODELS[rng.randrange(len(MODELS))]
        moment = now - timedelta(minutes=rng.randrange(60 * 24 * 7) if rng.random() < 0.1 else rng.randrange(60))
        event = {"event_id": f"bench-{n}-{i}", "provider": provider, "model": model,
                 "occurred_at": moment.isoformat() + "Z", "input_tokens": rng.randrange(100, 5000),
                 "output_tokens": rng.randrange(10, 800)}
        if rng.random() < 0.5:
            event["user"] = f"customer-{rng.randrange(1, 41):03d}"
        if rng.random() < 0.5:
            event["tags"] = ["env:prod", "feature:chat"]
        events.append(event)
    return events


if __name__ == "__main__":
    main()

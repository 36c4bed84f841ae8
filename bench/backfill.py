"""Batched backfill over a big usage_event table (costguardian/migrations_batched.py).

    .venv/bin/python -m bench.backfill --events 1000000
    .venv/bin/python -m bench.backfill --events 1000000 --database-url postgresql://postgres@127.0.0.1:5432/bench

Seeds `--events` usage events in SQL (two thirds of them gateway calls with a
gateway_request naming a credential, the rest ingest events), then runs
migration 0023's backfill of usage_event.credential_id from the start, as
`flask migrate --backfills` would, and prints the rows per second and the
longest batch (how long one batch holds its locks: the time another writer
may wait). A PostgreSQL database must exist and be empty.
"""
from __future__ import annotations

import argparse
import time

def seed(db, org_id: int, events: int, backend: str) -> None:
    """`events` usage events (every third an ingest event) and a gateway
    request naming credential 1 or 2 for each gateway event."""
    if backend == "sqlite":
        rows, pad, no, yes = ("WITH RECURSIVE n(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM n WHERE i < {hi}) ",
                              "printf('%09d', i)", "0", "1")
        source, mod = "FROM n", "%"
    else:
        rows, pad, no, yes = "", "lpad(i::text, 9, '0')", "false", "true"
        source, mod = "FROM generate_series({lo}, {hi}) AS n(i)", "%%"  # psycopg: a literal %
    when = "'2026-11-01 00:00:00'"
    for lo in range(1, events + 1, 200_000):
        hi = min(events, lo + 199_999)
        with db.atomic():
            db.execute_sql(
                rows.format(lo=lo, hi=hi)
                + 'INSERT INTO "usage_event" ("organization_id", "event_id", "occurred_at", "received_at", "provider", '
                '"model", "model_raw", "user_ref", "input_tokens", "cache_read_tokens", "cache_write_tokens", '
                '"output_tokens", "batch", "service_tier", "cost_nanos", "priced_by", "tags") '
                f"SELECT {org_id}, CASE WHEN i {mod} 3 = 0 THEN 'sdk_' ELSE 'gw_' END || {pad}, {when}, {when}, "
                f"'openai', 'gpt-4o', 'gpt-4o', '', 100, 0, 0, 50, {no}, '', 750000, 'catalog', '[]' "
                + source.format(lo=lo, hi=hi))
            db.execute_sql(
                rows.format(lo=lo, hi=hi)
                + 'INSERT INTO "gateway_request" ("organization_id", "request_id", "endpoint", "provider", "model", '
                '"credential_id", "started_at", "status_code", "outcome", "error", "streamed", "forwarded", '
                '"usage_estimated", "latency_ms") '
                f"SELECT {org_id}, 'gw_' || {pad}, 'chat.completions', 'openai', 'gpt-4o', 1 + i {mod} 2, {when}, 200, "
                f"'ok', '', {no}, {yes}, {no}, 300 " + source.format(lo=lo, hi=hi) + f" WHERE i {mod} 3 <> 0")
    if backend == "postgres":
        db.execute_sql("ANALYZE usage_event")
        db.execute_sql("ANALYZE gateway_request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=None)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--instance", default=None)
    args = parser.parse_args()

    from bench.scratch import scratch_app

    app, _, backend = scratch_app(args.instance, args.database_url, prefix="cg-backfill-")
    from costguardian import migrations_batched as batched
    from costguardian.extensions import db
    from costguardian.models import UsageEvent
    from costguardian.services.actor import Actor
    from costguardian.services.team import accounts, orgs

    name = "0023_usage_event_credential"
    batch_rows = args.batch_rows or batched.BATCH_ROWS
    with app.app_context(), db.connection_context():
        system = Actor.system()
        owner = accounts.sign_up("owner@backfill.example.com", "Owner", "correct horse battery staple", system)
        org = orgs.create_organization("Backfill", owner, system)
        started = time.monotonic()
        seed(db.obj, org.id, args.events, "postgres" if backend == "PostgreSQL" else "sqlite")
        print(f"{backend}: seeded {args.events:,} events in {time.monotonic() - started:.0f} s")
        batched.register(db.obj, name)
        longest = [0.0]
        last = [time.perf_counter()]

        def each(progress):
            now = time.perf_counter()
            longest[0] = max(longest[0], now - last[0])
            last[0] = now

        started = time.perf_counter()
        done = batched.run(db.obj, name, batch_rows, after_batch=each)
        seconds = time.perf_counter() - started
        filled = UsageEvent.select().where(UsageEvent.credential_id.is_null(False)).count()
    print(f"{backend}: backfilled {done.rows_done:,} of {args.events:,} rows in {done.batches:,} batches of "
          f"{batch_rows:,}: {seconds:.1f} s ({args.events / seconds:,.0f} rows/s visited), "
          f"longest batch {longest[0] * 1000:.0f} ms; {filled:,} events have a credential")


if __name__ == "__main__":
    main()

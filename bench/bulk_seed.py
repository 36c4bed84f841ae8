"""Bulk-load the demo organization with millions of usage events, the rows the
ingest service would have stored, then check them.

    .venv/bin/python bench/bulk_seed.py --instance /tmp/cg-10m --events 10000000 \
        [--database-url postgresql://postgres@127.0.0.1:5432/cg_bench_10m] [--days 90]

Ingest in-process stores 2–6k events/s; this stores the same rows far faster:
events are drawn like services/demo/usage.py (its services, models, people,
end users, tags and hourly rhythm, over --days), normalised with the
catalog and priced with the organization's OrgPrices (the pricing code
ingest uses) in Python, written with COPY on PostgreSQL (executemany in big
transactions on SQLite), and the hourly rollups, per-tag rollups and
dimension values are then built by one SQL aggregation each over the loaded
events, in the organization's rollup buckets (rollups.bucket_start). The demo
budgets are created from that spend and their counters rebuilt
(accounting.rebuild_org). Last, it checks itself: rollup sums equal raw sums
overall and for random hours and days, per-tag sums match, and sampled events
re-priced through OrgPrices.price give their stored cost; up to 200,000 events
it also rebuilds the rollups with the ingest service's own code
(rollups._add_to_rollups, rolled back) and compares them row for row. It exits
non-zero when a check fails.

Scratch databases only: run it against an empty instance folder or database
(it refuses an organization that already has events). Not a test.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import random
import sys
import time
from datetime import datetime, timedelta
from itertools import accumulate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import scratch_app

CHUNK = 200_000  # events generated and written per round
COLUMNS = ("organization_id", "event_id", "occurred_at", "received_at", "provider", "model", "model_raw",
           "api_key_id", "user_ref", "department_id", "input_tokens", "cache_read_tokens", "cache_write_tokens",
           "output_tokens", "batch", "service_tier", "cost_nanos", "priced_by", "tags", "credential_id")
MEASURES = ("requests", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "cost_nanos",
            "unpriced_requests")


class Generator:
    """Event rows as ingest stores them, drawn like services/demo/usage.generate."""

    def __init__(self, org, days: int, seed: int, now: datetime):
        from costguardian.models import NO_DEPARTMENT, NO_USER, Membership, User
        from costguardian.services.demo import usage as demo
        from costguardian.services.usage import catalog
        from costguardian.services.usage.pricing import OrgPrices

        self.demo, self.rng = demo, random.Random(seed)
        self.org_id = org.id
        self.prices = OrgPrices.for_org(org)
        self.now = now.replace(minute=0, second=0, microsecond=0)
        self.received_at = now
        api_keys = demo.demo_keys(org)
        # what validate_event takes from the key: its user (or none) and department
        self.keys = {name: (key.id, key.user.email if key.user_id else NO_USER, key.department_id or NO_DEPARTMENT)
                     for name, key in api_keys.items()}
        self.api_keys = api_keys
        self.members = [u.email for u in
                        User.select(User.email).join(Membership).where(Membership.organization == org)]
        self.service_cum = list(accumulate(s[2] for s in demo.SERVICES))
        self.model_cums = [list(accumulate(m[2] for m in s[3])) for s in demo.SERVICES]
        self.customer_cum = list(accumulate(1 / (i + 1) for i in range(len(demo.END_USERS))))
        self.member_cum = list(accumulate(range(len(self.members), 0, -1)))
        # provider and model as validate_event normalises them
        self.names = {}
        for _, _, _, models, _ in demo.SERVICES:
            for provider_raw, model_raw, *_ in models:
                provider = catalog.normalize_provider(provider_raw)
                self.names[(provider_raw, model_raw)] = (provider, catalog.resolve_model(provider, model_raw)[0])
        start = self.now - timedelta(days=days)
        self.hours, weights = [], []
        for h in range(days * 24):
            moment = start + timedelta(hours=h)
            growth = 1.0 + 0.8 * h / (days * 24)
            weights.append(demo.HOUR_WEIGHTS[moment.hour] * (0.35 if moment.weekday() >= 5 else 1.0) * growth)
            self.hours.append(moment)
        self.hour_cum = list(accumulate(weights))
        self.last_sent: dict[str, datetime] = {}
        self.rate_cache: dict = {}

    def rows(self, first: int, count: int) -> list[tuple]:
        from costguardian.services.usage.pricing import Tokens

        demo, rng, pick = self.demo, self.rng, self.demo._pick
        out = []
        for n in range(first, first + count):
            service_index = pick(rng, self.service_cum)
            name, _, _, service_models, (member_share, end_user_share) = demo.SERVICES[service_index]
            provider_raw, model_raw, _, typical_in, typical_out, cache_share = \
                service_models[pick(rng, self.model_cums[service_index])]
            moment = self.hours[pick(rng, self.hour_cum)] + timedelta(seconds=rng.randrange(3600))
            input_tokens = max(1, int(rng.lognormvariate(math.log(typical_in), 0.7)))
            cached = int(input_tokens * cache_share * rng.random()) if cache_share else 0
            output_tokens = int(rng.lognormvariate(math.log(typical_out), 0.6)) if typical_out else 0
            key_id, key_user, key_department = self.keys[name]
            user = ""
            roll = rng.random()
            if roll < member_share and self.members:
                user = self.members[pick(rng, self.member_cum)]
            elif roll < member_share + end_user_share:
                user = demo.END_USERS[pick(rng, self.customer_cum)]
            tags = []
            if rng.random() < 0.5:
                tags = [demo.TAGS[service_index % 3], "env:prod" if rng.random() < 0.9 else "env:staging"]
            provider, model = self.names[(provider_raw, model_raw)]
            cost, priced_by = self.prices.price(provider, model, moment, Tokens(input_tokens, cached, 0, output_tokens))
            out.append((self.org_id, f"evt_{n:028x}", moment, self.received_at, provider, model, model_raw, key_id,
                        user.lower() if "@" in user else (user or key_user), key_department or None,
                        input_tokens, cached, 0, output_tokens, False, "", cost, priced_by, tags, None))
            if moment > self.last_sent.get(name, moment - timedelta(seconds=1)):
                self.last_sent[name] = moment
        return out


def _copy_text(value) -> str:
    r"""One value in COPY's text format (\N for NULL; our strings need no escaping)."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def write_postgres(db, rows: list[tuple]) -> None:
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(_copy_text(v) for v in row))
        buffer.write("\n")
    connection = db.connection()
    with connection.cursor() as cursor, cursor.copy(f'COPY usage_event ({", ".join(COLUMNS)}) FROM STDIN') as copy:
        copy.write(buffer.getvalue())
    connection.commit()


def write_sqlite(db, rows: list[tuple]) -> None:
    sql = (f'INSERT INTO usage_event ({", ".join(COLUMNS)}) VALUES ({", ".join("?" * len(COLUMNS))})')
    with db.atomic():
        db.cursor().executemany(sql, [
            (*row[:2], row[2].isoformat(" "), row[3].isoformat(" "), *row[4:14], int(row[14]), *row[15:18],
             json.dumps(row[18]), row[19]) for row in rows])


def event_indexes(db, postgres: bool) -> list[tuple[str, str]]:
    """(name, CREATE statement) of usage_event's secondary indexes."""
    if postgres:
        return db.execute_sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'usage_event' "
                              "AND indexname <> 'usage_event_pkey'").fetchall()
    return db.execute_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'usage_event' "
                          "AND sql IS NOT NULL").fetchall()


def bucket_sql(postgres: bool, alignment: int) -> str:
    """rollups.bucket_start in SQL: floor(occurred_at + alignment, 1 h) - alignment."""
    if postgres:
        if not alignment:
            return "date_trunc('hour', e.occurred_at)"
        return (f"date_trunc('hour', e.occurred_at + interval '{alignment} minutes') "
                f"- interval '{alignment} minutes'")
    if not alignment:
        return "strftime('%Y-%m-%d %H:00:00', e.occurred_at)"
    return (f"datetime(strftime('%Y-%m-%d %H:00:00', e.occurred_at, '+{alignment} minutes'), "
            f"'-{alignment} minutes')")


def build_rollups(db, org_id: int, postgres: bool, alignment: int) -> None:
    bucket = bucket_sql(postgres, alignment)
    dims = "e.provider, e.model, COALESCE(e.api_key_id, 0), e.user_ref, COALESCE(e.department_id, 0)"
    sums = ("COUNT(*), SUM(e.input_tokens), SUM(e.cache_read_tokens), SUM(e.cache_write_tokens), "
            "SUM(e.output_tokens), SUM(COALESCE(e.cost_nanos, 0)), "
            "SUM(CASE WHEN e.cost_nanos IS NULL THEN 1 ELSE 0 END)")
    key = "organization_id, hour, provider, model, api_key_id, user_ref, department_id"
    with db.atomic():
        db.execute_sql(f"INSERT INTO usage_rollup ({key}, {', '.join(MEASURES)}) "
                       f"SELECT e.organization_id, {bucket}, {dims}, {sums} FROM usage_event e "
                       f"WHERE e.organization_id = {org_id} GROUP BY 1, 2, 3, 4, 5, 6, 7")
    tags = ("CROSS JOIN LATERAL jsonb_array_elements_text(e.tags) AS t(tag)" if postgres
            else "JOIN json_each(e.tags) AS t")
    tag = "t.tag" if postgres else "t.value"
    with db.atomic():
        db.execute_sql(f"INSERT INTO usage_tag_rollup (organization_id, tag, hour, provider, model, api_key_id, "
                       f"user_ref, department_id, {', '.join(MEASURES)}) "
                       f"SELECT e.organization_id, {tag}, {bucket}, {dims}, {sums} FROM usage_event e {tags} "
                       f"WHERE e.organization_id = {org_id} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8")
    # rollups.record_dimensions: every non-empty provider, model, user and tag with its latest hour
    with db.atomic():
        for dimension, column, table in (("provider", "provider", "usage_rollup"), ("model", "model", "usage_rollup"),
                                         ("user", "user_ref", "usage_rollup"), ("tag", "tag", "usage_tag_rollup")):
            db.execute_sql(f"INSERT INTO usage_dimension (organization_id, dimension, value, last_hour) "
                           f"SELECT organization_id, '{dimension}', {column}, MAX(hour) FROM {table} "
                           f"WHERE organization_id = {org_id} AND {column} <> '' GROUP BY organization_id, {column}")


def check(db, org, generator, samples: int = 20) -> list[str]:
    """The problems found (empty: the load is consistent)."""
    from peewee import fn

    from costguardian.models import Organization, UsageDayRollup, UsageEvent, UsageRollup, UsageTagRollup
    from costguardian.services.usage import days as day_rollups, rollups
    from costguardian.services.usage.pricing import OrgPrices, Tokens

    problems = []
    alignment = rollups.alignment(org)
    raw_sums = ("COUNT(*), SUM(input_tokens), SUM(cache_read_tokens), SUM(output_tokens), "
                "SUM(COALESCE(cost_nanos, 0)), SUM(CASE WHEN cost_nanos IS NULL THEN 1 ELSE 0 END)")
    rollup_sums = ("SUM(requests), SUM(input_tokens), SUM(cache_read_tokens), SUM(output_tokens), SUM(cost_nanos), "
                   "SUM(unpriced_requests)")
    param = db.param

    def same(label: str, where_raw: str, where_rollup: str, params: list) -> None:
        """The raw events at/after params[0] and before params[1] against the rollup buckets in between."""
        raw = db.execute_sql(f"SELECT {raw_sums} FROM usage_event WHERE organization_id = {param} {where_raw}",
                             [org.id, *params]).fetchone()
        rolled = db.execute_sql(f"SELECT {rollup_sums} FROM usage_rollup WHERE organization_id = {param} "
                                f"{where_rollup}", [org.id, *params]).fetchone()
        raw, rolled = [int(v or 0) for v in raw], [int(v or 0) for v in rolled]
        print(f"  {label}: {raw[0]:,} requests, ${raw[4] / 1e9:,.2f} " + ("ok" if raw == rolled else "MISMATCH"))
        if raw != rolled:
            problems.append(f"{label}: raw {raw} != rollups {rolled}")

    same("everything", "", "", [])
    first, last = db.execute_sql(f"SELECT MIN(hour), MAX(hour) FROM usage_rollup WHERE organization_id = {param}",
                                 [org.id]).fetchone()
    first, last = (datetime.fromisoformat(str(v)) for v in (first, last))
    rng = random.Random(7)
    span_hours = int((last - first).total_seconds() // 3600)
    for _ in range(5):
        hour = rollups.bucket_start(alignment, first + timedelta(hours=rng.randrange(span_hours + 1)))
        same(f"hour {hour:%Y-%m-%d %H:%M}", f"AND occurred_at >= {param} AND occurred_at < {param}",
             f"AND hour >= {param} AND hour < {param}", [hour, hour + timedelta(hours=1)])
    for _ in range(3):
        day = rollups.bucket_start(alignment, first + timedelta(days=rng.randrange(span_hours // 24)))
        params = [day, day + timedelta(days=1)]
        same(f"24 hours from {day:%Y-%m-%d %H:%M}", f"AND occurred_at >= {param} AND occurred_at < {param}",
             f"AND hour >= {param} AND hour < {param}", params)
    # per tag: the tag rollups against the events carrying the tag
    for tag in ("env:prod", "feature:chat"):
        like = f'%"{tag}"%'
        raw = db.execute_sql(f"SELECT COUNT(*), SUM(COALESCE(cost_nanos, 0)) FROM usage_event "
                             f"WHERE organization_id = {param} AND CAST(tags AS TEXT) LIKE {param}",
                             [org.id, like]).fetchone()
        rolled = (UsageTagRollup.select(fn.SUM(UsageTagRollup.requests), fn.SUM(UsageTagRollup.cost_nanos))
                  .where(UsageTagRollup.organization == org, UsageTagRollup.tag == tag).tuples().get())
        raw, rolled = [int(v or 0) for v in raw], [int(v or 0) for v in rolled]
        print(f"  tag {tag}: {raw[0]:,} requests " + ("ok" if raw == rolled else "MISMATCH"))
        if raw != rolled:
            problems.append(f"tag {tag}: raw {raw} != rollups {rolled}")
    # re-price sampled events through the real pricing function
    prices = OrgPrices.for_org(org)
    count = UsageEvent.in_org(org).count()
    repriced = 0
    for n in rng.sample(range(count), min(samples, count)):
        event = UsageEvent.get((UsageEvent.organization == org) & (UsageEvent.event_id == f"evt_{n:028x}"))
        cost, priced_by = prices.price(event.provider, event.model, event.occurred_at,
                                       Tokens(event.input_tokens, event.cache_read_tokens, event.cache_write_tokens,
                                              event.output_tokens), event.batch, event.service_tier)
        if (cost, priced_by) != (event.cost_nanos, event.priced_by):
            problems.append(f"event {n}: stored {event.cost_nanos} ({event.priced_by}), priced {cost}")
        repriced += 1
    print(f"  re-priced {repriced} sampled events: " + ("ok" if not any(p.startswith("event ") for p in problems)
                                                        else "MISMATCH"))
    rollup_rows = UsageRollup.select().where(UsageRollup.organization == org).count()
    print(f"  {count:,} events, {rollup_rows:,} rollup rows ({count / max(rollup_rows, 1):.1f}x fewer)")
    day_problems = day_rollups.differences(Organization.get_by_id(org.id))
    day_rows = UsageDayRollup.select().where(UsageDayRollup.organization == org).count()
    print(f"  daily rollups equal the hourly ones per local day ({day_rows:,} rows, "
          f"{rollup_rows / max(day_rows, 1):.1f}x fewer than hourly): " + ("ok" if not day_problems else "MISMATCH"))
    problems += day_problems[:20]
    if count <= SAME_AS_INGEST_UP_TO:
        problems += same_as_ingest(db, org)
    return problems


SAME_AS_INGEST_UP_TO = 200_000  # events held in memory for the comparison


def same_as_ingest(db, org) -> list[str]:
    """Rebuild the rollups, tag rollups and dimension values from the stored
    events with the ingest service's own code (rollups._add_to_rollups) in a
    transaction that is rolled back, and compare them row for row with the
    ones the SQL aggregation built."""
    from costguardian.models import (
        UsageDimension,
        UsageEvent,
        UsageRollup,
        UsageTagRollup,
    )
    from costguardian.services.usage import rollups

    tables = (UsageRollup, UsageTagRollup, UsageDimension)

    def rows_of() -> list[list[tuple]]:
        return [sorted(table.select().where(table.organization == org).tuples()) for table in tables]

    built = rows_of()
    with db.atomic() as transaction:
        for table in tables:
            table.delete().where(table.organization == org).execute()
        rollups._add_to_rollups(org.id, list(UsageEvent.in_org(org).dicts()), rollups.alignment(org),
                                None)  # the hourly tables only: those are compared
        by_ingest = rows_of()
        transaction.rollback()
    problems = []
    for table, ours, theirs in zip(tables, built, by_ingest):
        differ = len(set(ours) ^ set(theirs))
        print(f"  {table._meta.table_name}: {len(ours):,} rows, "
              + ("identical to the ingest code's" if ours == theirs else f"{differ} rows DIFFER from the ingest code's"))
        if ours != theirs:
            problems.append(f"{table._meta.table_name}: {differ} rows differ from rollups._add_to_rollups")
    return problems


def sizes(db, postgres: bool) -> None:
    import peewee

    if postgres:
        for table in ("usage_event", "usage_rollup", "usage_tag_rollup"):
            total, heap, rows = db.execute_sql(
                # a partitioned table's (usage_event's) size is its partitions'
                "SELECT SUM(pg_total_relation_size(c.oid)), SUM(pg_relation_size(c.oid)), "
                "(SELECT reltuples::bigint FROM pg_class WHERE relname = %s) FROM pg_class c "
                "WHERE c.oid = %s::regclass OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass)",
                [table, table, table]).fetchone()
            print(f"  {table}: {rows:,} rows, table {heap / 2**20:,.0f} MiB, with indexes {total / 2**20:,.0f} MiB "
                  f"({total / max(rows, 1):.0f} B/row)")
            for name, size in db.execute_sql(
                    "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
                    "WHERE relname = %s ORDER BY 1", [table]).fetchall():
                print(f"    index {name}: {size / 2**20:,.0f} MiB")
    else:
        try:
            for name, size in db.execute_sql("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name "
                                             "ORDER BY 2 DESC LIMIT 12").fetchall():
                print(f"  {name}: {size / 2**20:,.0f} MiB")
        except peewee.OperationalError as exc:  # dbstat is a compile-time option
            print(f"  (no dbstat: {exc})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instance", required=True, help="folder for the scratch database and secrets")
    parser.add_argument("--database-url")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-zone", help="set the demo organization's time zone first (e.g. Asia/Kolkata: "
                                             "rollup buckets start at half past the UTC hour)")
    parser.add_argument("--check-only", action="store_true", help="only run the checks and print sizes")
    args = parser.parse_args()

    app, instance, backend = scratch_app(args.instance, args.database_url)
    postgres = backend == "PostgreSQL"

    from costguardian import clock
    from costguardian.extensions import db
    from costguardian.models import Organization, UsageEvent
    from costguardian.services.budgets import accounting
    from costguardian.services.demo import seed as demo_seed
    from costguardian.services.usage import days as day_rollups, rollups

    with app.app_context(), db.connection_context():
        demo_seed.seed(instance)
        org = Organization.get(Organization.name == demo_seed.DEMO_ORG)
        generator = Generator(org, args.days, args.seed, clock.now())
        if not args.check_only:
            if UsageEvent.in_org(org).exists():
                sys.exit("the demo organization already has events: use a new instance or database")
            if args.time_zone:  # no events yet, so no rollups to realign
                Organization.update(time_zone=args.time_zone,
                                    rollup_offset_minutes=rollups.alignment_of(args.time_zone)).where(
                    Organization.id == org.id).execute()
                org = Organization.get_by_id(org.id)
            alignment = rollups.alignment(org)
            indexes = event_indexes(db, postgres)
            for name, _ in indexes:  # rebuilt after the load: far faster than keeping them up per row
                db.execute_sql(f'DROP INDEX "{name}"')
            if postgres:  # usage_event is partitioned by month (services/ops/partitions.py): COPY needs the months
                from costguardian.services.ops import partitions

                partitions.ensure_months([clock.now() - timedelta(days=d) for d in range(args.days + 1)])
            started = time.monotonic()
            generate_s = 0.0
            for first in range(0, args.events, CHUNK):
                tick = time.monotonic()
                rows = generator.rows(first, min(CHUNK, args.events - first))
                generate_s += time.monotonic() - tick
                (write_postgres if postgres else write_sqlite)(db, rows)
                done = first + len(rows)
                elapsed = time.monotonic() - started
                print(f"  {done:,} events in {elapsed:.0f} s ({done / elapsed:,.0f}/s; generating and pricing "
                      f"{generate_s:.0f} s)", flush=True)
            if postgres:  # the idempotency keys ingest writes with each event (partitions.insert_events)
                with db.atomic():
                    db.execute_sql('INSERT INTO usage_event_key SELECT organization_id, event_id, occurred_at '
                                   'FROM usage_event WHERE organization_id = %s', [org.id])
            loaded = time.monotonic()
            for _, create in indexes:
                db.execute_sql(create)
            indexed = time.monotonic()
            build_rollups(db, org.id, postgres, alignment)
            rolled_hours = time.monotonic()
            # The daily rollups are summed from the hourly ones by the same
            # build steps a change of zone runs (services/usage/days.py).
            Organization.update(day_rollup_zone=None).where(Organization.id == org.id).execute()
            day_rollups.build(org.id)
            org = Organization.get_by_id(org.id)
            rolled = time.monotonic()
            print(f"hourly rollups {rolled_hours - indexed:.0f} s; daily rollups {rolled - rolled_hours:.0f} s",
                  flush=True)
            demo_seed.seed_budgets(org)  # sized from the loaded spend
            accounting.rebuild_org(org)
            generator.demo._mark_used(generator.api_keys, generator.last_sent)
            db.execute_sql("ANALYZE")
            done = time.monotonic()
            print(f"loaded {args.events:,} events in {loaded - started:.0f} s "
                  f"({args.events / (loaded - started):,.0f}/s); indexes {indexed - loaded:.0f} s; "
                  f"rollups {rolled - indexed:.0f} s; budgets and analyze {done - rolled:.0f} s; "
                  f"total {done - started:.0f} s ({args.events / (done - started):,.0f} events/s)")
        print(f"checks ({backend}):")
        problems = check(db, org, generator)
        print("sizes:")
        sizes(db, postgres)
    if postgres and not args.check_only:
        # VACUUM cannot run in a transaction: its own autocommit connection (visibility map: index-only scans)
        import psycopg

        tick = time.monotonic()
        with psycopg.connect(args.database_url, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE usage_event")
            connection.execute("VACUUM ANALYZE usage_rollup")
            connection.execute("VACUUM ANALYZE usage_tag_rollup")
            connection.execute("VACUUM ANALYZE usage_day_rollup")
            connection.execute("VACUUM ANALYZE usage_day_tag_rollup")
        print(f"vacuum {time.monotonic() - tick:.0f} s")
    if problems:
        print("PROBLEMS:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()

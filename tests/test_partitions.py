"""Usage events partitioned by month on PostgreSQL (migration 0030,
services/ops/partitions.py): where events land, idempotency through
usage_event_key, the daily partition task, the fallback for a month without a
partition, retention dropping whole partitions, and the migration over
existing data. The backend-neutral tests run on SQLite too (one plain table)."""
from __future__ import annotations

import json
import os
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from peewee import PostgresqlDatabase

import tasks
from costguardian import clock
from costguardian.cli_deploy import check_background_work
from costguardian.db import migration_runner
from costguardian.extensions import db
from costguardian.models import Organization, UsageEvent, UsageRollup
from costguardian.services import keys
from costguardian.services.ops import partitions, retention
from costguardian.services.usage import ingest
from tests.support import SYSTEM

NOW = datetime(2027, 8, 15, 12, 0)
MONTHS = [datetime(2027, 3, 10, 9, 0), datetime(2027, 5, 20, 9, 0), datetime(2027, 7, 1, 0, 0),
          datetime(2027, 8, 15, 11, 0)]

postgres_only = pytest.mark.skipif("config.cg_backend != 'postgres'",
                                   reason="usage events are partitioned on PostgreSQL only; SQLite keeps one table")


def _event(event_id: str, when: datetime, tokens: int = 1000) -> dict:
    return {"event_id": event_id, "provider": "openai", "model": "gpt-4o-mini", "input_tokens": tokens,
            "output_tokens": 10, "occurred_at": when.isoformat() + "Z"}


def _statuses(org, events, now=NOW) -> list[str]:
    return [r.status for r in ingest.ingest(org, None, events, now=now).results]


def _where(event_id: str) -> str:
    return db.execute_sql('SELECT tableoid::regclass::text FROM "usage_event" WHERE "event_id" = %s',
                          (event_id,)).fetchone()[0]


def _totals(org) -> tuple[int, int, int]:
    row = UsageRollup.select().where(UsageRollup.organization == org)
    return (sum(r.requests for r in row), sum(r.input_tokens for r in row), sum(r.cost_nanos for r in row))


@postgres_only
def test_after_the_migrations_usage_events_are_partitioned_by_month(app_ctx):
    assert partitions.partitioned()
    with time_machine.travel(NOW.replace(tzinfo=timezone.utc), tick=False):
        partitions.ensure_ahead()
        names = {p.name for p in partitions.partitions()}
        assert {partitions.name_of(datetime(2027, m, 1)) for m in (8, 9, 10, 11)} <= names
        assert partitions.months_ahead() >= 3
    assert db.execute_sql("SELECT COUNT(*) FROM pg_inherits WHERE inhparent = 'usage_event'::regclass "
                          "AND inhrelid = 'usage_event_y2027m08'::regclass").fetchone()[0] == 1


def test_events_over_four_months_land_in_their_months_and_count_once(app_ctx, make_org, backend):
    org = make_org("Acme", time_zone="UTC")
    events = [_event(f"m{i}", when, 1000 + i) for i, when in enumerate(MONTHS)]
    assert _statuses(org, events) == ["accepted"] * 4
    assert _statuses(org, events) == ["duplicate"] * 4
    # The same numbers on both backends: rollups and counters do not see the partitions.
    assert UsageEvent.select().count() == 4
    assert _totals(org)[:2] == (4, 4006)
    if backend == "postgres":
        for i, when in enumerate(MONTHS):
            assert _where(f"m{i}") in (partitions.name_of(when), *(p.name for p in partitions.partitions()
                                                                   if p.lower is None))
        assert _where("m3") == "usage_event_y2027m08"
        keys = db.execute_sql('SELECT COUNT(*) FROM "usage_event_key" WHERE "organization_id" = %s',
                              (org.id,)).fetchone()[0]
        assert keys == 4


def test_an_event_id_is_stored_once_whatever_its_time(app_ctx, make_org):
    org = make_org("Acme", time_zone="UTC")
    first, other_month = MONTHS[1], MONTHS[3]
    # Within one batch: the second use of an id is a duplicate, at the same or another time.
    assert _statuses(org, [_event("a", first), _event("a", first), _event("a", other_month)]) == \
        ["accepted", "duplicate", "duplicate"]
    # Across batches: stored ids are duplicates at their own time or any other.
    assert _statuses(org, [_event("a", first), _event("a", other_month), _event("b", other_month)]) == \
        ["duplicate", "duplicate", "accepted"]
    stored = {e.event_id: e.occurred_at for e in UsageEvent.select()}
    assert stored == {"a": first, "b": other_month}
    assert _totals(org)[0] == 2
    # Another organization may use the same id.
    other = make_org("Globex", time_zone="UTC")
    assert _statuses(other, [_event("a", other_month)]) == ["accepted"]


def test_two_threads_sending_the_same_ids_at_different_times_store_each_once(app, make_org):
    with app.app_context(), db.connection_context():
        org = make_org("Acme", time_zone="UTC")
    barrier, errors, accepted = threading.Barrier(2), [], []

    def send(when: datetime):
        try:
            with app.app_context(), db.connection_context():
                barrier.wait(timeout=10)
                result = ingest.ingest(org, None, [_event(f"t{i}", when) for i in range(200)], now=NOW)
                accepted.append(result.count("accepted"))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(when,)) for when in (MONTHS[0], MONTHS[3])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sum(accepted) == 200
    with app.app_context(), db.connection_context():
        assert UsageEvent.select().count() == 200
        assert _totals(org)[0] == 200


@postgres_only
def test_the_daily_task_creates_months_ahead_idempotently_even_when_two_race(app):
    later = datetime(2031, 2, 10, 8, 0)  # far enough that no other test made these months
    wanted = {partitions.name_of(datetime(2031, m, 1)) for m in (2, 3, 4, 5)}
    with app.app_context(), db.connection_context():
        assert not wanted & {p.name for p in partitions.partitions()}
        with time_machine.travel(later.replace(tzinfo=timezone.utc), tick=False):
            assert partitions.months_ahead() == 0
    barrier, errors, created = threading.Barrier(2), [], []

    def run():
        try:
            with app.app_context(), db.connection_context():
                with time_machine.travel(later.replace(tzinfo=timezone.utc), tick=False):
                    barrier.wait(timeout=10)
                    created.append(partitions.ensure_ahead())
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(created[0] + created[1]) == sorted(wanted)  # each month made once, by one of them
    with app.app_context(), db.connection_context():
        with time_machine.travel(later.replace(tzinfo=timezone.utc), tick=False):
            tasks.create_usage_partitions()  # the periodic task, run again: nothing new
            assert partitions.ensure_ahead() == []
            assert partitions.months_ahead() == 3
            later_names = [p.name for p in partitions.partitions() if p.name.startswith("usage_event_y2031")]
            assert sorted(later_names) == sorted(wanted)


def test_an_event_in_a_month_without_a_partition_still_lands(app_ctx, make_org, backend):
    org = make_org("Acme", time_zone="UTC")
    when = datetime(2033, 6, 30, 23, 58)  # no task ran this far ahead
    if backend == "postgres":
        assert not any(p.holds(datetime(2033, 6, 1)) for p in partitions.partitions())
    assert _statuses(org, [_event("future-1", when), _event("future-2", when - timedelta(days=40))],
                     now=when) == ["accepted", "accepted"]
    assert _statuses(org, [_event("future-1", when)], now=when) == ["duplicate"]
    if backend == "postgres":
        assert _where("future-1") == "usage_event_y2033m06"
        assert _where("future-2") == "usage_event_y2033m05"


@postgres_only
def test_retention_drops_a_month_only_its_pruned_organizations_used(app_ctx, make_org):
    short = make_org("Short", time_zone="UTC")
    forever = make_org("Forever", time_zone="UTC")
    march, may = datetime(2027, 3, 10, 9, 0), datetime(2027, 5, 20, 9, 0)
    partitions.ensure_months([march, may])
    assert _statuses(short, [_event("s-march", march), _event("s-may", may)], now=may) == ["accepted"] * 2
    assert _statuses(forever, [_event("f-may", may)], now=may) == ["accepted"]
    retention.update_setting(short, SYSTEM, "30")
    before = _totals(short)

    with time_machine.travel(NOW.replace(tzinfo=timezone.utc), tick=False):
        totals = retention.prune_all()
    names = {p.name for p in partitions.partitions()}
    assert "usage_event_y2027m03" not in names  # only Short had rows there: dropped whole
    assert "usage_event_y2027m05" in names  # Forever keeps its May rows; Short's were deleted
    assert totals["usage_events"] == 2
    assert sorted(e.event_id for e in UsageEvent.select()) == ["f-may"]
    keys = db.execute_sql('SELECT "event_id" FROM "usage_event_key" ORDER BY 1').fetchall()
    assert [k for k, in keys] == ["f-may"]
    assert _totals(short) == before  # rollups are kept
    # A pruned event sent again is refused, as on SQLite.
    result = ingest.ingest(Organization.get_by_id(short.id), None, [_event("s-march", march)], now=NOW)
    assert result.results[0].status == "rejected"
    assert "older than this organization keeps" in result.results[0].errors["occurred_at"]


@postgres_only
def test_retention_keeps_a_month_an_organization_keeps_forever(app_ctx, make_org):
    short = make_org("Short", time_zone="UTC")
    forever = make_org("Forever", time_zone="UTC")
    june = datetime(2027, 6, 5, 9, 0)
    assert _statuses(short, [_event("s", june)], now=june) == ["accepted"]
    assert _statuses(forever, [_event("f", june)], now=june) == ["accepted"]
    retention.update_setting(short, SYSTEM, "30")
    assert retention.prune_all(NOW)["usage_events"] == 1
    assert "usage_event_y2027m06" in {p.name for p in partitions.partitions()}
    assert [e.event_id for e in UsageEvent.select()] == ["f"]


# --- migration 0030 over existing data ------------------------------------------------------------

@pytest.fixture
def scratch(backend):
    if backend != "postgres":
        pytest.skip("migration 0030 changes nothing on SQLite")
    from playhouse.db_url import parse

    admin = PostgresqlDatabase(**parse(os.environ["TEST_DATABASE_URL"]))
    name = f"cg_part_{uuid.uuid4().hex[:8]}"
    admin.connect()
    admin.connection().autocommit = True
    admin.execute_sql(f'CREATE DATABASE "{name}"')
    params = parse(os.environ["TEST_DATABASE_URL"])
    params.pop("database")
    database = PostgresqlDatabase(name, **params)
    previous = db.obj
    db.initialize(database)
    try:
        with database.connection_context():
            yield database
    finally:
        db.initialize(previous)
        database.close()
        admin.execute_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def test_migration_0030_keeps_existing_events_in_the_attached_table(app_ctx, scratch):
    runner = migration_runner(scratch)
    runner.up("0029_day_rollups")
    moment = datetime(2026, 11, 20, 10, 0)
    org = Organization.create(name="Acme", slug=f"acme-{uuid.uuid4().hex[:6]}", time_zone="UTC", currency="USD",
                              created_at=moment, updated_at=moment)
    scratch.execute_sql(
        'INSERT INTO "usage_event" ("organization_id", "event_id", "occurred_at", "received_at", "provider", '
        '"model", "model_raw", "user_ref", "input_tokens", "cache_read_tokens", "cache_write_tokens", '
        '"output_tokens", "batch", "service_tier", "cost_nanos", "priced_by", "tags") '
        "SELECT %s, 'old-' || g, timestamp '2026-11-20' - g * interval '9 days', timestamp '2026-11-20', 'openai', "
        "'gpt-4o', 'gpt-4o', '', 10, 0, 0, 1, false, '', 100, 'catalog', '[]' FROM generate_series(1, 40) g",
        (org.id,))
    before = scratch.execute_sql('SELECT "id", "event_id", "occurred_at" FROM "usage_event" ORDER BY 1').fetchall()

    with time_machine.travel(datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc), tick=False):
        assert runner.up("0030_usage_event_partitions") == ["0030_usage_event_partitions"]
        assert partitions.partitioned(scratch)
        names = [p.name for p in partitions.partitions(scratch)]
        assert names == ["usage_event_before_y2027m01", "usage_event_y2027m01", "usage_event_y2027m02",
                         "usage_event_y2027m03"]
        after = scratch.execute_sql('SELECT "id", "event_id", "occurred_at", tableoid::regclass::text '
                                    'FROM "usage_event" ORDER BY 1').fetchall()
        assert [row[:3] for row in after] == [tuple(row) for row in before]  # a year of months, ids kept
        assert {row[3] for row in after} == {"usage_event_before_y2027m01"}
        assert scratch.execute_sql('SELECT COUNT(*) FROM "usage_event_key"').fetchone()[0] == 40

        later = runner.up()  # the migrations after 0030, which today's ingest needs (settings versions)
        org = Organization.get_by_id(org.id)
        result = ingest.ingest(org, None, [_event("old-3", datetime(2026, 12, 1)), _event("new-1", datetime(2026, 12, 6))],
                               now=datetime(2026, 12, 6, 12, 0))
        assert [r.status for r in result.results] == ["duplicate", "accepted"]
        new = UsageEvent.get(UsageEvent.event_id == "new-1")
        assert new.id > before[-1][0]  # the sequence went on
        assert _where("new-1") == "usage_event_before_y2027m01"  # this month is still in the old table
    assert runner.down("0030_usage_event_partitions") == [*reversed(later), "0030_usage_event_partitions"]
    assert not partitions.partitioned(scratch)
    assert scratch.execute_sql('SELECT COUNT(*) FROM "usage_event"').fetchone()[0] == 41


@postgres_only
def test_check_deploy_warns_when_next_month_has_no_partition(app_ctx):
    later = datetime(2035, 1, 20, 8, 0)
    with time_machine.travel(later.replace(tzinfo=timezone.utc), tick=False):
        assert any("no partition for next month" in what for what, _ in check_background_work().warnings)
        partitions.ensure_ahead()
        assert not any("partition" in what for what, _ in check_background_work().warnings)


def test_the_api_reports_a_re_sent_id_at_another_month_as_a_duplicate(app, app_ctx, make_org):
    org = make_org("Acme", time_zone="UTC")
    key = keys.create_key(org, SYSTEM, "ingest", ["ingest"]).plaintext
    client = app.test_client()
    this_month = clock.now().replace(microsecond=0)
    last_month = this_month - timedelta(days=31)

    def send(*events):
        return client.post("/api/v1/usage", headers={"Authorization": f"Bearer {key}"},
                           data=json.dumps({"events": list(events)}), content_type="application/json").json

    first = send(_event("api-1", this_month), _event("api-2", last_month))
    again = send(_event("api-1", last_month), _event("api-2", this_month), _event("api-1", this_month))
    assert (first["accepted"], first["duplicates"]) == (2, 0)
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    assert UsageEvent.select().count() == 2 and _totals(org)[0] == 2


def test_events_are_found_by_id_in_their_own_month(app_ctx, make_org, backend):
    """The request log and the chat read events by id: on PostgreSQL through
    usage_event_key's times and the (organization, occurred_at) index of each
    month, never a scan of every partition (the events table has no
    (organization, event_id) index since 0030)."""
    org = make_org("Acme")
    with time_machine.travel(NOW.replace(tzinfo=timezone.utc), tick=False):
        partitions.ensure_ahead()
        assert _statuses(org, [_event(f"find-{i}", when) for i, when in enumerate(MONTHS)]) == ["accepted"] * 4
    conditions = partitions.event_id_conditions(org.id, ["find-0", "find-3", "missing"])
    assert sorted(e.event_id for e in UsageEvent.select().where(*conditions)) == ["find-0", "find-3"]
    assert list(UsageEvent.select().where(*partitions.event_id_conditions(org.id, ["missing"]))) == []
    if backend != "postgres":
        return
    sql, params = UsageEvent.select().where(*conditions).sql()
    with db.atomic():
        db.execute_sql("SET LOCAL enable_seqscan = off")  # the tables are tiny: ask what it would do at scale
        plan = "\n".join(row for row, in db.execute_sql("EXPLAIN " + sql, params).fetchall())
    assert "Seq Scan" not in plan, plan
    assert plan.count(" on usage_event_") == 2, plan  # pruned to the two months that hold them, read by index

"""Usage events partitioned by month on PostgreSQL (migration 0030).

`usage_event` is `PARTITION BY RANGE (occurred_at)`: one partition per UTC
calendar month, `usage_event_yYYYYmMM`, plus the table the events lived in
before the migration, which became the partition of everything before the
first month boundary after its newest row and the migration
(`usage_event_before_yYYYYmMM`; on a new database, everything before the
month of the migration).
There is no DEFAULT partition: a month must exist before its events arrive.
A daily task creates the current month and the AHEAD months after it; ingest
creates a missing month itself when an insert finds none (an event that
arrives after the task missed its runs, or an old event of an organization
that keeps everything), so no event is ever refused for lack of a partition.

A unique index of a partitioned table must include the partition key, so the
idempotency of `(organization, event_id)` lives in `usage_event_key`
(services/usage/rollups.py `_insert_events` writes both in one statement).

Retention (services/ops/retention.py) drops a whole partition once every
organization with rows in it is past its cutoff for the partition's whole
range; the rows of organizations that keep longer stay, and others' rows are
deleted in batches as before.

SQLite keeps one plain table: every function here is a no-op there.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from peewee import IntegrityError, PostgresqlDatabase

from costguardian import clock
from costguardian.extensions import db

log = logging.getLogger(__name__)

TABLE = "usage_event"
KEY_TABLE = "usage_event_key"
AHEAD = 3  # months created after the current one
LOCK_TIMEOUT = "5s"  # a drop gives up (and tries again tomorrow) rather than queue ingest behind it
_ADVISORY_KEY = 0x7573_6576  # serialises partition creation ("usev")
_BOUND = re.compile(r"FROM \((MINVALUE|'[^']+')\) TO \((MAXVALUE|'[^']+')\)")


@dataclass(frozen=True)
class Partition:
    name: str
    lower: datetime | None  # None: MINVALUE
    upper: datetime | None  # None: MAXVALUE

    def holds(self, month: datetime) -> bool:
        return (self.lower is None or self.lower <= month) and (self.upper is None or month < self.upper)


def _real(database):
    database = database or db
    return getattr(database, "obj", None) or database


def partitioned(database=None) -> bool:
    """True on PostgreSQL once migration 0030 made usage_event partitioned."""
    database = _real(database)
    if not isinstance(database, PostgresqlDatabase):
        return False
    row = database.execute_sql("SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass(%s)", (TABLE,)).fetchone()
    return bool(row) and row[0] == "p"


def month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month: datetime, count: int) -> datetime:
    index = month.year * 12 + month.month - 1 + count
    return month.replace(year=index // 12, month=index % 12 + 1)


def name_of(month: datetime) -> str:
    return f"{TABLE}_y{month:%Y}m{month:%m}"


def _bound(text: str) -> datetime | None:
    return None if text in ("MINVALUE", "MAXVALUE") else datetime.fromisoformat(text.strip("'"))


def partitions(database=None) -> list[Partition]:
    """usage_event's partitions, oldest range first ([] when not partitioned)."""
    database = _real(database)
    if not partitioned(database):
        return []
    rows = database.execute_sql(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)", (TABLE,)).fetchall()
    found = []
    for name, bound in rows:
        match = _BOUND.search(bound or "")
        if match:  # a DEFAULT partition (none is made) would not match
            found.append(Partition(name, _bound(match.group(1)), _bound(match.group(2))))
    return sorted(found, key=lambda p: (p.lower is not None, p.lower or datetime.min))


def insert_events(columns: tuple[str, ...], source: str, params: list, moments: list[datetime]) -> list[str]:
    """Insert one chunk of events (`source`: services/usage/rollups.py
    `_rows_sql` over `columns`) in one statement: their keys first, skipping
    keys already stored, then the events whose keys went in; returns their
    event ids. An event id stored before counts as a duplicate whatever its
    occurred_at, as with the unique index SQLite keeps; within the chunk the
    first row of an id wins. A month without a partition is created and the
    chunk tried again (under a savepoint, so the caller's transaction goes on)."""
    quoted = ", ".join(f'"{c}"' for c in columns)
    org, event, occurred = (f"c{columns.index(c)}" for c in ("organization_id", "event_id", "occurred_at"))
    aliases = ", ".join(f"c{i}" for i in range(len(columns)))
    sql = (f"WITH src AS (SELECT s.*, row_number() OVER () AS n FROM ({source}) AS s({aliases})), "
           f'k AS (INSERT INTO "{KEY_TABLE}" ("organization_id", "event_id", "occurred_at") '
           f"SELECT {org}, {event}, {occurred} FROM src ORDER BY n ON CONFLICT DO NOTHING "
           'RETURNING "organization_id", "event_id", "occurred_at") '
           f'INSERT INTO "{TABLE}" ({quoted}) SELECT DISTINCT ON (src.{org}, src.{event}) '
           + ", ".join(f"src.c{i}" for i in range(len(columns)))
           + f' FROM src JOIN k ON k."organization_id" = src.{org} AND k."event_id" = src.{event} '
           f'AND k."occurred_at" = src.{occurred} ORDER BY src.{org}, src.{event}, src.n RETURNING "event_id"')
    for attempt in range(2):
        try:
            with db.atomic():
                return [row[0] for row in db.execute_sql(sql, params).fetchall()]
        except IntegrityError as exc:
            if attempt or "no partition of relation" not in str(exc):
                raise
        ensure_months(moments)
    raise AssertionError("unreachable")


def event_id_conditions(org_id: int, event_ids: list[str]) -> list:
    """The WHERE that finds the organization's events with these ids. On
    PostgreSQL usage_event has no (organization, event_id) index (the key
    table holds the uniqueness), so their times are read from usage_event_key
    first: each event is then found in its own month by (organization,
    occurred_at) instead of by a scan of every partition."""
    from costguardian.models import UsageEvent

    conditions = [UsageEvent.organization == org_id, UsageEvent.event_id.in_(list(event_ids))]
    if isinstance(_real(None), PostgresqlDatabase):
        times = sorted({moment for moment, in db.execute_sql(
            f'SELECT "occurred_at" FROM "{KEY_TABLE}" WHERE "organization_id" = %s AND "event_id" = ANY(%s)',
            (org_id, list(event_ids))).fetchall()})
        conditions.append(UsageEvent.occurred_at.in_(times))
    return conditions


def ensure_months(months, database=None) -> list[str]:
    """Create the month partitions of `months` (any moments in them) that no
    partition holds yet; returns the names created. Safe when several
    processes do it at once: they take turns on an advisory lock, and each
    looks again at what exists once it has the lock."""
    database = _real(database)
    wanted = sorted({month_start(m) for m in months})
    if not wanted or not partitioned(database):
        return []
    existing = partitions(database)
    if all(any(p.holds(m) for p in existing) for m in wanted):
        return []
    created = []
    with database.atomic():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
        existing = partitions(database)
        for month in wanted:
            if any(p.holds(month) for p in existing):
                continue
            name = name_of(month)
            database.execute_sql(
                f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{TABLE}" '
                f"FOR VALUES FROM ('{month.isoformat(sep=' ')}') TO ('{add_months(month, 1).isoformat(sep=' ')}')")
            created.append(name)
    if created:
        log.info("usage_event partitions created: %s", ", ".join(created))
    return created


def ensure_ahead(now: datetime | None = None, database=None) -> list[str]:
    """The daily task (and the end of `flask migrate`): the current month and
    the AHEAD months after it exist."""
    current = month_start(now or clock.now())
    return ensure_months([add_months(current, i) for i in range(AHEAD + 1)], database)


def months_ahead(now: datetime | None = None, database=None) -> int | None:
    """How many whole months after the current one already have a partition
    (None when usage events are not partitioned): System health warns at 0."""
    database = _real(database)
    if not partitioned(database):
        return None
    existing = partitions(database)
    month, count = month_start(now or clock.now()), 0
    while count < 120 and any(p.holds(add_months(month, count + 1)) for p in existing):
        count += 1
    return count


def drop_expired(cutoffs: dict[int, datetime | None], now: datetime | None = None, database=None) -> dict[int, int]:
    """Detach and drop every partition that ended before `now` and holds rows
    (an empty one is left) only of organizations whose cutoff (`cutoffs`: every organization's
    `pruned_before`, None = keeps everything) is at or after its end. Returns
    the events dropped per organization. Key rows stay for the batched prune
    (retention.prune_org), which deletes them by each organization's cutoff."""
    database = _real(database)
    now = now or clock.now()
    dropped: dict[int, int] = {}
    for partition in partitions(database):
        if partition.upper is None or partition.upper > now:
            continue
        keepers = [org for org, cutoff in cutoffs.items() if cutoff is None or cutoff < partition.upper]
        if _has_rows_of(database, partition.name, keepers):
            continue
        counts = dict(database.execute_sql(
            f'SELECT "organization_id", COUNT(*) FROM "{partition.name}" GROUP BY 1').fetchall())
        if not counts:  # nothing to free; an organization keeping everything may still write old events there
            continue
        try:
            with database.atomic():
                database.execute_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                database.execute_sql(f'LOCK TABLE "{TABLE}" IN ACCESS EXCLUSIVE MODE')
                # Looked at again under the lock: an organization that keeps the range may have written meanwhile.
                if _has_rows_of(database, partition.name, keepers):
                    continue
                database.execute_sql(f'ALTER TABLE "{TABLE}" DETACH PARTITION "{partition.name}"')
                database.execute_sql(f'DROP TABLE "{partition.name}"')
        except Exception as exc:  # a lock not granted in time: the next daily run tries again
            if "lock timeout" not in str(exc).lower():
                raise
            log.warning("usage_event partition %s not dropped: %s", partition.name, exc)
            continue
        log.info("usage_event partition %s dropped (%s events)", partition.name, sum(counts.values()))
        for org, count in counts.items():
            dropped[org] = dropped.get(org, 0) + count
    return dropped


def _has_rows_of(database, table: str, org_ids: list[int]) -> bool:
    if not org_ids:
        return False
    return database.execute_sql(f'SELECT 1 FROM "{table}" WHERE "organization_id" = ANY(%s) LIMIT 1',
                                (org_ids,)).fetchone() is not None


def delete_keys(org_id: int, cutoff: datetime, batch: int, database=None) -> int:
    """Delete the organization's idempotency keys of events before `cutoff`
    (their events are gone), in batches of short transactions."""
    database = _real(database)
    if not partitioned(database):
        return 0
    deleted = 0
    while True:
        with database.atomic():
            cursor = database.execute_sql(
                f'DELETE FROM "{KEY_TABLE}" WHERE "organization_id" = %s AND "event_id" IN ('
                f'SELECT "event_id" FROM "{KEY_TABLE}" WHERE "organization_id" = %s AND "occurred_at" < %s '
                'ORDER BY "occurred_at" LIMIT %s)', (org_id, org_id, cutoff, batch))
            count = cursor.rowcount
        deleted += count
        if count < batch:
            return deleted

"""Data backfills over big tables: in primary-key batches, resumable.

A migration that must fill a new column of a table with millions of rows
(usage_event) does not do it in its own transaction: that would lock the
table for minutes on PostgreSQL and hold SQLite's write lock as long. Instead
the migration adds the column nullable and without a default (instant on
PostgreSQL ≥ 11 and on SQLite), and *registers* a backfill: the module-level
`BACKFILL = Backfill(table, sql)` of the migration file, named after it, gets a
row in `schema_backfill`. The runner then walks the table in primary-key order,
one batch per short transaction (on PostgreSQL under `SET LOCAL
lock_timeout`, retried when it expires), and writes the last key done in the
same transaction as the batch, so a run that is killed resumes exactly where
it stopped and no row is done twice.

`flask migrate` (db.migrate) runs the backfills of tables small enough
(INLINE_ROWS) at once; bigger ones are left for `flask migrate --backfills`,
which can run while the app serves: the column is nullable and new rows are
written complete by the new code.
"""
from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from peewee import (BigIntegerField, CharField, DateTimeField, IntegerField, Model, OperationalError,
                    PostgresqlDatabase, SqliteDatabase)

from costguardian import clock

log = logging.getLogger(__name__)

PROGRESS_TABLE = "schema_backfill"
BATCH_ROWS = 5_000  # a batch holds its locks for milliseconds (docs/PERFORMANCE.md)
INLINE_ROWS = 200_000  # `flask migrate` backfills tables up to this size itself
LOCK_TIMEOUT = "2s"  # PostgreSQL: a batch gives up (and is retried) rather than queue behind a long lock
RETRIES = 5


@dataclass(frozen=True)
class Backfill:
    """What a migration backfills: `sql` updates the rows of `table` whose
    integer primary key `id` is in a half-open range; it holds two `{p}`
    placeholders, the range's exclusive start then its inclusive end, and
    must be idempotent (a row it already did is left as it is)."""

    table: str
    sql: str


@dataclass
class Progress:
    name: str
    table: str
    last_id: int
    rows_done: int
    batches: int
    finished_at: object

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


def _model(database):
    class SchemaBackfill(Model):
        name = CharField(max_length=128, primary_key=True)  # the migration's name
        target = CharField(max_length=64)  # the table walked
        last_id = BigIntegerField(default=0)  # every row with a key up to it is done
        rows_done = BigIntegerField(default=0)  # rows the batches changed
        batches = IntegerField(default=0)
        registered_at = DateTimeField()
        updated_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)

        class Meta:
            table_name = PROGRESS_TABLE

    SchemaBackfill.bind(_real(database))
    return SchemaBackfill


def _real(database):
    return getattr(database, "obj", None) or database  # a DatabaseProxy's database


def _progress(row) -> Progress:
    return Progress(row.name, row.target, row.last_id, row.rows_done, row.batches, row.finished_at)


def register(database, name: str) -> None:
    """Called from migration `name`'s up(): its BACKFILL is due (from the start)."""
    model = _model(database)
    model.create_table(safe=True)
    backfill = load(name)
    model.insert(name=name, target=backfill.table, registered_at=clock.now()).on_conflict(
        conflict_target=[model.name],
        update={model.last_id: 0, model.rows_done: 0, model.batches: 0, model.finished_at: None}).execute()


def forget(database, name: str) -> None:
    """Called from migration `name`'s down()."""
    model = _model(database)
    if model.table_exists():
        model.delete().where(model.name == name).execute()


def load(name: str) -> Backfill:
    from costguardian.db import MIGRATIONS_DIR

    path = Path(MIGRATIONS_DIR) / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BACKFILL


def status(database) -> list[Progress]:
    """Every registered backfill, finished or not, in migration order."""
    model = _model(database)
    if not model.table_exists():
        return []
    return [_progress(row) for row in model.select().order_by(model.name)]


def pending(database) -> list[Progress]:
    return [p for p in status(database) if not p.finished]


def rows_left(database, progress: Progress) -> int:
    """An upper bound of the rows still to visit (from the keys, no scan)."""
    highest = _real(database).execute_sql(f'SELECT MAX("id") FROM "{progress.table}"').fetchone()[0]
    return max(0, (highest or 0) - progress.last_id)


def run_pending(database, inline_limit: int | None = None, batch_rows: int = BATCH_ROWS,
                report=None) -> list[Progress]:
    """Run the pending backfills, each to its end; with `inline_limit`, only
    those with at most that many rows left. Returns the ones left undone."""
    left = []
    for progress in pending(database):
        if inline_limit is not None and rows_left(database, progress) > inline_limit:
            left.append(progress)
            continue
        run(database, progress.name, batch_rows, report=report)
    return left


def run(database, name: str, batch_rows: int = BATCH_ROWS, *, after_batch=None, report=None,
        pause: float = 0.0) -> Progress:
    """Backfill `name` from where it stopped to the end of its table.
    `after_batch(progress)` runs after each committed batch (tests stop a run
    there); `report(progress)` every few seconds; `pause` seconds between
    batches leave the write lock to others on a busy SQLite."""
    database = _real(database)
    backfill = load(name)
    sql = backfill.sql.format(p=database.param)
    reported = time.monotonic()
    while True:
        progress = _with_retries(database, lambda: _batch(database, name, backfill, sql, batch_rows))
        if progress.finished:
            if report:
                report(progress)
            return progress
        if after_batch:
            after_batch(progress)
        if report and time.monotonic() - reported >= 5:
            report(progress)
            reported = time.monotonic()
        if pause:
            time.sleep(pause)


def _with_retries(database, work):
    for attempt in range(RETRIES):
        try:
            return work()
        except OperationalError as exc:  # lock_timeout on PostgreSQL, "database is locked" on SQLite
            message = str(exc).lower()
            if attempt == RETRIES - 1 or not ("lock" in message or "timeout" in message):
                raise
            log.warning("backfill batch waited too long for a lock (%s); retrying", exc)
            time.sleep(0.2 * (attempt + 1))


def _batch(database, name: str, backfill: Backfill, sql: str, batch_rows: int) -> Progress:
    """One batch and its progress, in one transaction."""
    model = _model(database)
    p, table = database.param, backfill.table
    sqlite = isinstance(database, SqliteDatabase)
    with database.atomic("IMMEDIATE") if sqlite else database.atomic():
        if isinstance(database, PostgresqlDatabase):
            database.execute_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            database.execute_sql("SET LOCAL jit = off")  # compiling costs more than a batch's few thousand rows
        query = model.select().where(model.name == name)
        row = (query if sqlite else query.for_update()).get()  # one runner at a time per backfill
        if row.finished_at is not None:
            return _progress(row)
        start = row.last_id
        end = database.execute_sql(f'SELECT "id" FROM "{table}" WHERE "id" > {p} ORDER BY "id" LIMIT 1 OFFSET {p}',
                                   (start, batch_rows - 1)).fetchone()
        if end is None:  # the last, short batch
            end = database.execute_sql(f'SELECT MAX("id") FROM "{table}" WHERE "id" > {p}', (start,)).fetchone()
        now = clock.now()
        if end is None or end[0] is None:
            row.finished_at = row.updated_at = now
        else:
            changed = database.execute_sql(sql, (start, end[0])).rowcount
            row.last_id, row.rows_done, row.batches = end[0], row.rows_done + max(changed, 0), row.batches + 1
            row.updated_at = now
        row.save()
        return _progress(row)

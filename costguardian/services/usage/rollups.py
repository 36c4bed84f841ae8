"""Writing usage: events and the hourly (and per-tag) rollups, in one
transaction, so that rollups always equal the sum of their events.

A rollup bucket is one hour of the organization's local clock. Its
`alignment` is the zone's standard offset in minutes mod 60 (0 for whole-hour
zones, 30 for Asia/Kolkata, 45 for Asia/Kathmandu), and a bucket starts that
many minutes before a UTC hour (Kolkata 18:30 UTC, Kathmandu 18:15 UTC), so a
local day is a whole number of buckets in every zone. The organization caches it
(`Organization.rollup_offset_minutes`); `bucket_start` is the one place that
floors a moment to its bucket."""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from peewee import OperationalError, PostgresqlDatabase, fn

from costguardian import clock, settings_cache
from costguardian.db import write_transaction
from costguardian.extensions import db
from costguardian.prepared import Prepared
from costguardian.models import NO_DEPARTMENT, NO_KEY, Organization, UsageEvent, UsageRollup, UsageTagRollup
from costguardian.services.budgets import accounting as budget_accounting
from costguardian.services.ops import partitions
from costguardian.services.usage import days
from costguardian.services.usage.days import DaySink


def alignment_of(time_zone: str | None) -> int:
    """The zone's standard (not daylight-saving) UTC offset now, in minutes
    mod 60: local hours start that many minutes before a UTC hour (30 past
    in Kolkata, +05:30; 15 past in Kathmandu, +05:45). A zone whose offset
    changes by half an hour over the year (Australia/Lord_Howe, +10:30/+11)
    keeps its standard offset's alignment all year."""
    moment = clock.now().replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(time_zone or "UTC"))
    standard = moment.utcoffset() - (moment.dst() or timedelta(0))
    return int(standard.total_seconds() // 60) % 60


def bucket_start(alignment: int, moment: datetime) -> datetime:
    """The start of the rollup bucket holding `moment` (naive UTC): the start
    of its local hour, floor(moment + alignment, 1 h) - alignment."""
    if not alignment:
        return moment.replace(minute=0, second=0, microsecond=0)
    shift = timedelta(minutes=alignment)
    return (moment + shift).replace(minute=0, second=0, microsecond=0) - shift


def is_bucket_edge(alignment: int, moment: datetime) -> bool:
    return bucket_start(alignment, moment) == moment


def bucket_at_or_after(alignment: int, moment: datetime) -> datetime:
    """The first bucket starting at or after `moment`: a range's edge when
    buckets count in the local day their start falls in."""
    start = bucket_start(alignment, moment)
    return start if start == moment else start + timedelta(hours=1)


def alignment(org) -> int:
    """The organization's bucket alignment (an Organization or its id)."""
    if isinstance(org, Organization):
        return org.rollup_offset_minutes or 0
    return Organization.select(Organization.rollup_offset_minutes).where(Organization.id == org).scalar() or 0


class WriteState(NamedTuple):
    alignment: int  # the buckets' alignment (bucket_start)
    days: DaySink | None  # where the daily rollups take the deltas (services/usage/days.py)


def _write_state_query(org_id):
    query = (Organization.select(Organization.rollup_offset_minutes, Organization.time_zone,
                                 Organization.day_rollup_zone, Organization.day_rollups_until)
             .where(Organization.id == org_id).tuples())
    return query.for_update("FOR SHARE") if isinstance(db.obj, PostgresqlDatabase) else query


_WRITE_STATE = Prepared(_write_state_query)


def write_state(org_id: int) -> WriteState:
    """The alignment and the daily rollups' state, read inside a writing
    transaction holding the organization row FOR SHARE on PostgreSQL (the
    lock budgets use), so a realignment (services/usage/realign.py) or a
    build step of the daily rollups, which take it alone, sees every batch
    either entirely before or entirely after it changes them."""
    row = _WRITE_STATE.first(org_id)
    if row is None:
        return WriteState(0, None)
    return WriteState(row[0] or 0, days.sink_of(row[1], row[2], row[3]))


def store_events(org_id: int, rows: list[dict], touched: set | None = None) -> set[str]:
    """Insert the events (skipping ids already stored) and add the inserted
    ones to the rollups and the budget counters, atomically. Returns the
    inserted event ids; `touched` collects the (budget id, period start)
    pairs whose current-period counters grew, for the alert check.

    Rows go in event_id order and rollups in key order, so concurrent batches
    take their locks in one global order; a deadlock the database still
    reports (it should not happen) is retried."""
    rows = sorted(rows, key=lambda row: row["event_id"])
    for attempt in range(3):
        try:
            with write_transaction():
                state = write_state(org_id)  # before any event id is drawn
                inserted = _insert_events(rows)
                fresh = [row for row in rows if row["event_id"] in inserted]
                if fresh:
                    _add_to_rollups(org_id, fresh, state.alignment, state.days)
                    # The budgets as kept by the process if unchanged: the version is read under
                    # this transaction's locks (after write_state), so a budget created meanwhile
                    # either committed before (a new version) or waits for this commit.
                    with settings_cache.pinned(org_id):
                        grown = budget_accounting.add_events(org_id, fresh)
            if fresh and touched is not None:
                touched |= grown
            return inserted
        except OperationalError as exc:
            if attempt == 2 or "deadlock" not in str(exc).lower():
                raise
    raise AssertionError("unreachable")


# The two statements on the hot path are written as SQL text: peewee's query
# builder spent 75% of a batch's time generating them (see docs/PERFORMANCE.md).
_EVENT_COLUMNS = ("organization", "event_id", "occurred_at", "received_at", "provider", "model", "model_raw",
                  "api_key", "user_ref", "department", "input_tokens", "cache_read_tokens", "cache_write_tokens",
                  "output_tokens", "batch", "service_tier", "cost_nanos", "priced_by", "tags", "credential_id")


# PostgreSQL types of the columns written in bulk (for unnest; see _rows_sql).
_PG_TYPES = {
    "organization_id": "integer", "event_id": "text", "occurred_at": "timestamp", "received_at": "timestamp",
    "provider": "text", "model": "text", "model_raw": "text", "api_key_id": "integer", "user_ref": "text",
    "department_id": "integer", "input_tokens": "bigint", "cache_read_tokens": "bigint",
    "cache_write_tokens": "bigint", "output_tokens": "bigint", "batch": "boolean", "service_tier": "text",
    "cost_nanos": "bigint", "priced_by": "text", "tags": "jsonb", "tag": "text", "hour": "timestamp",
    "requests": "bigint", "unpriced_requests": "bigint", "dimension": "text", "value": "text",
    "last_hour": "timestamp", "credential_id": "integer", "day": "date",
}


def _values_sql(columns: int, rows: int) -> str:
    one = "(" + ", ".join([db.param] * columns) + ")"
    return ", ".join([one] * rows)


def _rows_sql(columns: tuple[str, ...], rows: list[list]) -> tuple[str, list]:
    """The row source of a bulk INSERT: `VALUES (?, ...), ...` on SQLite;
    `SELECT ... FROM unnest(%s::type[], ...)` on PostgreSQL, one array parameter
    per column, so the statement text stays short and the same for any batch
    (psycopg spent more time parsing thousands of placeholders than the
    server spent inserting)."""
    if not isinstance(db.obj, PostgresqlDatabase):
        return f"VALUES {_values_sql(len(columns), len(rows))}", [v for row in rows for v in row]
    arrays = [[row[i] for row in rows] for i in range(len(columns))]
    selected, sources = [], []
    for i, name in enumerate(columns):
        kind = _PG_TYPES[name]
        if kind == "jsonb":  # travels as text, becomes jsonb per row
            selected.append(f"c{i}::jsonb")
            sources.append("%s::text[]")
        else:
            selected.append(f"c{i}")
            sources.append(f"%s::{kind}[]")
    aliases = ", ".join(f"c{i}" for i in range(len(columns)))
    return f"SELECT {', '.join(selected)} FROM unnest({', '.join(sources)}) AS u({aliases})", arrays


def _insert_events(rows: list[dict]) -> set[str]:
    fields = [UsageEvent._meta.fields[name] for name in _EVENT_COLUMNS]
    columns = tuple(f.column_name for f in fields)
    # Values go to the driver as they are (ints, strings, datetimes, bools); tags as JSON text.
    values = [[json.dumps(row[name]) if name == "tags" else row[name] for name in _EVENT_COLUMNS] for row in rows]
    inserted: set[str] = set()
    for start in range(0, len(values), 1000):
        source, params = _rows_sql(columns, values[start:start + 1000])
        if isinstance(db.obj, PostgresqlDatabase):  # partitioned: the keys live in usage_event_key
            inserted.update(partitions.insert_events(columns, source, params,
                                                     [row["occurred_at"] for row in rows[start:start + 1000]]))
            continue
        sql = (f'INSERT INTO "usage_event" ({", ".join(chr(34) + c + chr(34) for c in columns)}) '
               f'{source} ON CONFLICT DO NOTHING RETURNING "event_id"')
        inserted.update(r[0] for r in db.execute_sql(sql, params).fetchall())
    return inserted


def _add_to_rollups(org_id: int, rows: list[dict], aligned_to: int, day_sink: DaySink | None) -> None:
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0] * 7)
    tag_totals: dict[tuple, list[int]] = defaultdict(lambda: [0] * 7)
    for row in rows:
        key = (bucket_start(aligned_to, row["occurred_at"]), row["provider"], row["model"],
               row["api_key"] or NO_KEY, row["user_ref"], row["department"] or NO_DEPARTMENT)
        measures = (1, row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"],
                    row["output_tokens"], row["cost_nanos"] or 0, 1 if row["cost_nanos"] is None else 0)
        _accumulate(totals[key], measures)
        for tag in row["tags"]:
            _accumulate(tag_totals[(tag,) + key], measures)
    upsert_rollups(UsageRollup, org_id, totals, day_sink)
    if tag_totals:
        upsert_rollups(UsageTagRollup, org_id, tag_totals, day_sink)
    record_dimensions(org_id, totals, tag_totals)


def record_dimensions(org_id: int, totals: dict, tag_totals: dict) -> None:
    """Remember the providers, models, users and tags seen (with the latest hour)."""
    seen: dict[tuple[str, str], object] = {}

    def note(dimension: str, value: str, hour) -> None:
        if value and (seen.get((dimension, value)) is None or seen[(dimension, value)] < hour):
            seen[(dimension, value)] = hour

    for hour, provider, model, _key, user, _department in totals:
        note("provider", provider, hour)
        note("model", model, hour)
        note("user", user, hour)
    for tag, hour, *_ in tag_totals:
        note("tag", tag, hour)
    rows = [[org_id, dimension, value, hour] for (dimension, value), hour in sorted(seen.items())]
    for start in range(0, len(rows), 1000):
        source, params = _rows_sql(("organization_id", "dimension", "value", "last_hour"), rows[start:start + 1000])
        db.execute_sql(
            f'INSERT INTO "usage_dimension" ("organization_id", "dimension", "value", "last_hour") {source} '
            'ON CONFLICT ("organization_id", "dimension", "value") '
            'DO UPDATE SET "last_hour" = CASE WHEN excluded."last_hour" > "usage_dimension"."last_hour" '
            'THEN excluded."last_hour" ELSE "usage_dimension"."last_hour" END', params)


def _accumulate(into: list[int], measures: tuple) -> None:
    for i, value in enumerate(measures):
        into[i] += value


_READ = object()


def upsert_rollups(model, org_id: int, totals: dict[tuple, list[int]], day_sink=_READ) -> None:
    """Add the totals (key tuple in model.KEY order -> measures in
    model.MEASURES order) to the rollup rows, creating missing ones: INSERT …
    ON CONFLICT DO UPDATE SET x = x + excluded.x. Keys are sorted so
    concurrent batches lock rows in the same order (no deadlocks).

    Deltas to the hourly rollups go to the daily ones too (days.mirror), where
    `day_sink` says (the caller's write_state().days; read here when not given)."""
    table = model._meta.table_name
    key_columns = ("organization_id",) + model.KEY
    columns = key_columns + model.MEASURES
    quoted = ", ".join(f'"{c}"' for c in columns)
    update = ", ".join(f'"{m}" = "{table}"."{m}" + excluded."{m}"' for m in model.MEASURES)
    conflict = ", ".join(f'"{c}"' for c in key_columns)
    keys_in_order = sorted(totals)  # each position holds one type, so tuples compare directly
    for start in range(0, len(keys_in_order), 1000):  # SQLite allows 32,766 bound values a statement
        values = [[org_id, *key, *totals[key]] for key in keys_in_order[start:start + 1000]]
        source, params = _rows_sql(columns, values)
        db.execute_sql(f'INSERT INTO "{table}" ({quoted}) {source} ON CONFLICT ({conflict}) DO UPDATE SET {update}',
                       params)
    if hasattr(model, "DAILY"):
        days.mirror(model, org_id, totals, days.sink_for_write(org_id) if day_sink is _READ else day_sink)


def unpriced_models(org):
    """Models with events of unknown cost, most requests first."""
    return (UsageRollup.select(UsageRollup.provider, UsageRollup.model,
                               fn.SUM(UsageRollup.unpriced_requests).alias("requests"),
                               fn.MIN(UsageRollup.hour).alias("first_hour"),
                               fn.MAX(UsageRollup.hour).alias("last_hour"))
            .where(UsageRollup.organization == org, UsageRollup.unpriced_requests > 0)
            .group_by(UsageRollup.provider, UsageRollup.model)
            .order_by(fn.SUM(UsageRollup.unpriced_requests).desc()))


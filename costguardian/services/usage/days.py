"""Daily rollups: the hourly (and per-tag) rollups summed per local day of the
organization's zone (UsageDayRollup, UsageDayTagRollup), so that a 90-day page
reads 90 days of rows instead of 2,160 hours of them.

The rule that keeps them exact: the row of day D holds every hourly row whose
bucket starts on D in the organization's zone — the same buckets the pages
count in D (queries.utc_bounds). Every change to the hourly rows (ingest,
repricing, a realignment's moves) goes through rollups.upsert_rollups, which
adds the same deltas to the daily rows in the same transaction (`mirror`).

A change of zone moves every day's edges, so the daily rows are summed again
from the hourly ones (`build`): the organization notes the zone they are in
(`day_rollup_zone`) and how far they are built (`day_rollups_until`: exact for
the days before it; None when every day is). A build starts by emptying them
and setting the zone, then sums STEP_DAYS local days at a time, oldest first,
each step one short write transaction holding the organization row alone (the
lock ingest takes FOR SHARE), so writes go on between steps: a write adds to
the daily rows only the days already built and leaves later days to the
steps. Pages read the daily rows only while they are complete in the
organization's current zone (`ready`) and the hourly rows otherwise, so a
change of zone is never seen half-done. Organizations from before migration
0029 have none until the hourly `build_day_rollups` task builds them.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from typing import NamedTuple
from zoneinfo import ZoneInfo

from peewee import PostgresqlDatabase, fn

from costguardian.db import write_transaction
from costguardian.extensions import db
from costguardian.models import Organization, UsageDayRollup, UsageDayTagRollup, UsageRollup, UsageTagRollup

STEP_DAYS = 31  # local days summed per build step
log = logging.getLogger(__name__)
_DAILY = (UsageDayRollup, UsageDayTagRollup)


class DaySink(NamedTuple):
    """Where a writer's hourly deltas go in the daily rows: the zone of the
    days, and the first day not built yet (None: every day is)."""

    zone: ZoneInfo
    until: date | None


def sink_of(time_zone: str | None, day_zone: str | None, until: date | None) -> DaySink | None:
    """The sink for an organization row's state; None while the daily rows
    are in another zone than the organization's (a build will redo them)."""
    if day_zone is None or day_zone != (time_zone or "UTC"):
        return None
    return DaySink(ZoneInfo(day_zone), until)


def sink_for_write(org_id: int) -> DaySink | None:
    """The sink, read in the writer's transaction (see rollups.write_state)."""
    row = (Organization.select(Organization.time_zone, Organization.day_rollup_zone, Organization.day_rollups_until)
           .where(Organization.id == org_id).tuples().first())
    return sink_of(*row) if row else None


def ready(org) -> bool:
    """May pages read the organization's daily rollups? (complete, in its zone)"""
    return (isinstance(org, Organization) and org.day_rollup_zone is not None
            and org.day_rollup_zone == (org.time_zone or "UTC") and org.day_rollups_until is None)


def local_day(zone: ZoneInfo, hour: datetime) -> date:
    """The local date a bucket (naive UTC start) counts in."""
    return hour.replace(tzinfo=timezone.utc).astimezone(zone).date()


def mirror(hourly_model, org_id: int, totals: dict[tuple, list[int]], sink: DaySink | None) -> None:
    """Add hourly deltas (key in hourly_model.KEY order -> measures) to the
    daily rows of their local days (those already built)."""
    if sink is None or not totals:
        return
    from costguardian.services.usage.rollups import upsert_rollups

    position = hourly_model.KEY.index("hour")
    zone, until = sink
    days_of: dict[datetime, date] = {}
    daily: dict[tuple, list[int]] = {}
    for key, measures in totals.items():  # on the ingest path: kept lean
        hour = key[position]
        day = days_of.get(hour)
        if day is None:
            day = days_of[hour] = local_day(zone, hour)
        if until is not None and day >= until:
            continue  # a build step sums this day from the hourly rows later
        daily_key = key[:position] + (day,) + key[position + 1:]
        into = daily.get(daily_key)
        daily[daily_key] = list(measures) if into is None else [a + b for a, b in zip(into, measures)]
    daily = {key: values for key, values in daily.items() if any(values)}
    if daily:
        upsert_rollups(hourly_model.DAILY, org_id, daily)


def drop_empty(hourly_model, org_id: int, hours: list[datetime], sink: DaySink | None) -> None:
    """Daily rows left with nothing in them after moves out of these hours."""
    if sink is None or not hours:
        return
    table = hourly_model.DAILY
    days = sorted({local_day(sink.zone, hour) for hour in hours})
    for start in range(0, len(days), 500):
        table.delete().where(table.organization == org_id, table.day.in_(days[start:start + 500]),
                             *[getattr(table, m) == 0 for m in table.MEASURES]).execute()


def drop_empty_models(org_id: int, provider: str, models: list[str]) -> None:
    """Daily rows of models a repricing renamed away (every measure zero now)."""
    for table in _DAILY:
        table.delete().where(table.organization == org_id, table.provider == provider, table.model.in_(models),
                             table.requests == 0).execute()


def lock_alone(org_id: int) -> None:
    """Hold the organization row FOR UPDATE (PostgreSQL; SQLite's write
    transactions are serial): rollup writers, which hold it FOR SHARE
    (rollups.write_state), wait for a build step or a realignment batch."""
    if isinstance(db.obj, PostgresqlDatabase):
        Organization.select(Organization.id).where(Organization.id == org_id).for_update().execute()


def build_step(org_id: int) -> bool | None:
    """One step of building the organization's daily rollups: start over in
    its zone if they are in another, else sum the next STEP_DAYS days.
    Returns True when they are complete, False when more steps remain,
    None when the organization is gone."""
    from costguardian.services.usage import queries

    with write_transaction():
        lock_alone(org_id)
        org = Organization.get_or_none(Organization.id == org_id)
        if org is None:
            return None
        zone_name = org.time_zone or "UTC"
        if org.day_rollup_zone != zone_name:
            for table in _DAILY:
                table.delete().where(table.organization == org_id).execute()
            first = UsageRollup.select(fn.MIN(UsageRollup.hour)).where(UsageRollup.organization == org_id).scalar()
            until = local_day(ZoneInfo(zone_name), _as_datetime(first)) if first is not None else None
            Organization.update(day_rollup_zone=zone_name, day_rollups_until=until) \
                .where(Organization.id == org_id).execute()
            return until is None
        until = org.day_rollups_until
        if until is None:
            return True
        last = until + timedelta(days=STEP_DAYS - 1)
        # Exact local midnights, as `mirror` assigns days (by the local date of
        # a bucket's start), also for hourly rows off the current grid (a
        # realignment still moving them).
        start, end = queries.exact_bounds(org, until, last)
        for hourly in (UsageRollup, UsageTagRollup):
            _sum_hours(org, hourly, start, end)
        more = UsageRollup.select(UsageRollup.hour).where(UsageRollup.organization == org_id,
                                                          UsageRollup.hour >= end).limit(1).exists()
        next_until = last + timedelta(days=1) if more else None
        Organization.update(day_rollups_until=next_until).where(Organization.id == org_id).execute()
        return next_until is None


def _sum_hours(org, hourly, start: datetime, end: datetime) -> None:
    """INSERT the daily rows of the hours [start, end) from the hourly ones,
    one statement per stretch of constant UTC offset (two around a DST change,
    both writing the day of the change: the second adds to the first's rows)."""
    from costguardian.services.usage import queries

    daily = hourly.DAILY
    key = [c for c in hourly.KEY if c != "hour"]
    columns = ["organization_id"] + ["day" if c == "hour" else c for c in hourly.KEY] + list(hourly.MEASURES)
    quoted = ", ".join(f'"{c}"' for c in columns)
    table = daily._meta.table_name
    conflict = ", ".join(f'"{c}"' for c in ("organization_id",) + daily.KEY)
    update = ", ".join(f'"{m}" = "{table}"."{m}" + excluded."{m}"' for m in daily.MEASURES)
    for seg_start, seg_end, minutes in queries._offset_segments(org, start, end):
        day = queries._local_date_sql(hourly.hour, minutes)
        selected = [hourly.organization] + [day if c == "hour" else getattr(hourly, c) for c in hourly.KEY] \
            + [fn.SUM(getattr(hourly, m)) for m in hourly.MEASURES]
        query = (hourly.select(*selected)
                 .where(hourly.organization == org.id, hourly.hour >= seg_start, hourly.hour < seg_end)
                 .group_by(hourly.organization, day, *[getattr(hourly, c) for c in key]))
        sql, params = query.sql()
        # "WHERE true": SQLite needs it to read ON CONFLICT after INSERT … SELECT.
        db.execute_sql(f'INSERT INTO "{table}" ({quoted}) SELECT * FROM ({sql}) AS hours WHERE true '
                       f'ON CONFLICT ({conflict}) DO UPDATE SET {update}', params)


def _as_datetime(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def build(org_id: int) -> None:
    """Every step until the organization's daily rollups are complete (each
    step its own transaction; a lost task resumes from the stored state)."""
    while build_step(org_id) is False:
        pass


def stale_organizations() -> list[int]:
    """Organizations whose daily rollups are missing, unfinished or in another zone."""
    return [org_id for org_id, in Organization.select(Organization.id).where(
        Organization.day_rollup_zone.is_null() | (Organization.day_rollup_zone != Organization.time_zone)
        | Organization.day_rollups_until.is_null(False)).order_by(Organization.id).tuples()]


def build_stale() -> int:
    """The hourly task: build every stale organization's daily rollups. Returns how many."""
    done = 0
    for org_id in stale_organizations():
        try:
            build(org_id)
            done += 1
        except Exception:  # one organization's failure must not stop the others; the next run retries it
            log.exception("building the daily rollups of organization %s failed", org_id)
    return done


def differences(org) -> list[str]:
    """Where the daily rows differ from the hourly rows summed per local day
    (empty when they agree): for tests, the bulk loader and support."""
    from costguardian.services.usage import queries

    if org.day_rollup_zone is None:
        return []
    problems = []
    zone = ZoneInfo(org.day_rollup_zone)
    for hourly in (UsageRollup, UsageTagRollup):
        daily = hourly.DAILY
        dims = [c for c in hourly.KEY if c != "hour"]
        expected: dict[tuple, list[int]] = defaultdict(lambda: [0] * len(hourly.MEASURES))
        conditions = [hourly.organization == org.id]
        if org.day_rollups_until is not None:
            conditions.append(hourly.hour < queries.exact_bounds(org, org.day_rollups_until,
                                                                 org.day_rollups_until)[0])
        for row in hourly.select(*[getattr(hourly, c) for c in hourly.KEY + hourly.MEASURES]) \
                .where(*conditions).tuples().iterator():
            record = dict(zip(hourly.KEY + hourly.MEASURES, row))
            key = (local_day(zone, _as_datetime(record["hour"])),) + tuple(record[c] for c in dims)
            for i, m in enumerate(hourly.MEASURES):
                expected[key][i] += int(record[m] or 0)
        expected = {k: v for k, v in expected.items() if any(v)}
        found = {}
        for row in daily.select(*[getattr(daily, c) for c in daily.KEY + daily.MEASURES]) \
                .where(daily.organization == org.id).tuples().iterator():
            record = dict(zip(daily.KEY + daily.MEASURES, row))
            day = record["day"] if isinstance(record["day"], date) else date.fromisoformat(str(record["day"]))
            values = [int(record[m] or 0) for m in daily.MEASURES]
            if any(values):
                found[(day,) + tuple(record[c] for c in dims)] = values
        for key in sorted(set(expected) | set(found), key=str):
            if expected.get(key) != found.get(key):
                problems.append(f"{daily._meta.table_name} {key}: daily {found.get(key)} != hourly {expected.get(key)}")
    return problems

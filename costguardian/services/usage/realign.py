"""Moving an organization's rollups to the bucket alignment of a new time zone
(rollups.bucket_start), after a change of zone from, say, UTC to Asia/Kolkata.

The change itself (`change_alignment`) happens in one short transaction that
holds the organization row alone (FOR UPDATE on PostgreSQL; SQLite's write
transactions are serial): it notes the last event id and stores the new
alignment. Every ingest or repricing transaction reads the alignment holding
the same row FOR SHARE before it draws an event id, so the events up to that id
are in buckets of the old alignment and every later one in the new.

A Huey task (`tasks.realign_rollups`) then moves the events up to that id, in
id order, BATCH at a time, one write transaction each, out of their old
buckets and into their new ones (hourly and per-tag rollups), and enqueues
itself for the next batch; the last batch rebuilds the budgets' counters.
Each move is a `rollup_move` row written with the alignment and advanced in
the same transaction as every batch, so a lost task chain is resumed by the
hourly `realign_stale` and a repeated task never moves a batch twice.
Moves are deltas, so they commute: a second change of zone before the first
move finished is another move over its own events, and the sum is right
once both finished. Repricing waits while a move is pending (its deltas
would land in buckets the move has not reached yet). Events that retention already pruned cannot be moved
and keep their old buckets (their hours stay exact in UTC terms; only the
local day edges inside those old hours differ)."""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from peewee import fn

from costguardian import clock
from costguardian.db import write_transaction
from costguardian.models import (NO_DEPARTMENT, NO_KEY, Organization, RollupMove, UsageEvent, UsageRollup,
                                 UsageTagRollup)
from costguardian.services import queue
from costguardian.services.usage import days, rollups

BATCH = 5000
STALLED_AFTER = timedelta(minutes=10)  # a move with no batch for this long is enqueued again
log = logging.getLogger(__name__)


def change_alignment(org: Organization, new: int) -> bool:
    """Store the organization's new alignment and start moving its rollups;
    False when it is already aligned so (nothing to move)."""
    move = None
    with write_transaction():
        days.lock_alone(org.id)
        old = rollups.alignment(org.id)
        if old == new:
            return False
        last_id = UsageEvent.select(fn.MAX(UsageEvent.id)).where(UsageEvent.organization == org.id).scalar()
        Organization.update(rollup_offset_minutes=new).where(Organization.id == org.id).execute()
        if last_id:
            move = RollupMove.create(organization=org.id, old=old, new=new, last_id=last_id)
    org.rollup_offset_minutes = new
    if move is not None:
        _enqueue(move.id)
    return True


def _enqueue(move_id: int) -> None:
    try:
        queue.enqueue("realign_rollups", move_id)
    except Exception:  # the move is stored: the hourly realign_stale picks it up
        log.exception("could not enqueue the rollup move %s; the hourly task resumes it", move_id)


def move_batch(move_id: int) -> tuple[int, bool] | None:
    """Move the next BATCH events of the move (id in (after_id, last_id]) from
    their buckets under `old` to those under `new`, and record how far it got
    in the same transaction. Returns (organization id, done), or None when
    the move is gone (done by another task, or its organization deleted)."""
    with write_transaction():
        move = RollupMove.get_or_none(RollupMove.id == move_id)
        if move is None:
            return None
        org_id = move.organization_id
        days.lock_alone(org_id)
        move = RollupMove.get_or_none(RollupMove.id == move_id)  # re-read under the lock: another task may have moved on
        if move is None:
            return None
        old, new = move.old, move.new
        events = list(UsageEvent.select(UsageEvent.id, UsageEvent.occurred_at, UsageEvent.provider,
                                        UsageEvent.model, UsageEvent.api_key, UsageEvent.user_ref,
                                        UsageEvent.department, UsageEvent.input_tokens, UsageEvent.cache_read_tokens,
                                        UsageEvent.cache_write_tokens, UsageEvent.output_tokens,
                                        UsageEvent.cost_nanos, UsageEvent.tags)
                      .where(UsageEvent.organization == org_id, UsageEvent.id > move.after_id,
                             UsageEvent.id <= move.last_id)
                      .order_by(UsageEvent.id).limit(BATCH))
        if not events:
            move.delete_instance()
            return org_id, True
        totals: dict[tuple, list[int]] = defaultdict(lambda: [0] * 7)
        tag_totals: dict[tuple, list[int]] = defaultdict(lambda: [0] * 7)
        emptied: set = set()
        for event in events:
            measures = (1, event.input_tokens, event.cache_read_tokens, event.cache_write_tokens,
                        event.output_tokens, event.cost_nanos or 0, 1 if event.cost_nanos is None else 0)
            rest = (event.provider, event.model, event.api_key_id or NO_KEY, event.user_ref,
                    event.department_id or NO_DEPARTMENT)
            before = rollups.bucket_start(old, event.occurred_at)
            emptied.add(before)
            for hour, sign in ((before, -1), (rollups.bucket_start(new, event.occurred_at), 1)):
                _add(totals[(hour,) + rest], measures, sign)
                for tag in event.tags or ():
                    _add(tag_totals[(tag, hour) + rest], measures, sign)
        day_sink = days.sink_for_write(org_id)
        for table, deltas in ((UsageRollup, totals), (UsageTagRollup, tag_totals)):
            deltas = {key: values for key, values in deltas.items() if any(values)}
            if deltas:
                rollups.upsert_rollups(table, org_id, deltas, day_sink)
                _drop_empty(table, org_id, sorted(emptied))
                days.drop_empty(table, org_id, sorted(emptied), day_sink)
        (RollupMove.update(after_id=events[-1].id, updated_at=clock.now())
         .where(RollupMove.id == move_id).execute())
        return org_id, False


def pending(org) -> bool:
    """True while a move of the organization's rollups is unfinished."""
    return RollupMove.select().where(RollupMove.organization == org).exists()


def _add(into: list[int], measures: tuple, sign: int) -> None:
    for i, value in enumerate(measures):
        into[i] += sign * value


def _drop_empty(table, org_id: int, hours: list) -> None:
    """Rows the move left with nothing in them (every measure zero: a row
    can be negative for a while when two realignments overlap)."""
    for start in range(0, len(hours), 500):
        table.delete().where(table.organization == org_id, table.hour.in_(hours[start:start + 500]),
                             *[getattr(table, m) == 0 for m in table.MEASURES]).execute()


def run(move_id: int) -> None:
    """The task's body: one batch, then the next as a task of its own. A
    retry, a second copy of the task or the hourly resume reads how far the
    move got from its row, so no batch is moved twice; after the last batch
    of the organization's last pending move, the budgets' counters are
    rebuilt from the moved rollups."""
    result = move_batch(move_id)
    if result is None:
        return
    org_id, done = result
    if not done:
        _enqueue(move_id)
        return
    if pending(org_id):
        return  # another move of this organization finishes later and rebuilds then
    org = Organization.get_or_none(Organization.id == org_id)
    if org is not None:
        from costguardian.services.budgets import accounting as budget_accounting

        budget_accounting.rebuild_org(org)


def realign_stale() -> int:
    """Start the move for every organization whose stored alignment is not
    its zone's: those created before rollups followed local hours (migration
    0027 gave them 0, which is what their buckets were), and any change
    the zone-change path missed. Returns how many were started."""
    started = 0
    zones = [row.time_zone for row in Organization.select(Organization.time_zone).distinct()]
    for zone_name in zones:
        try:
            wanted = rollups.alignment_of(zone_name)
        except Exception:  # an unknown zone name: the settings form refuses them; nothing to align to
            continue
        stale = Organization.select().where(Organization.time_zone == zone_name,
                                            Organization.rollup_offset_minutes != wanted)
        for org in stale:
            started += change_alignment(org, wanted)
    # Moves whose task chain broke (a failed enqueue, a worker killed between
    # batches, retries exhausted): resume them where their row says.
    for move in RollupMove.select(RollupMove.id).where(RollupMove.updated_at < clock.now() - STALLED_AFTER):
        _enqueue(move.id)
        started += 1
    return started

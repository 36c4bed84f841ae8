"""Bringing stored usage in line with an organization's prices and names.

Repricing recomputes every stored event of one (provider, model) with the
organization's prices as they are now, and moves the difference into the
hourly and per-tag rollups, a chunk of events at a time, each chunk in one
write transaction: rollups always equal the sum of their events. It runs as a
Huey task (`tasks.reprice_model`) after every change to an override.
"""
from __future__ import annotations

from collections import defaultdict

from peewee import Case, PostgresqlDatabase, fn

from costguardian.db import write_transaction
from costguardian.extensions import db
from costguardian.models import NO_DEPARTMENT, NO_KEY, Organization, UsageEvent, UsageRollup, UsageTagRollup
from costguardian.services import queue
from costguardian.services.budgets import accounting as budget_accounting
from costguardian.services.usage.pricing import OrgPrices, Tokens
from costguardian.services.usage import days
from costguardian.services.usage.rollups import bucket_start, upsert_rollups, write_state

CHUNK = 2000


RERUN_AFTER = 120  # seconds: longer than any ingest batch takes from loading prices to commit


def schedule_reprice(org: Organization, provider: str, model: str) -> None:
    """Reprice now, and once more a little later: a batch that loaded the old
    prices just before the change may commit after the first run has passed
    (repricing is idempotent, so the second run only catches those)."""
    queue.enqueue("reprice_model", org.id, provider, model)
    queue.enqueue("reprice_model", org.id, provider, model, delay=RERUN_AFTER)


WAIT_FOR_MOVE = 60  # seconds between looks while the organization's rollups move to a new alignment


def reprice_by_id(org_id: int, provider: str, model: str) -> int:
    """The task's body: reprice unless the organization is gone meanwhile.
    While its rollups move to a new zone's hours (services/usage/realign.py)
    it waits: an event the move has not reached is still in its old bucket,
    where this rewrite would not look for it."""
    from costguardian.services.usage import realign

    org = Organization.get_or_none(Organization.id == org_id)
    if org is None:
        return 0
    if realign.pending(org):
        queue.enqueue("reprice_model", org_id, provider, model, delay=WAIT_FOR_MOVE)
        return 0
    return reprice(org, provider, model)


def reprice(org: Organization, provider: str, model: str) -> int:
    """Recompute the cost of every stored event of (provider, model) with the
    organization's prices now; update the ones that changed and their rollups.
    Returns the number of events whose cost changed."""
    prices = OrgPrices.for_org(org)
    return _rewrite(org, (UsageEvent.provider == provider) & (UsageEvent.model == model), model, prices)


def reattribute(org: Organization, provider: str, alias: str, model: str) -> int:
    """Move the stored events that name `alias` (as ingest would now map them)
    to `model`, their measures from the old rollup rows to the new ones, and
    price them as `model`. Returns the number of events moved."""
    prices = OrgPrices.for_org(org)
    condition = ((UsageEvent.provider == provider) & (fn.LOWER(UsageEvent.model_raw) == alias.lower())
                 & (UsageEvent.model != model))
    return _rewrite(org, condition, model, prices)


_EVENT_COLUMNS = (UsageEvent.id, UsageEvent.occurred_at, UsageEvent.provider, UsageEvent.model,
                  UsageEvent.api_key, UsageEvent.user_ref, UsageEvent.department, UsageEvent.input_tokens,
                  UsageEvent.cache_read_tokens, UsageEvent.cache_write_tokens, UsageEvent.output_tokens,
                  UsageEvent.batch, UsageEvent.service_tier, UsageEvent.cost_nanos, UsageEvent.priced_by,
                  UsageEvent.tags)


def _rewrite(org: Organization, condition, model: str, prices: OrgPrices) -> int:
    """Reprice as `model` (renaming them if need be) the events matching `condition`, CHUNK
    events at a time in id order, each chunk with its rollup deltas in one
    write transaction. On PostgreSQL the chunk's events are locked, so two
    repricings of one model cannot both apply the same delta."""
    changed, last_id = 0, 0
    while True:
        with write_transaction():
            query = (UsageEvent.in_org(org, *_EVENT_COLUMNS).where(condition, UsageEvent.id > last_id)
                     .order_by(UsageEvent.id).limit(CHUNK))
            if isinstance(db.obj, PostgresqlDatabase):
                query = query.for_update()
            events = list(query)
            if not events:
                return changed
            changed += _rewrite_chunk(org, events, model, prices)
        last_id = events[-1].id


def _rewrite_chunk(org: Organization, events: list, model: str, prices: OrgPrices) -> int:
    updates: list[tuple[int, int | None, str]] = []
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0] * 7)
    tag_totals: dict[tuple, list[int]] = defaultdict(lambda: [0] * 7)
    renamed_from: set[str] = set()
    state = write_state(org.id)
    aligned_to = state.alignment
    for event in events:
        tokens = Tokens(event.input_tokens, event.cache_read_tokens, event.cache_write_tokens, event.output_tokens)
        cost, priced_by = prices.price(event.provider, model, event.occurred_at, tokens, event.batch,
                                       event.service_tier)
        if model == event.model and cost == event.cost_nanos and priced_by == event.priced_by:
            continue
        updates.append((event.id, cost, priced_by))
        if model != event.model:
            renamed_from.add(event.model)
        for key, measures, sign in (
                (_rollup_key(event, event.model, aligned_to), _measures(event, event.cost_nanos), -1),
                (_rollup_key(event, model, aligned_to), _measures(event, cost), 1)):
            _add(totals[key], measures, sign)
            for tag in event.tags or ():
                _add(tag_totals[(tag,) + key], measures, sign)
    if not updates:
        return 0
    changed = {event_id: cost for event_id, cost, _ in updates}
    budget_accounting.apply_rewrite(
        org.id, [budget_accounting.event_row(e) for e in events if e.id in changed],
        [budget_accounting.event_row(e, model, changed[e.id]) for e in events if e.id in changed])
    _update_events(updates, model)
    _apply(UsageRollup, org.id, totals, state.days)
    _apply(UsageTagRollup, org.id, tag_totals, state.days)
    if renamed_from:  # rollup rows left with nothing in them
        provider = events[0].provider
        for table in (UsageRollup, UsageTagRollup):
            table.delete().where(table.organization == org.id, table.provider == provider,
                                 table.model.in_(sorted(renamed_from)), table.requests == 0).execute()
        days.drop_empty_models(org.id, provider, sorted(renamed_from))
    return len(updates)


def _rollup_key(event, model: str, aligned_to: int) -> tuple:
    return (bucket_start(aligned_to, event.occurred_at), event.provider, model,
            event.api_key_id or NO_KEY, event.user_ref, event.department_id or NO_DEPARTMENT)


def _measures(event, cost: int | None) -> tuple:
    return (1, event.input_tokens, event.cache_read_tokens, event.cache_write_tokens, event.output_tokens,
            cost or 0, 1 if cost is None else 0)


def _add(into: list[int], measures: tuple, sign: int) -> None:
    for i, value in enumerate(measures):
        into[i] += sign * value


def _apply(table, org_id: int, totals: dict[tuple, list[int]], day_sink) -> None:
    deltas = {key: values for key, values in totals.items() if any(values)}
    if deltas:
        upsert_rollups(table, org_id, deltas, day_sink)


def _update_events(updates: list[tuple[int, int | None, str]], model: str) -> None:
    """One UPDATE per 500 events: CASE id WHEN … THEN … for the new values."""
    for start in range(0, len(updates), 500):
        part = updates[start:start + 500]
        UsageEvent.update({
            UsageEvent.model: model,
            UsageEvent.cost_nanos: Case(UsageEvent.id, [(i, cost) for i, cost, _ in part], UsageEvent.cost_nanos),
            UsageEvent.priced_by: Case(UsageEvent.id, [(i, by) for i, _, by in part], UsageEvent.priced_by),
        }).where(UsageEvent.id.in_([i for i, _, _ in part])).execute()

"""Retention of raw usage: each organization chooses how many days its raw
usage events and gateway request rows are kept (`usage_event_retention_days`;
None keeps them forever), and a daily task deletes what is older.

The hourly rollups are never pruned, so the dashboard, the explorer's totals,
budgets, billing meters and reconciliation (all read from rollups) stay exact
for every past period. What needs the raw rows (the event CSV export, a
reprice, a budget rebuilt over a period that does not start on a whole UTC
hour) covers only the kept window: `pruned_before` says where it starts, so
pages can say so. Repricing moves deltas from the events it finds into the
rollups, so pruned hours keep the cost they had.

When billing is on, the plan's `retention_days` is the most an organization
keeps: the plan of its subscription (even while a failed payment has it on
Free limits, so a payment problem never deletes history), else Free's.

Ingest refuses an event older than the kept window: its event id may be one
already pruned, and accepting it again would count it twice in the rollups.

Deletion runs in batches of BATCH rows, oldest first, each in its own short
transaction, so a large first prune never holds one long lock. On PostgreSQL,
where usage events are partitioned by month (services/ops/partitions.py), a
month partition whose every row is past its organization's cutoff is first
detached and dropped whole; the batches delete what is left (organizations
whose shorter retention ends inside a month others keep) and the events'
idempotency keys (usage_event_key).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from costguardian import clock
from costguardian.db import write_transaction
from costguardian.models import GatewayRequest, GatewayRequestBody, Organization, UsageEvent
from costguardian.services.actor import Actor
from costguardian.services.errors import ValidationError
from costguardian.services.ops import partitions
from costguardian.services.team import audit

MIN_DAYS, MAX_DAYS = 30, 3650
BATCH = 5000
_MESSAGE = f"Enter a whole number of days from {MIN_DAYS} to {MAX_DAYS}, or leave it empty to keep every event."


def validated_days(value) -> int | None:
    """The setting from a form or API value: None (keep forever) for empty or 0."""
    text = "" if value is None else str(value).strip()
    if text in ("", "0"):
        return None
    try:
        days = int(text)
    except ValueError:
        raise ValidationError({"usage_event_retention_days": _MESSAGE}) from None
    if not MIN_DAYS <= days <= MAX_DAYS:
        raise ValidationError({"usage_event_retention_days": _MESSAGE})
    return days


def plan_days(org: Organization, now: datetime | None = None) -> int | None:
    """The most days the organization's plan keeps (None: billing is off)."""
    from costguardian.services import billing
    from costguardian.services.billing import accounts

    if not billing.enabled():
        return None
    access = accounts.access_many([org], now)[org.id]  # never creates a billing account (ingest calls this)
    plan = access.subscribed or access.plan
    return max(int(plan.retention_days or 0), 1)


def effective_days(org: Organization, now: datetime | None = None) -> int | None:
    """How many days of raw events the organization keeps now (None: all)."""
    chosen, cap = org.usage_event_retention_days, plan_days(org, now)
    if chosen is None:
        return cap
    return chosen if cap is None else min(chosen, cap)


def pruned_before(org: Organization, now: datetime | None = None) -> datetime | None:
    """The UTC moment before which raw events are not kept (None: all are)."""
    days = effective_days(org, now)
    return None if days is None else (now or clock.now()) - timedelta(days=days)


def update_setting(org: Organization, actor: Actor, value) -> Organization:
    """Set the organization's retention (validated); audit-logged when it changes."""
    days = validated_days(value)
    if days != org.usage_event_retention_days:
        before = org.usage_event_retention_days
        Organization.update(usage_event_retention_days=days, updated_at=clock.now()) \
            .where(Organization.id == org.id).execute()
        org.usage_event_retention_days = days
        audit.record(actor, "org.updated", org=org, target=org,
                     changes={"usage_event_retention": [_label(before), _label(days)]})
    return org


def _label(days: int | None) -> str:
    return "forever" if days is None else f"{days} days"


def _delete_batches(model, time_column, org_id: int, cutoff: datetime, batch: int) -> int:
    deleted = 0
    while True:
        with write_transaction():
            ids = [i for i, in model.select(model.id)
                   .where(model.organization == org_id, time_column < cutoff)
                   .order_by(time_column, model.id).limit(batch).tuples()]
            if ids:  # the time bound lets PostgreSQL look in the old partitions only
                deleted += model.delete().where(model.id.in_(ids), time_column < cutoff).execute()
        if len(ids) < batch:
            return deleted


def prune_org(org: Organization, now: datetime | None = None, batch: int = BATCH,
              dropped: int = 0) -> dict[str, int]:
    """Delete the organization's raw events, request rows (and their bodies)
    older than its retention; returns how many of each (with `dropped`, its
    events prune_all already dropped with whole partitions)."""
    cutoff = pruned_before(org, now)
    if cutoff is None:
        return {"usage_events": dropped, "gateway_requests": 0}
    events = dropped + _delete_batches(UsageEvent, UsageEvent.occurred_at, org.id, cutoff, batch)
    partitions.delete_keys(org.id, cutoff, batch)  # after their events: a kept event never loses its key
    result = {"usage_events": events,
              "gateway_requests": _delete_batches(GatewayRequest, GatewayRequest.started_at, org.id, cutoff, batch)}
    # Bodies have their own, shorter retention; none outlives its request row.
    _delete_batches(GatewayRequestBody, GatewayRequestBody.created_at, org.id, cutoff, batch)
    if any(result.values()):
        audit.record(Actor.system(), "org.usage_pruned", org=org, target=org,
                     before=cutoff.isoformat(timespec="minutes"), **result)
    return result


def prune_all(now: datetime | None = None, batch: int = BATCH) -> dict[str, int]:
    """The daily task: every organization with a retention (its own or its
    plan's). Returns the totals deleted."""
    from costguardian.services import billing

    now = now or clock.now()
    dropped = {}
    if partitions.partitioned():
        cutoffs = {org.id: pruned_before(org, now) for org in Organization.select()}
        dropped = partitions.drop_expired(cutoffs, now)
    query = Organization.select().order_by(Organization.id)
    if not billing.enabled():
        query = query.where(Organization.usage_event_retention_days.is_null(False))
    totals = {"usage_events": 0, "gateway_requests": 0}
    for org in query:
        for name, count in prune_org(org, now, batch, dropped.get(org.id, 0)).items():
            totals[name] += count
    return totals

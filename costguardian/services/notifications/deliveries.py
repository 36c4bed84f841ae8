"""Carrying out deliveries: claim, attempt, record, retry with backoff, give up.

A Delivery row is the source of truth, never the queue: a task only carries
its id. A task claims the row (a conditional UPDATE, so two tasks for the
same delivery never both send), makes one attempt through the channel
(services.notifications.email or services.notifications.webhooks), records the attempt and
either finishes or schedules the next try with exponential backoff. The
periodic sweeper re-enqueues anything due that no task holds — deliveries
whose task was lost, or a worker that died mid-attempt — so nothing queued is
ever lost, whatever happens to the queue.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from peewee import IntegrityError

from costguardian import clock
from costguardian.extensions import db
from costguardian.models import Delivery, DeliveryAttempt
from costguardian.observability import metrics
from costguardian.services import queue

# Seconds to wait before each retry; the length is the number of retries.
# Email: about 3 hours in all. Webhooks: about 21 hours ("over hours").
BACKOFF = {
    "email": (30, 120, 600, 1800, 3600 * 2),
    "webhook": (60, 300, 1800, 3600 * 2, 3600 * 6, 3600 * 12),
}
LEASE = timedelta(minutes=5)  # an attempt in flight longer than this is presumed dead
PENDING = ("queued", "retrying")
STATUSES = ("queued", "sending", "retrying", "sent", "failed", "disabled")


@dataclass
class AttemptResult:
    ok: bool
    status_code: int | None = None
    latency_ms: int | None = None
    error: str = ""
    response_excerpt: str = ""
    retryable: bool = True  # False: retrying cannot help (e.g. the endpoint was deleted)


def _channel(name: str):
    from costguardian.services.notifications import email as notification_email, webhooks

    return {"email": notification_email, "webhook": webhooks}[name]


def _scale() -> float:
    return float(current_app.config.get("CG_RETRY_SCALE", 1.0))


def max_attempts(channel: str) -> int:
    return len(BACKOFF[channel]) + 1


def backoff_seconds(channel: str, attempts_done: int) -> float:
    """The wait after attempt number `attempts_done` failed."""
    return BACKOFF[channel][attempts_done - 1] * _scale()


def enqueue(delivery: Delivery, delay: float = 0) -> None:
    queue.enqueue("deliver", delivery.id, delay=delay)


def _claim(delivery_id: int) -> Delivery | None:
    """Take the delivery for one attempt, or None if it is not due or another
    task has it. The UPDATE is the lock: only one claimer sees a row changed.
    A new delivery ("queued") is due at once: its next_attempt_at is the
    clock of the host that created it, and a consumer on another host whose
    clock is a few milliseconds behind would otherwise skip it until the
    sweeper's next pass; only a retry waits for its time."""
    now = clock.now()
    token = uuid.uuid4().hex
    due = ((Delivery.status == "queued") | Delivery.next_attempt_at.is_null()
           | (Delivery.next_attempt_at <= now))
    claimed = (Delivery.update(status="sending", updated_at=now, next_attempt_at=now + LEASE, claim=token)
               .where(Delivery.id == delivery_id, Delivery.status.in_(PENDING), due)
               .execute())
    if not claimed:
        return None
    return Delivery.get_by_id(delivery_id)


def attempt(delivery_id: int) -> str | None:
    """One attempt of one delivery (the task body). Returns the new status,
    or None when there was nothing to do."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return None
    channel = _channel(delivery.channel)
    started = time.monotonic()
    try:
        result = channel.send(delivery)
    except Exception as exc:  # a channel bug or an unexpected library error: retry like any failure
        current_app.logger.exception("delivery %s failed unexpectedly", delivery_id)
        result = AttemptResult(ok=False, error=f"{type(exc).__name__}: {exc}")
    if result.latency_ms is None:
        result.latency_ms = int((time.monotonic() - started) * 1000)
    status = record(delivery, result)
    metrics.delivery_attempt(delivery.channel, status)
    return status


def record(delivery: Delivery, result: AttemptResult) -> str:
    """Write the attempt and the delivery's next state — only while this
    attempt still holds the claim: if its lease ran out and the sweeper gave
    the delivery to another task, that task's outcome stands, not this one's."""
    now = clock.now()
    number = delivery.attempts + 1
    if result.ok:
        fields = {"status": "sent", "sent_at": now, "last_error": "", "next_attempt_at": None}
        retry = False
    else:
        retry = result.retryable and number < max_attempts(delivery.channel)
        wait = backoff_seconds(delivery.channel, number) if retry else 0
        fields = {"status": "retrying" if retry else "failed", "last_error": result.error[:2000],
                  "next_attempt_at": now + timedelta(seconds=wait) if retry else None}
    fields.update(attempts=number, updated_at=now, response_code=result.status_code, claim="")
    try:
        with db.atomic():
            held = (Delivery.update(fields)
                    .where(Delivery.id == delivery.id, Delivery.status == "sending",
                           Delivery.claim == delivery.claim).execute())
            if not held:
                gone = not Delivery.select().where(Delivery.id == delivery.id).exists()
                return "deleted" if gone else "superseded"
            DeliveryAttempt.create(delivery=delivery, number=number, ok=result.ok, status_code=result.status_code,
                                   latency_ms=result.latency_ms, error=result.error[:2000],
                                   response_excerpt=result.response_excerpt[:1000], created_at=now)
    except IntegrityError:  # the delivery went with its endpoint while the attempt was in flight
        return "deleted"
    delivery = Delivery.get_or_none(Delivery.id == delivery.id)
    if delivery is None:
        return "deleted"
    _channel(delivery.channel).after_attempt(delivery, result)  # may disable an endpoint (and this delivery)
    status = Delivery.select(Delivery.status).where(Delivery.id == delivery.id).scalar()
    if retry and status == "retrying":
        enqueue(delivery, delay=wait)
    return status or "deleted"


def sweep(limit: int = 500) -> int:
    """Re-enqueue deliveries that are due but held by no task: pending ones
    whose time has come (with a grace for their own scheduled task) and
    attempts whose worker died. Returns how many were enqueued."""
    now = clock.now()
    grace = timedelta(seconds=max(5.0, 60 * _scale()))
    # A dead worker's claim (its lease ran out): back to retrying, and due.
    stuck = [d.id for d in Delivery.select(Delivery.id)
             .where(Delivery.status == "sending", Delivery.next_attempt_at < now).limit(limit)]
    if stuck:
        (Delivery.update(status="retrying", next_attempt_at=now)
         .where(Delivery.id.in_(stuck), Delivery.status == "sending").execute())
    due = [d.id for d in Delivery.select(Delivery.id)
           .where(Delivery.status.in_(PENDING), Delivery.next_attempt_at <= now - grace)
           .order_by(Delivery.next_attempt_at).limit(limit)]
    ids = list(dict.fromkeys(stuck + due))
    for delivery_id in ids:
        queue.enqueue("deliver", delivery_id)
    return len(ids)


# --- the organization's delivery log ----------------------------------------------

def get(org, delivery_id) -> Delivery | None:
    """The organization's delivery with this id; None for an unknown id or another tenant's."""
    return Delivery.get_in_org(org, delivery_id)


def log(org, channel: str = "", status: str = "", event_type: str = "", page: int = 1,
        per_page: int = 50) -> tuple[list[Delivery], bool]:
    """One page of the organization's deliveries, newest first, narrowed by
    whichever filters are given; and whether another page follows."""
    query = Delivery.in_org(org)
    if channel:
        query = query.where(Delivery.channel == channel)
    if status:
        query = query.where(Delivery.status == status)
    if event_type:
        query = query.where(Delivery.event_type == event_type)
    rows = list(query.order_by(Delivery.created_at.desc(), Delivery.id.desc())
                .offset((page - 1) * per_page).limit(per_page + 1))
    return rows[:per_page], len(rows) > per_page


def attempts_of(delivery: Delivery) -> list[DeliveryAttempt]:
    """Every attempt of a delivery, first to last."""
    return list(DeliveryAttempt.select().where(DeliveryAttempt.delivery == delivery)
                .order_by(DeliveryAttempt.number))


def redeliver(delivery: Delivery) -> Delivery:
    """A new delivery of the same message (manual redelivery from the log);
    the original keeps its history."""
    copy = Delivery.create(organization=delivery.organization_id, channel=delivery.channel,
                           event_id=delivery.event_id, event_type=delivery.event_type,
                           notification=delivery.notification_id, endpoint=delivery.endpoint_id,
                           message=delivery.message_id, recipient=delivery.recipient, payload=delivery.payload,
                           status="queued", next_attempt_at=clock.now())
    enqueue(copy)
    return copy

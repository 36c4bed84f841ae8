"""Recording a gateway call, after its answer was sent.

A forwarded call becomes exactly one usage event through the ingest service
(the same validation, pricing, attribution, rollups and budget counters as
the API), with `event_id` = the gateway request id, so recording it twice
never counts twice. Its usage is the provider's own usage object, converted
by the ingest service (services.usage.usage_objects: Anthropic's cache
tokens, reported beside input_tokens, counted once). Tags: `source:gateway`,
the caller's, and `status:error` / `status:cancelled` / `usage:estimated`
when they apply. A call the provider refused is recorded with zero tokens
(zero cost). Beside it, one GatewayRequest row keeps latency, time to first
token, status and the streamed flag. Nothing of the prompt or the answer is
stored, unless the organization logged requests when the call was made: then
`bodies` (request_log.Capture) holds them and they are kept with the row.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from flask import current_app
from peewee import IntegrityError

from costguardian import settings_cache
from costguardian.db import write_transaction
from costguardian.models import GatewayRequest
from costguardian.prepared import Prepared
from costguardian.observability import metrics
from costguardian.services.gateway import admission, leases as budget_leases, request_log
from costguardian.services.usage import ingest

log = logging.getLogger(__name__)

OK, UPSTREAM_ERROR, BLOCKED, REFUSED = "ok", "upstream_error", "blocked", "refused"
TIMEOUT, UNREACHABLE, CANCELLED = "timeout", "unreachable", "cancelled"
ERROR_CHARS = 300


@dataclass
class CallRecord:
    """Everything known about a call once its answer was sent."""

    request_id: str
    org: object
    api_key: object
    endpoint: str
    started_at: datetime  # naive UTC
    requested_model: str = ""
    provider: str = ""  # as usage events name it
    model: str = ""  # as the provider answered (else as asked)
    credential_id: int | None = None
    user: str = ""
    department: str = ""
    tags: list[str] = field(default_factory=list)
    status_code: int = 200
    outcome: str = OK
    error: str = ""
    streamed: bool = False
    forwarded: bool = False
    usage: dict | None = None  # the provider's usage object (or an estimate in its format)
    usage_estimated: bool = False
    latency_ms: int = 0
    ttft_ms: int | None = None
    bodies: request_log.Capture | None = None  # the request and answer, when the organization logs them

    def event_tags(self) -> list[str]:
        tags = ["source:gateway", *self.tags]
        if self.outcome == CANCELLED:
            tags.append("status:cancelled")
        elif self.outcome != OK:
            tags.append("status:error")
        if self.usage_estimated:
            tags.append("usage:estimated")
        return tags


def record(call: CallRecord, held=None) -> str | None:
    """Store the call and release `held` (its admission.Admission, if any)
    in the same transaction; returns the usage event's status (accepted,
    duplicate, rejected) or None when no event was due. Returns once both are
    committed (or, when the database failed, logged: the reservation then
    expires)."""
    item = _Item(call, held)
    _recorder().submit(item)
    return item.status


# --- group commit ----------------------------------------------------------------------
#
# Calls that finish while another call's recording is being written wait for
# it, then the first of them writes all of them in one transaction: their
# events through ingest together (one insert, one upsert per rollup and
# counter row they share), their log rows in one insert, their reservations in
# one delete. Alone, a call is written at once, as before; under load the
# database work per call shrinks with the batch (docs/PERFORMANCE.md). No
# thread of its own: the threads that finish calls take turns, so nothing is
# left unwritten when a worker stops, and a test sees its call stored as soon
# as the call's finish returns. What follows the commit (threshold alerts,
# the kept bodies) runs once the turn is passed on, and the batch's threads
# return after it.

MAX_BATCH = 200  # calls written in one transaction


class _Item:
    __slots__ = ("call", "held", "status", "done", "finished", "priced", "result")

    def __init__(self, call: CallRecord, held):
        self.call, self.held = call, held
        self.status: str | None = None
        self.done = False  # committed (or failed and logged)
        self.finished: threading.Event | None = None  # its batch's work after the commit is done too
        self.priced = None  # its ingest.Priced (when forwarded)
        self.result = None  # its ingest.EventResult

    def spent(self) -> int:
        """The call's cost as its usage event adds it to the spend counters (0 when it adds nothing)."""
        result = self.result
        return (result.cost_nanos or 0) if result is not None and result.status == "accepted" else 0


_writing = threading.local()  # .now: this thread is writing a batch (or what follows its commit)


def writing_here() -> bool:
    """Is this thread writing recordings? (Then a call it finishes must not
    wait for its own turn.)"""
    return getattr(_writing, "now", False)


class _Recorder:
    def __init__(self):
        self.pending: list[_Item] = []
        self.queue_lock = threading.Lock()
        self.turn = threading.Lock()  # the thread holding it writes what is pending

    def submit(self, item: _Item) -> None:
        with self.queue_lock:
            self.pending.append(item)
        while not item.done:
            with self.turn:
                if item.done:  # written by the batch of the thread that had the turn
                    break
                with self.queue_lock:
                    batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                _writing.now = True
                try:
                    after_commit = _write(batch)
                finally:
                    _writing.now = False
            _writing.now = True
            try:
                after_commit()  # the notifications and kept bodies, once the next batch may be written
            finally:
                _writing.now = False
        item.finished.wait()


def _recorder() -> _Recorder:
    return current_app.extensions.setdefault("cg_gateway_recorder", _Recorder())


def _write(batch: list[_Item]) -> Callable[[], None]:
    """Write the batch (committed when this returns: its items are done);
    returns what remains to do after the commit, which sets the items
    finished."""
    finished = threading.Event()
    stored = None
    try:
        for item in batch:
            item.finished = finished
        try:
            with contextlib.ExitStack() as pins:  # the organizations' settings as kept, if unchanged
                for org_id in sorted({item.call.org.id for item in batch}):
                    pins.enter_context(settings_cache.pinned(org_id))
                _price(batch)
            stored = _write_together(batch)
        except Exception:
            log.exception("recording %d gateway calls together failed; recording them one by one", len(batch))
            for item in batch:
                _write_alone(item)
        else:
            for item in batch:
                if item.result is not None:
                    item.status = _status(item)
    except BaseException:
        finished.set()
        raise
    finally:
        for item in batch:
            item.done = True

    def after_commit() -> None:
        try:
            if stored is not None:
                _after_commit(batch, stored)
        finally:
            finished.set()

    return after_commit


def _price(batch: list[_Item]) -> None:
    """Validate and price the events (no writes), the calls of one key and
    credential together."""
    groups: dict[tuple, list[_Item]] = {}
    for item in batch:
        call = item.call
        if call.forwarded:
            key_id = call.api_key.id if call.api_key is not None else None
            groups.setdefault((call.org.id, key_id, call.credential_id), []).append(item)
    for items in groups.values():
        first = items[0].call
        priced = ingest.price(first.org, first.api_key, [_event(i.call, i.call.usage) for i in items],
                              gateway_tags=True, credential_id=first.credential_id)
        for item, result in zip(items, priced.result.results):
            item.priced, item.result = priced, result
            if result.status == "rejected" and "usage" in result.errors:
                _unreadable_usage(item, result.errors["usage"])


def _unreadable_usage(item: _Item, error: str) -> None:
    """A usage object the converter cannot read must not lose the call: zero
    tokens, marked, and the reason in the log."""
    call = item.call
    log.warning("gateway request %s: the provider's usage object was refused (%s); recorded without tokens",
                call.request_id, error)
    call.tags = _unreadable(call.tags)
    item.priced = ingest.price(call.org, call.api_key, [_event(call, None)], gateway_tags=True,
                               credential_id=call.credential_id)
    item.result = item.priced.result.results[0]


def _write_together(batch: list[_Item]) -> list[tuple]:
    """One transaction: the events (per organization, in id order: the order
    admission locks counters in), the log rows, the reservations released.
    Returns (organization, its priced batches, the counters touched) for
    `_after_commit`."""
    by_org: dict[int, tuple[object, list]] = {}
    for item in batch:
        if item.priced is not None:
            _, priced = by_org.setdefault(item.call.org.id, (item.call.org, []))
            if not any(p is item.priced for p in priced):
                priced.append(item.priced)
    held = [item.held.id for item in batch if item.held is not None and item.held.id is not None]
    # lease → the costs of its calls, which its row holds no longer once they are in spend. Each call's
    # cost is read once, as priced: the row and the lease's memory must be lowered by the same amount
    # (the store may find an event already recorded; then the lease just holds less than it could).
    spent: dict[int, int] = {}
    leased: dict = {}
    for item in batch:
        if item.held is not None and item.held.leases:
            spent[id(item)] = cost = item.spent()
            for lease in item.held.leases:
                leased[lease] = leased.get(lease, 0) + cost
    with write_transaction():  # queued with the other writers (db.SerializedSqliteDatabase)
        stored = [(org, priced, ingest.store(org, priced)) for _, (org, priced) in sorted(by_org.items())]
        _INSERT_LOGS.write(*[value for item in batch for value in _log_row(item.call)])
        if held:
            admission.release(held)
        for lease in sorted(leased, key=lambda lease: lease.row_id):  # after the counters, in id order (leases.py)
            budget_leases.lower(lease.row_id, leased[lease])
    if leased:  # committed: the calls' estimates are in flight no longer
        registry = budget_leases.registry()
        for item in batch:
            if item.held is not None and item.held.leases:
                registry.settled(item.held.leases, item.held.reserved_nanos, spent[id(item)])
                item.held.leases = ()
    return stored


def _after_commit(batch: list[_Item], stored: list[tuple]) -> None:
    for org, priced, touched in stored:
        try:
            ingest.after_store(org, priced, touched)
        except Exception:
            log.exception("telling about recorded gateway calls of organization %s failed", org.id)
    for item in batch:
        _done(item.call)


def _done(call: CallRecord) -> None:
    try:
        metrics.gateway_call(call.endpoint, call.outcome)
    except Exception:  # a metrics failure never stops the rest
        log.warning("could not count gateway request %s", call.request_id, exc_info=True)
    if call.bodies is not None:  # after the usage event and the log row: a failure here loses only the bodies
        try:
            request_log.store(call.org, call.request_id, call.bodies)
        except Exception:
            log.exception("keeping the bodies of gateway request %s failed", call.request_id)


def _write_alone(item: _Item) -> None:
    """One call in transactions of its own (after its batch failed): a call
    that cannot be written does not keep the others from being written."""
    call = item.call
    try:
        if call.forwarded:
            item.status = _record_usage(item)
        _log(call)
        _done(call)
    except Exception:
        log.exception("recording gateway request %s failed", call.request_id)
    finally:
        if item.held is not None:
            admission.settle(item.held, item.spent())  # its leases: their rows and their memory lowered alike


def _event(call: CallRecord, usage: dict | None) -> dict:
    event = {"event_id": call.request_id, "provider": call.provider, "model": call.model[:200],
             "occurred_at": call.started_at.isoformat() + "Z", "tags": call.event_tags()}
    if usage is not None:
        event["usage"] = usage
    else:
        event.update(input_tokens=0, output_tokens=0)
    if call.user:
        event["user"] = call.user
    if call.department:
        event["department"] = call.department
    return event


def _record_usage(item: _Item) -> str:
    """The call's usage event alone, in a transaction of its own."""
    _price([item])
    touched = ingest.store(item.call.org, [item.priced])
    ingest.after_store(item.call.org, [item.priced], touched)
    return _status(item)


def _status(item: _Item) -> str:
    if item.result.status == "rejected":
        log.error("gateway request %s could not be recorded: %s", item.call.request_id, item.result.errors)
    return item.result.status


def _unreadable(tags: list[str]) -> list[str]:
    return tags if "usage:unreadable" in tags else [*tags, "usage:unreadable"]


_LOG_FIELDS = [GatewayRequest.organization, GatewayRequest.request_id, GatewayRequest.api_key,
               GatewayRequest.endpoint, GatewayRequest.provider, GatewayRequest.model, GatewayRequest.credential_id,
               GatewayRequest.started_at, GatewayRequest.status_code, GatewayRequest.outcome, GatewayRequest.error,
               GatewayRequest.streamed, GatewayRequest.forwarded, GatewayRequest.usage_estimated,
               GatewayRequest.latency_ms, GatewayRequest.ttft_ms]
_INSERT_LOGS = Prepared(lambda *flat: GatewayRequest.insert_many(
    [flat[i:i + len(_LOG_FIELDS)] for i in range(0, len(flat), len(_LOG_FIELDS))], fields=_LOG_FIELDS)
    .on_conflict_ignore())


def _log_row(call: CallRecord) -> tuple:
    return (call.org.id, call.request_id, call.api_key.id if call.api_key is not None else None, call.endpoint,
            call.provider, call.requested_model[:200], call.credential_id, call.started_at, call.status_code,
            call.outcome, call.error[:ERROR_CHARS], call.streamed, call.forwarded, call.usage_estimated,
            max(0, call.latency_ms), call.ttft_ms)


def _log(call: CallRecord) -> None:
    try:
        with write_transaction():  # queued with the other writers (db.SerializedSqliteDatabase)
            _INSERT_LOGS.write(*_log_row(call))
    except IntegrityError:  # the same request recorded twice
        pass

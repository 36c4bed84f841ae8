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

import logging
from dataclasses import dataclass, field
from datetime import datetime

from peewee import IntegrityError

from costguardian.db import write_transaction
from costguardian.models import GatewayRequest
from costguardian.prepared import Prepared
from costguardian.observability import metrics
from costguardian.services.gateway import request_log
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


def record(call: CallRecord) -> str | None:
    """Store the call; returns the usage event's status (accepted,
    duplicate) or None when no event was due."""
    status = _record_usage(call) if call.forwarded else None
    _log(call)
    metrics.gateway_call(call.endpoint, call.outcome)
    if call.bodies is not None:  # after the usage event and the log row: a failure here loses only the bodies
        request_log.store(call.org, call.request_id, call.bodies)
    return status


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


def _record_usage(call: CallRecord) -> str:
    result = ingest.ingest(call.org, call.api_key, [_event(call, call.usage)], gateway_tags=True,
                           credential_id=call.credential_id).results[0]
    if result.status == "rejected" and "usage" in result.errors:
        # A usage object the converter cannot read must not lose the call: zero
        # tokens, marked, and the reason in the log.
        log.warning("gateway request %s: the provider's usage object was refused (%s); recorded without tokens",
                    call.request_id, result.errors["usage"])
        call.tags = [*call.tags, "usage:unreadable"]
        result = ingest.ingest(call.org, call.api_key, [_event(call, None)], gateway_tags=True,
                               credential_id=call.credential_id).results[0]
    if result.status == "rejected":
        log.error("gateway request %s could not be recorded: %s", call.request_id, result.errors)
    return result.status


_LOG_FIELDS = [GatewayRequest.organization, GatewayRequest.request_id, GatewayRequest.api_key,
               GatewayRequest.endpoint, GatewayRequest.provider, GatewayRequest.model, GatewayRequest.credential_id,
               GatewayRequest.started_at, GatewayRequest.status_code, GatewayRequest.outcome, GatewayRequest.error,
               GatewayRequest.streamed, GatewayRequest.forwarded, GatewayRequest.usage_estimated,
               GatewayRequest.latency_ms, GatewayRequest.ttft_ms]
_INSERT_LOG = Prepared(lambda *row: GatewayRequest.insert_many([row], fields=_LOG_FIELDS).on_conflict_ignore())


def _log(call: CallRecord) -> None:
    try:
        with write_transaction():  # queued with the other writers (db.SerializedSqliteDatabase)
            _INSERT_LOG.write(
                call.org.id, call.request_id, call.api_key.id if call.api_key is not None else None, call.endpoint,
                call.provider, call.requested_model[:200], call.credential_id, call.started_at, call.status_code,
                call.outcome, call.error[:ERROR_CHARS], call.streamed, call.forwarded, call.usage_estimated,
                max(0, call.latency_ms), call.ttft_ms)
    except IntegrityError:  # the same request recorded twice
        pass

"""One API key's gateway traffic, for its page: per window (the last 24
hours, the last 7 days) the calls, errors, budget blocks, cancelled calls,
cost and latency percentiles, and its most recent requests.

Counts are a range of the request log's (organization, started_at) index,
bounded by the window, narrowed to the key, without a join. The cost is the
usage events' with `source:gateway` of the key, read from the per-tag
rollups by whole UTC hours (the same numbers as the usage explorer). Latency
percentiles are nearest-rank over the calls forwarded to a provider (as in
traffic.latency_by_model: p95 is an observed latency), over the window's
latest LATENCY_SAMPLE calls so a busy key's page stays fast. The recent
requests join their usage events (event_id = request id) for model and cost.
Calls refused by a rate limit are not in the request log
(services/gateway/ratelimits.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import JOIN, SQL, Case, fn

from costguardian import clock
from costguardian.models import GatewayRequest, UsageEvent, UsageTagRollup
from costguardian.services.gateway import recording
from costguardian.services.gateway.traffic import LATENCY_SAMPLE
from costguardian.services.usage import rollups

WINDOWS = (("24h", "Last 24 hours", timedelta(hours=24)), ("7d", "Last 7 days", timedelta(days=7)))
RECENT = 20
GATEWAY_TAG = "source:gateway"
NOT_ERRORS = (recording.OK, recording.BLOCKED, recording.CANCELLED)


@dataclass(frozen=True)
class WindowTraffic:
    name: str  # 24h, 7d
    label: str
    start: datetime
    end: datetime
    calls: int
    errors: int  # the provider's errors, timeouts, unreachable, and calls the gateway refused (bad requests)
    blocked: int  # refused by a hard budget
    cancelled: int  # the caller went away mid-stream
    cost_nanos: int  # of the priced calls
    unpriced: int  # forwarded calls whose model has no known price
    p50_ms: int | None  # None: no call reached a provider
    p95_ms: int | None
    latency_sample: int | None = None  # set when the percentiles are of the window's latest this many calls only


@dataclass(frozen=True)
class RecentRequest:
    request_id: str
    started_at: datetime
    endpoint: str
    model: str  # as served (the usage event's), else as asked
    status_code: int
    outcome: str
    streamed: bool
    latency_ms: int
    ttft_ms: int | None
    cost_nanos: int | None  # None: not forwarded, or no known price


@dataclass(frozen=True)
class KeyTraffic:
    windows: list[WindowTraffic]
    recent: list[RecentRequest]


def of_key(org, api_key, now: datetime | None = None) -> KeyTraffic:
    now = now or clock.now()
    windows = [_window(org, api_key, name, label, now - span, now) for name, label, span in WINDOWS]
    week = windows[-1]
    return KeyTraffic(windows, recent(org, api_key, week.start, now) if week.calls else [])


def _conditions(org, api_key, start: datetime, end: datetime) -> list:
    return [GatewayRequest.organization == org, GatewayRequest.started_at >= start,
            GatewayRequest.started_at < end, GatewayRequest.api_key == api_key]


def _window(org, api_key, name: str, label: str, start: datetime, end: datetime) -> WindowTraffic:
    request = GatewayRequest

    def count_of(condition):
        return fn.COALESCE(fn.SUM(Case(None, [(condition, SQL("1"))], SQL("0"))), SQL("0"))

    row = (request
           .select(fn.COUNT(SQL("*")), count_of(request.outcome.not_in(NOT_ERRORS)),
                   count_of(request.outcome == recording.BLOCKED), count_of(request.outcome == recording.CANCELLED))
           .where(*_conditions(org, api_key, start, end))
           .tuples().first())
    calls, errors, blocked, cancelled = (int(v or 0) for v in row)
    cost, unpriced = _cost(org, api_key, start, end)
    p50, p95, sampled = _percentiles(org, api_key, start, end) if calls else (None, None, 0)
    return WindowTraffic(name, label, start, end, calls, errors, blocked, cancelled, cost, unpriced, p50, p95,
                         latency_sample=LATENCY_SAMPLE if sampled >= LATENCY_SAMPLE else None)


def _cost(org, api_key, start: datetime, end: datetime) -> tuple[int, int]:
    """The key's gateway cost from the per-tag rollups (`source:gateway`,
    the organization's local hours: the window's first hour counts whole): a
    range scan of their (organization, tag, hour, …) key, however many calls."""
    rollup = UsageTagRollup
    first_hour = rollups.bucket_start(rollups.alignment(org), start)
    row = (rollup.select(fn.COALESCE(fn.SUM(rollup.cost_nanos), SQL("0")),
                         fn.COALESCE(fn.SUM(rollup.unpriced_requests), SQL("0")))
           .where(rollup.organization == org, rollup.tag == GATEWAY_TAG, rollup.hour >= first_hour,
                  rollup.hour < end, rollup.api_key_id == api_key.id)
           .tuples().first())
    return int(row[0] or 0), int(row[1] or 0)


def _percentiles(org, api_key, start: datetime, end: datetime,
                 sample: int = LATENCY_SAMPLE) -> tuple[int | None, int | None, int]:
    """Nearest-rank p50 and p95 latency of the window's latest `sample`
    forwarded calls (all of them for most keys), and how many calls that
    was, in one query: its cost is bounded however busy the key."""
    request = GatewayRequest
    latest = (request.select(request.latency_ms.alias("latency"))
              .where(*_conditions(org, api_key, start, end), request.forwarded == True)
              .order_by(request.started_at.desc()).limit(sample).alias("latest"))
    ranked = (latest.select_from(latest.c.latency,
                                 fn.ROW_NUMBER().over(order_by=[latest.c.latency]).alias("rank"),
                                 fn.COUNT(SQL("*")).over().alias("n"))
              .alias("ranked"))

    def nearest_rank(percent: int):
        reached = (ranked.c.rank * SQL("100")) >= (ranked.c.n * SQL(str(int(percent))))
        return fn.MIN(Case(None, [(reached, ranked.c.latency)], None))

    p50, p95, n = (ranked.select_from(nearest_rank(50), nearest_rank(95), fn.COUNT(SQL("*"))).tuples().first()
                   or (None, None, 0))
    return (None if p50 is None else int(p50)), (None if p95 is None else int(p95)), int(n or 0)


def recent(org, api_key, start: datetime, end: datetime, limit: int = RECENT) -> list[RecentRequest]:
    """The key's latest calls in [start, end), newest first."""
    request, event = GatewayRequest, UsageEvent
    rows = (request
            .select(request.request_id, request.started_at, request.endpoint, request.model, request.status_code,
                    request.outcome, request.streamed, request.latency_ms, request.ttft_ms,
                    event.model.alias("served_model"), event.cost_nanos)
            .join(event, JOIN.LEFT_OUTER,
                  on=(event.organization == request.organization) & (event.event_id == request.request_id))
            .where(*_conditions(org, api_key, start, end))
            .order_by(request.started_at.desc(), request.id.desc())
            .limit(limit).dicts())
    return [RecentRequest(request_id=r["request_id"], started_at=r["started_at"], endpoint=r["endpoint"],
                          model=r["served_model"] or r["model"], status_code=r["status_code"], outcome=r["outcome"],
                          streamed=bool(r["streamed"]), latency_ms=r["latency_ms"], ttft_ms=r["ttft_ms"],
                          cost_nanos=r["cost_nanos"])
            for r in rows]

"""How the gateway's traffic went: latency percentiles per model, from the
request log (GatewayRequest), computed in the database.

The model shown is the one that *served* the call, as its usage event names
it (normalised by ingest: `gpt-4o-2024-08-06` and `openai/gpt-4o` are both
`gpt-4o`), so a row here is a row of the usage explorer's model grouping.
The request log's own `model` (as the caller asked for it) is the fallback
for a call whose event is missing (its recording failed).

Percentiles are nearest-rank: p95 is the smallest latency at least 95% of
the calls did not exceed (an observed value, never an interpolation), the
same on SQLite (window functions, 3.25+) and PostgreSQL. Only forwarded
calls count (a call refused before reaching the provider has no provider
latency); time to first token only over streamed calls that had one.

They are computed over the range's latest LATENCY_SAMPLE calls (every call
for most ranges), so a busy organization's three years cost what a quiet
week does: the sort is of the sample, never of the range. The result says
when the sample was full (`Latencies.sampled`), for the pages to say so.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from peewee import JOIN, SQL, Case, fn

from costguardian.models import GatewayRequest, UsageEvent

PERCENTILES = (50, 95, 99)
LATENCY_SAMPLE = 10_000  # the latest calls of the range the percentiles are computed over, at most
SOURCES = (None, "", "all", "gateway", "ingest")


@dataclass(frozen=True)
class ModelLatency:
    provider: str
    model: str
    calls: int
    p50_ms: int
    p95_ms: int
    p99_ms: int
    ttft_p50_ms: int | None  # None: no streamed call of this model reported a first token


class Latencies(list):
    """The rows of latency_by_model, and whether its sample was full: then
    the percentiles (and the calls counted) are those of the latest
    `sample` calls of the range, not of all of them."""

    def __init__(self, rows=(), *, sample: int = LATENCY_SAMPLE, sampled: bool = False):
        super().__init__(rows)
        self.sample, self.sampled = sample, sampled


def latency_by_model(org, start: datetime, end: datetime, *, api_key_id: int | None = None,
                     source: str | None = None, providers: list[str] | None = None,
                     models: list[str] | None = None, sample: int = LATENCY_SAMPLE) -> Latencies:
    """Per (provider, served model), the forwarded gateway calls started in
    [start, end) (naive UTC), of the latest `sample` of them: count,
    p50/p95/p99 latency and p50 time to first token; most calls first.
    `source` is the usage explorer's source filter: "ingest" has no gateway
    traffic (an empty list); None, "all" and "gateway" mean every gateway
    call. One query: a backward range scan of the (organization, started_at)
    index stopped after `sample` calls, one event lookup per call by its
    unique (organization, event_id), and two window passes over the sample."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of all, gateway, ingest (got {source!r})")
    if source == "ingest":
        return Latencies(sample=sample)
    request, event = GatewayRequest, UsageEvent
    provider = fn.COALESCE(event.provider, request.provider)
    model = fn.COALESCE(event.model, request.model)
    conditions = [request.organization == org, request.started_at >= start, request.started_at < end,
                  request.forwarded == True]
    if api_key_id is not None:
        conditions.append(request.api_key == api_key_id)
    if providers:
        conditions.append(provider.in_(providers))
    if models:
        conditions.append(model.in_(models))
    latest = (request
              .select(provider.alias("provider"), model.alias("model"), request.latency_ms.alias("latency"),
                      request.ttft_ms.alias("ttft"))
              .join(event, JOIN.LEFT_OUTER,
                    on=(event.organization == request.organization) & (event.event_id == request.request_id))
              .where(*conditions)
              .order_by(request.started_at.desc())
              .limit(sample)
              .alias("latest"))
    partition = [latest.c.provider, latest.c.model]
    no_ttft_last = Case(None, [(latest.c.ttft.is_null(), SQL("1"))], SQL("0"))  # literals: typed on PostgreSQL
    ranked = (latest
              .select_from(latest.c.provider, latest.c.model, latest.c.latency, latest.c.ttft,
                           fn.ROW_NUMBER().over(partition_by=partition, order_by=[latest.c.latency]).alias("rank"),
                           fn.COUNT(SQL("*")).over(partition_by=partition).alias("n"),
                           fn.ROW_NUMBER().over(partition_by=partition, order_by=[no_ttft_last, latest.c.ttft])
                           .alias("ttft_rank"),
                           fn.COUNT(latest.c.ttft).over(partition_by=partition).alias("ttft_n"))
              .alias("ranked"))

    def nearest_rank(column: str, rank: str, count: str, percent: int):
        # The smallest value whose rank r satisfies r >= percent% of n.
        value = getattr(ranked.c, column)
        reached = (getattr(ranked.c, rank) * SQL("100")) >= (getattr(ranked.c, count) * SQL(str(int(percent))))
        return fn.MIN(Case(None, [(value.is_null(False) & reached, value)], None))

    query = (ranked.select_from(ranked.c.provider, ranked.c.model, fn.COUNT(ranked.c.latency),
                                *[nearest_rank("latency", "rank", "n", p) for p in PERCENTILES],
                                nearest_rank("ttft", "ttft_rank", "ttft_n", 50))
             .group_by(ranked.c.provider, ranked.c.model)
             .order_by(fn.COUNT(ranked.c.latency).desc(), ranked.c.provider, ranked.c.model)
             .tuples())
    rows = [ModelLatency(provider=p, model=m, calls=int(calls), p50_ms=int(p50), p95_ms=int(p95), p99_ms=int(p99),
                         ttft_p50_ms=None if ttft is None else int(ttft))
            for p, m, calls, p50, p95, p99, ttft in query]
    return Latencies(rows, sample=sample, sampled=sum(row.calls for row in rows) >= sample)


def has_traffic(org, start: datetime, end: datetime) -> bool:
    """Did any call go through the gateway to a provider in [start, end)?"""
    return (GatewayRequest.select(GatewayRequest.id)
            .where(GatewayRequest.organization == org, GatewayRequest.started_at >= start,
                   GatewayRequest.started_at < end, GatewayRequest.forwarded == True)
            .limit(1).exists())

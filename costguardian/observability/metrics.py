"""Prometheus metrics (prometheus-client), scraped at GET /metrics.

Services count with one-line calls (`metrics.ingested(...)`, ...); the web
process and the task consumer count the same way. Labels are bounded sets
(endpoint names, methods, status classes, outcomes, task names), never raw
paths or ids.

Several processes (gunicorn workers, a consumer on the same host): with
PROMETHEUS_MULTIPROC_DIR set before start, each process writes its values
to files there and a scrape of any worker adds them up (gunicorn.conf.py
sets a directory for several workers and marks dead workers). The queue's
depth is read from the queue itself at scrape time."""
from __future__ import annotations

import os

# A directory named in the environment (deploy/costguardian.env.example: the
# web server and the consumer share one) is made on first use.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from prometheus_client import CollectorRegistry, Counter, Histogram, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily

_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 120.0)
_OVERHEAD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

HTTP_REQUESTS = Counter("cg_http_requests", "HTTP requests answered, by route (endpoint name), method and status class",
                        ["endpoint", "method", "status"])
HTTP_LATENCY = Histogram("cg_http_request_duration_seconds", "Time to answer an HTTP request, by route and method",
                         ["endpoint", "method"], buckets=_LATENCY_BUCKETS)
INGEST_EVENTS = Counter("cg_ingest_events", "Usage events received, by source (api, gateway) and outcome "
                        "(accepted, duplicate, rejected)", ["source", "outcome"])
GATEWAY_CALLS = Counter("cg_gateway_calls", "Gateway calls recorded, by endpoint and outcome", ["endpoint", "outcome"])
GATEWAY_OVERHEAD = Histogram("cg_gateway_added_latency_seconds", "Time the gateway spent on a call before "
                             "forwarding it (authentication, routing, budget admission)", buckets=_OVERHEAD_BUCKETS)
TASK_RUNS = Counter("cg_task_runs", "Background task runs, by task and outcome (ok, error)", ["task", "outcome"])
BUDGET_CHECKS = Counter("cg_budget_checks", "Budgets checked, by trigger (ingest, periodic)", ["trigger"])
DELIVERIES = Counter("cg_notification_delivery_attempts", "Notification delivery attempts, by channel (webhook, "
                     "email) and the delivery's status after it (sent, retrying, failed, ...)", ["channel", "outcome"])


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


# --- what the code counts ---------------------------------------------------------

def http_request(endpoint: str | None, method: str, status: int, seconds: float) -> None:
    endpoint = endpoint or "none"  # no route matched (404s); never the path
    method = method if method in _METHODS else "OTHER"
    HTTP_REQUESTS.labels(endpoint, method, f"{status // 100}xx").inc()
    HTTP_LATENCY.labels(endpoint, method).observe(seconds)


def ingested(source: str, accepted: int, duplicate: int, rejected: int) -> None:
    for outcome, count in (("accepted", accepted), ("duplicate", duplicate), ("rejected", rejected)):
        if count:
            INGEST_EVENTS.labels(source, outcome).inc(count)


def gateway_call(endpoint: str, outcome: str) -> None:
    GATEWAY_CALLS.labels(endpoint, outcome).inc()


def gateway_overhead(seconds: float) -> None:
    GATEWAY_OVERHEAD.observe(max(0.0, seconds))


def task_run(task: str, ok: bool) -> None:
    TASK_RUNS.labels(task, "ok" if ok else "error").inc()


def budgets_checked(trigger: str, count: int) -> None:
    if count:
        BUDGET_CHECKS.labels(trigger).inc(count)


def delivery_attempt(channel: str, outcome: str | None) -> None:
    if outcome is not None:
        DELIVERIES.labels(channel, outcome).inc()


# --- the scrape -------------------------------------------------------------------

class QueueDepth:
    """Tasks waiting in the queue, read from its storage at each scrape."""

    def collect(self):
        from tasks import huey

        reachable = GaugeMetricFamily("cg_queue_reachable", "1 when the task queue's storage answered the scrape")
        try:
            pending, scheduled = huey.pending_count(), huey.scheduled_count()
        except Exception:
            reachable.add_metric([], 0)
            yield reachable
            return
        reachable.add_metric([], 1)
        yield reachable
        depth = GaugeMetricFamily("cg_queue_tasks", "Tasks in the queue: pending (due now) and scheduled (later)",
                                  labels=["state"])
        depth.add_metric(["pending"], pending)
        depth.add_metric(["scheduled"], scheduled)
        yield depth


_queue_depth = QueueDepth()
if not multiprocess():
    REGISTRY.register(_queue_depth)


def exposition() -> bytes:
    """The text a scrape answers: this process's metrics, or every process's
    in multiprocess mode, and the queue's depth."""
    if not multiprocess():
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess as prometheus_multiprocess

    registry = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(registry)
    registry.register(_queue_depth)
    return generate_latest(registry)

"""Latency per model from the gateway's request log (services/gateway/traffic.py):
nearest-rank percentiles computed in the database, over forwarded calls in
[start, end), per model as the usage event names the model that served the call.

Calls are stored through the real recording path (recording.record: the usage
event through ingest, then the request-log row), as the proxy does."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from costguardian.models import GatewayRequest
from costguardian.services import keys
from costguardian.services.gateway import recording, traffic
from costguardian.services.gateway.recording import CallRecord
from costguardian.services.gateway.traffic import ModelLatency
from tests.support import SYSTEM

START = datetime(2026, 11, 2, 9, 0)
END = START + timedelta(days=1)


@pytest.fixture
def org(make_org):
    return make_org("Acme")


@pytest.fixture
def gateway_key(org):
    return keys.create_key(org, SYSTEM, "gateway", ["gateway"]).key


_counter = iter(range(1, 10**6))


def record(org, api_key, *, latency_ms, model="gpt-4o", requested=None, provider="openai", at=START,
           streamed=False, ttft_ms=None, forwarded=True, outcome=recording.OK) -> str:
    request_id = f"req-{next(_counter)}"
    usage = {"prompt_tokens": 100, "completion_tokens": 10} if forwarded else None
    recording.record(CallRecord(
        request_id=request_id, org=org, api_key=api_key, endpoint="chat.completions", started_at=at,
        requested_model=requested or model, provider=provider if forwarded else "", model=model,
        status_code=200 if outcome == recording.OK else 500, outcome=outcome, streamed=streamed,
        forwarded=forwarded, usage=usage, latency_ms=latency_ms, ttft_ms=ttft_ms))
    return request_id


def test_percentiles_are_nearest_rank_per_model(org, gateway_key):
    for latency in range(10, 201, 10):  # 20 calls: 10, 20, …, 200 ms, stored out of order
        record(org, gateway_key, latency_ms=210 - latency)
    for latency in (300, 100, 200):
        record(org, gateway_key, latency_ms=latency, model="claude-sonnet-4-5", provider="anthropic")

    rows = traffic.latency_by_model(org, START, END)

    # p50: rank ceil(0.5 × 20) = 10 → 100 ms; p95: rank 19 → 190; p99: rank ceil(19.8) = 20 → 200.
    assert rows == [
        ModelLatency("openai", "gpt-4o", calls=20, p50_ms=100, p95_ms=190, p99_ms=200, ttft_p50_ms=None),
        ModelLatency("anthropic", "claude-sonnet-4-5", calls=3, p50_ms=200, p95_ms=300, p99_ms=300,
                     ttft_p50_ms=None),
    ]


def test_time_to_first_token_counts_only_streamed_calls(org, gateway_key):
    record(org, gateway_key, latency_ms=50)  # not streamed: no first token
    record(org, gateway_key, latency_ms=60)
    for latency, ttft in ((900, 300), (800, 100), (700, 200), (1000, 400)):
        record(org, gateway_key, latency_ms=latency, streamed=True, ttft_ms=ttft)

    [row] = traffic.latency_by_model(org, START, END)

    assert row.calls == 6
    assert (row.p50_ms, row.p95_ms, row.p99_ms) == (700, 1000, 1000)
    assert row.ttft_p50_ms == 200  # of 100, 200, 300, 400: rank 2


def test_the_model_is_the_one_that_served_the_call(org, gateway_key):
    """Asked for as `openai/gpt-4o`, answered by `gpt-4o-2024-08-06`: one row, under
    the name the usage explorer uses for it."""
    record(org, gateway_key, latency_ms=10, requested="openai/gpt-4o", model="gpt-4o-2024-08-06")
    record(org, gateway_key, latency_ms=30, requested="gpt-4o", model="gpt-4o")

    assert [(r.provider, r.model, r.calls) for r in traffic.latency_by_model(org, START, END)] == [
        ("openai", "gpt-4o", 2)]


def test_a_call_without_its_usage_event_falls_back_to_the_model_asked_for(org, gateway_key):
    GatewayRequest.create(organization=org, request_id="req-lost", api_key=gateway_key, endpoint="chat.completions",
                          provider="openai", model="gpt-4o-mini", started_at=START, status_code=200, outcome="ok",
                          forwarded=True, latency_ms=42)

    assert traffic.latency_by_model(org, START, END) == [
        ModelLatency("openai", "gpt-4o-mini", calls=1, p50_ms=42, p95_ms=42, p99_ms=42, ttft_p50_ms=None)]


def test_only_forwarded_calls_in_the_window_of_this_organization(org, gateway_key, make_org):
    record(org, gateway_key, latency_ms=100)
    record(org, gateway_key, latency_ms=5, forwarded=False, outcome=recording.BLOCKED)  # refused before forwarding
    record(org, gateway_key, latency_ms=7, at=START - timedelta(microseconds=1))  # before the window
    record(org, gateway_key, latency_ms=9, at=END)  # the end is excluded
    other = make_org("Globex")
    record(other, keys.create_key(other, SYSTEM, "gw", ["gateway"]).key, latency_ms=1)

    assert [(r.calls, r.p50_ms) for r in traffic.latency_by_model(org, START, END)] == [(1, 100)]
    assert traffic.has_traffic(org, START, END)
    assert not traffic.has_traffic(org, END + timedelta(seconds=1), END + timedelta(days=1))


def test_filters_by_key_provider_model_and_source(org, gateway_key):
    other_key = keys.create_key(org, SYSTEM, "batch", ["gateway"]).key
    record(org, gateway_key, latency_ms=100)
    record(org, other_key, latency_ms=500)
    record(org, other_key, latency_ms=700, model="claude-sonnet-4-5", provider="anthropic")

    by_key = traffic.latency_by_model(org, START, END, api_key_id=gateway_key.id)
    assert [(r.model, r.calls, r.p50_ms) for r in by_key] == [("gpt-4o", 1, 100)]
    assert [r.model for r in traffic.latency_by_model(org, START, END, providers=["anthropic"])] == [
        "claude-sonnet-4-5"]
    assert [(r.model, r.calls) for r in traffic.latency_by_model(org, START, END, models=["gpt-4o"])] == [
        ("gpt-4o", 2)]
    assert len(traffic.latency_by_model(org, START, END, source="gateway")) == 2
    assert traffic.latency_by_model(org, START, END, source="ingest") == []  # ingested usage has no latency
    with pytest.raises(ValueError):
        traffic.latency_by_model(org, START, END, source="elsewhere")


def test_failed_upstream_calls_count_too(org, gateway_key):
    """A call the provider answered with an error was forwarded: its latency is real."""
    record(org, gateway_key, latency_ms=100)
    record(org, gateway_key, latency_ms=20, outcome=recording.UPSTREAM_ERROR)

    [row] = traffic.latency_by_model(org, START, END)
    assert (row.calls, row.p50_ms, row.p99_ms) == (2, 20, 100)


def test_percentiles_are_of_the_latest_calls_of_the_range_when_there_are_many(org, gateway_key):
    """Bounded work however busy the range: only the latest `sample` calls
    are ranked, and the result says the sample was full."""
    for minute, latency in enumerate((1000, 900, 10, 20, 30)):  # the two oldest are the slow ones
        record(org, gateway_key, latency_ms=latency, at=START + timedelta(minutes=minute))
    record(org, gateway_key, latency_ms=40, model="claude-sonnet-4-5", provider="anthropic",
           at=START + timedelta(minutes=10))

    rows = traffic.latency_by_model(org, START, END, sample=4)
    assert [(r.model, r.calls, r.p50_ms, r.p99_ms) for r in rows] == [("gpt-4o", 3, 20, 30),
                                                                     ("claude-sonnet-4-5", 1, 40, 40)]
    assert rows.sampled and rows.sample == 4

    everything = traffic.latency_by_model(org, START, END)
    assert not everything.sampled and everything.sample == traffic.LATENCY_SAMPLE
    assert [(r.model, r.calls, r.p50_ms, r.p99_ms) for r in everything] == [("gpt-4o", 5, 30, 1000),
                                                                           ("claude-sonnet-4-5", 1, 40, 40)]
    assert not traffic.latency_by_model(org, START, END, source="ingest").sampled


def test_the_pages_say_when_latency_is_from_a_sample(app, org, gateway_key):
    for minute in range(3):
        record(org, gateway_key, latency_ms=100 + minute, at=START + timedelta(minutes=minute))
    full = traffic.latency_by_model(org, START, END, sample=2)
    whole = traffic.latency_by_model(org, START, END)
    with app.test_request_context():
        usage = app.jinja_env.get_template("partials/usage/_latency.html")
        key = app.jinja_env.get_template("partials/keys/_latency.html")
        assert "from the latest 2\n  calls of the period" in usage.render(latency=full, query=None)
        assert "from the latest 2 calls of the last 7 days" in key.render(models=full)
        assert "latency-sampled" not in usage.render(latency=whole, query=None) + key.render(models=whole)


def test_a_keys_window_percentiles_are_of_its_latest_calls_and_its_page_says_so(app, org, gateway_key):
    from costguardian.services.gateway import key_traffic

    for minute, latency in enumerate((1000, 900, 10, 20, 30)):
        record(org, gateway_key, latency_ms=latency, at=START + timedelta(minutes=minute))
    assert key_traffic._percentiles(org, gateway_key, START, END, sample=3) == (20, 30, 3)
    assert key_traffic._percentiles(org, gateway_key, START, END) == (30, 1000, 5)

    found = key_traffic.of_key(org, gateway_key, now=START + timedelta(hours=1))
    assert [w.latency_sample for w in found.windows] == [None, None]  # far below the sample: every call counts
    busy = dataclasses.replace(found.windows[0], latency_sample=key_traffic.LATENCY_SAMPLE)
    with app.test_request_context():
        page = app.jinja_env.get_template("partials/keys/_traffic.html")
        html = page.render(traffic=key_traffic.KeyTraffic([busy], []), k=gateway_key, has_forwarded=False)
    assert "(latest 10,000 calls)" in html

"""The ingest service's promises: rollups always equal the sum of their events,
whatever the order, retries, duplicates, back-dating or concurrency."""
from __future__ import annotations

import random
import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from costguardian.extensions import db
from costguardian.models import Department, Organization, UsageEvent, UsageRollup, UsageTagRollup
from costguardian.services.usage import ingest
from costguardian.services.keys import create_key
from tests.support import SYSTEM

MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"),
          ("google", "gemini-2.0-flash"), ("mistral", "mistral-large-latest"), ("acme", "private-model")]


def _random_events(rng: random.Random, count: int, id_space: int, start: datetime) -> list[dict]:
    events = []
    for _ in range(count):
        provider, model = rng.choice(MODELS)
        inp = rng.randint(0, 300_000)
        read = rng.randint(0, inp // 3)
        write = rng.randint(0, (inp - read) // 4)
        event = {"event_id": f"e{rng.randrange(id_space)}", "provider": provider, "model": model,
                 "input_tokens": inp, "cache_read_tokens": read, "cache_write_tokens": write,
                 "output_tokens": rng.randint(0, 20_000),
                 "occurred_at": (start - timedelta(minutes=rng.randint(0, 60 * 24 * 40))).isoformat() + "Z",
                 "user": rng.choice(["", "ann@acme.com", "cust-1", "cust-2"])}
        if rng.random() < 0.3:
            event["department"] = rng.choice(["Research", "Platform"])
        if rng.random() < 0.4:
            event["tags"] = rng.sample(["env:prod", "env:dev", "feature:search", "feature:chat"], rng.randint(1, 2))
        events.append(event)
    return events


def _local_hour(moment: datetime, zone: str) -> datetime:
    """The UTC start of the local hour holding `moment` (naive UTC): a rollup bucket."""
    local = moment.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(zone))
    return local.replace(minute=0, second=0, microsecond=0).astimezone(timezone.utc).replace(tzinfo=None)


def _brute_force(model_class):
    """The rollups recomputed from the raw events: one bucket per local hour
    of the event's organization (30 minutes past the UTC hour in Kolkata)."""
    expected = defaultdict(lambda: [0] * 7)
    zones = dict(Organization.select(Organization.id, Organization.time_zone).tuples())
    for e in UsageEvent.select():
        key = (_local_hour(e.occurred_at, zones[e.organization_id]), e.provider, e.model,
               e.api_key_id or 0, e.user_ref, e.department_id or 0)
        measures = (1, e.input_tokens, e.cache_read_tokens, e.cache_write_tokens, e.output_tokens,
                    e.cost_nanos or 0, int(e.cost_nanos is None))
        keys_ = [(tag,) + key for tag in e.tags] if model_class is UsageTagRollup else [key]
        for k in keys_:
            for i, value in enumerate(measures):
                expected[k][i] += value
    return {k: v for k, v in expected.items()}


def _stored(model_class):
    return {tuple(getattr(r, d) for d in model_class.KEY): [getattr(r, m) for m in model_class.MEASURES]
            for r in model_class.select()}


@pytest.mark.parametrize("zone", [None, "Asia/Kolkata", "Asia/Kathmandu"])  # None: the run's zone
def test_rollups_equal_brute_force_sums_after_random_ingest(app_ctx, make_org, zone):
    org = make_org("Acme", time_zone=zone)
    Department.create(organization=org, name="Research")
    Department.create(organization=org, name="Platform")
    key = create_key(org, SYSTEM, "k", ["ingest"]).key
    rng = random.Random(20261126)
    now = datetime(2026, 11, 26, 12, 0)
    for _ in range(12):  # overlapping id space: many duplicates, across and within batches
        batch = _random_events(rng, rng.randint(1, 120), id_space=600, start=now)
        result = ingest.ingest(org, rng.choice([key, None]), batch, now=now)
        assert result.count("rejected") == 0
    assert UsageEvent.select().count() > 300
    assert _stored(UsageRollup) == _brute_force(UsageRollup)
    assert _stored(UsageTagRollup) == _brute_force(UsageTagRollup)


def test_concurrent_batches_with_overlapping_ids_count_once(app, make_org, backend):
    with app.app_context(), db.connection_context():
        org = make_org("Acme")
        Department.create(organization=org, name="Research")
        Department.create(organization=org, name="Platform")
    rng = random.Random(7)
    now = datetime(2026, 11, 26, 12, 0)
    batches = [_random_events(rng, 80, id_space=300, start=now) for _ in range(8)]
    barrier = threading.Barrier(4)
    errors = []

    def worker(my_batches):
        try:
            with app.app_context(), db.connection_context():
                barrier.wait(timeout=10)
                for batch in my_batches:
                    assert ingest.ingest(org, None, batch, now=now).count("rejected") == 0
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(batches[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with app.app_context(), db.connection_context():
        distinct_ids = {e["event_id"] for batch in batches for e in batch}
        assert UsageEvent.select().count() == len(distinct_ids)
        assert _stored(UsageRollup) == _brute_force(UsageRollup)
        assert _stored(UsageTagRollup) == _brute_force(UsageTagRollup)


def test_internal_callers_may_ingest_without_a_key(app_ctx, make_org):
    org = make_org("Acme")
    result = ingest.ingest(org, None, [{"event_id": "a", "provider": "openai", "model": "gpt-4o",
                                        "input_tokens": 10}])
    assert result.count("accepted") == 1
    assert UsageEvent.get().api_key_id is None and UsageRollup.get().api_key_id == 0


@pytest.mark.parametrize("nanos, text", [(None, None), (0, "0"), (3_250_000, "0.00325"), (1, "0.000000001"),
                                         (12_340_000_000, "12.34")])
def test_usd_strings(nanos, text):
    assert ingest.usd_string(nanos) == text


def test_ingest_remembers_each_dimension_value_with_its_latest_hour(app_ctx, make_org):
    from costguardian.models import UsageDimension
    from costguardian.services.usage import queries as usage_queries

    org = make_org("Acme")
    other = make_org("Globex")
    events = [{"event_id": "a", "provider": "openai", "model": "gpt-4o", "input_tokens": 1, "user": "cust-1",
               "occurred_at": "2026-11-01T10:20:00Z", "tags": ["env:prod"]},
              {"event_id": "b", "provider": "openai", "model": "gpt-4o", "input_tokens": 1,
               "occurred_at": "2026-11-03T08:00:00Z"}]
    ingest.ingest(org, None, events, now=datetime(2026, 11, 26))
    ingest.ingest(other, None, [{"event_id": "x", "provider": "mistral", "model": "mistral-large-latest",
                                 "input_tokens": 1}], now=datetime(2026, 11, 26))
    rows = {(d.dimension, d.value): d.last_hour for d in UsageDimension.select().where(
        UsageDimension.organization == org)}
    assert rows == {("provider", "openai"): datetime(2026, 11, 3, 8), ("model", "gpt-4o"): datetime(2026, 11, 3, 8),
                    ("user", "cust-1"): datetime(2026, 11, 1, 10), ("tag", "env:prod"): datetime(2026, 11, 1, 10)}
    # an older event does not move last_hour back
    ingest.ingest(org, None, [{"event_id": "c", "provider": "openai", "model": "gpt-4o", "input_tokens": 1,
                               "occurred_at": "2026-10-01T00:00:00Z"}], now=datetime(2026, 11, 26))
    assert UsageDimension.get(UsageDimension.organization == org, UsageDimension.value == "gpt-4o").last_hour \
        == datetime(2026, 11, 3, 8)
    assert usage_queries.dimension_values(org, "provider", by_name=True) == ["openai"]
    assert usage_queries.dimension_values(other, "model", by_name=True) == ["mistral-large"]


def test_a_batch_with_many_tags_stays_within_database_parameter_limits(app_ctx, make_org):
    org = make_org("Acme")
    events = [{"event_id": f"t{i}", "provider": "openai", "model": "gpt-4o", "input_tokens": 10,
               "occurred_at": f"2026-11-{1 + i % 25:02d}T{i % 24:02d}:00:00Z",
               "tags": [f"t{j}:{i}" for j in range(20)]} for i in range(1000)]
    result = ingest.ingest(org, None, events, now=datetime(2026, 11, 26, 12))
    assert result.count("accepted") == 1000
    assert UsageTagRollup.select().count() == 20_000
    assert _stored(UsageTagRollup) == _brute_force(UsageTagRollup)


# --- the gateway's own tags ---------------------------------------------------------------

_RESERVED_MESSAGE = ("the source:, status:, usage: tags are set by the gateway on the calls it records; "
                     "use another key.")


@pytest.mark.parametrize("tags, named", [
    (["source:gateway"], "source:gateway"),
    (["env:prod", "status:error"], "status:error"),
    ({"usage": "estimated"}, "usage:estimated"),
    ([" Source :gateway"], "Source :gateway"),
])
def test_the_public_api_refuses_the_gateways_tags(app, make_org, tags, named):
    org = make_org("Acme")
    key = create_key(org, SYSTEM, "ingest", ["ingest"]).plaintext
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    single = client.post("/api/v1/usage", headers=headers, json={
        "event_id": "forged", "provider": "openai", "model": "gpt-4o", "input_tokens": 10, "tags": tags})
    assert single.status_code == 422 and single.mimetype == "application/problem+json"
    assert single.json["type"].endswith("/invalid-event")
    assert single.json["errors"] == {"tags": f"'{named}': {_RESERVED_MESSAGE}"}

    batch = client.post("/api/v1/usage", headers=headers, json={"events": [
        {"event_id": "fine", "provider": "openai", "model": "gpt-4o", "input_tokens": 10,
         "tags": ["sourcing:x", "resource:y", "source", "env:source:gateway"]},
        {"event_id": "forged", "provider": "openai", "model": "gpt-4o", "input_tokens": 10, "tags": tags}]})
    assert batch.status_code == 200
    assert [(r["index"], r["status"]) for r in batch.json["results"]] == [(0, "accepted"), (1, "rejected")]
    assert batch.json["results"][1]["errors"] == {"tags": f"'{named}': {_RESERVED_MESSAGE}"}
    with app.app_context():
        assert [e.event_id for e in UsageEvent.select()] == ["fine"]
        assert not UsageTagRollup.select().where(UsageTagRollup.tag == named.strip()).exists()


def test_the_gateways_recording_still_sets_its_tags(app_ctx, make_org):
    from costguardian.services.gateway import recording
    from costguardian.services.gateway.recording import CallRecord

    org = make_org("Acme")
    key = create_key(org, SYSTEM, "gateway", ["gateway"]).key
    recording.record(CallRecord("gw_1", org, key, "chat.completions", datetime(2026, 11, 2, 9),
                                requested_model="gpt-4o", provider="openai", model="gpt-4o", status_code=500,
                                outcome=recording.UPSTREAM_ERROR, forwarded=True,
                                usage={"prompt_tokens": 10, "completion_tokens": 1}))
    assert UsageEvent.get(UsageEvent.event_id == "gw_1").tags == ["source:gateway", "status:error"]
    seed = {"event_id": "seed", "provider": "openai", "model": "gpt-4o", "input_tokens": 10,
            "tags": ["source:gateway"]}
    assert ingest.ingest(org, None, [seed]).count("rejected") == 1  # refused unless the caller says it records calls
    assert ingest.ingest(org, None, [seed], gateway_tags=True).count("accepted") == 1

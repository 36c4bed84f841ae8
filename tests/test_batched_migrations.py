"""Batched, resumable backfills (costguardian/migrations_batched.py), on the
real one: 0023 fills usage_event.credential_id from gateway_request; and the
gateway writing the credential for new calls itself."""
from __future__ import annotations

from datetime import datetime

import pytest

from costguardian import migrations_batched as batched
from costguardian.extensions import db
from costguardian.models import GatewayRequest, ProviderCredential, UsageEvent
from tests.gateway_support import gateway, gateway_server  # noqa: F401  (fixtures)

NAME = "0023_usage_event_credential"
EVENTS = 3000
WHEN = datetime(2026, 11, 2, 9, 30)


class Stop(Exception):
    pass


@pytest.fixture
def gateway_history(app_ctx, make_org):
    """3,000 events of two organizations as an older release stored them
    (credential_id NULL): ingest events, gateway events whose request names a
    credential, gateway requests that name none, an id gap, and another
    organization's ingest event whose id is one of Acme's request ids.
    Returns {event row id: the credential it must get}."""
    acme, other = make_org("Acme"), make_org("Globex")
    events, requests, expected = [], [], {}
    for i in range(EVENTS):
        kind, event_id = i % 3, f"gw_{i:06d}" if i % 3 else f"ingest-{i}"
        events.append(dict(organization=acme.id, event_id=event_id, occurred_at=WHEN, provider="openai",
                           model="gpt-4o", model_raw="gpt-4o", input_tokens=10, output_tokens=5, cost_nanos=1000))
        if kind:
            requests.append(dict(organization=acme.id, request_id=event_id, endpoint="chat.completions",
                                 provider="openai", model="gpt-4o", started_at=WHEN, status_code=200, outcome="ok",
                                 forwarded=True, credential_id=(7 + i % 2) if kind == 1 else None))
    events.append(dict(organization=other.id, event_id="gw_000001", occurred_at=WHEN, provider="openai",
                       model="gpt-4o", model_raw="gpt-4o"))
    for start in range(0, len(events), 500):
        UsageEvent.insert_many(events[start:start + 500]).execute()
        GatewayRequest.insert_many(requests[start:start + 500]).execute()
    ids = [row.id for row in UsageEvent.select(UsageEvent.id).order_by(UsageEvent.id)]
    UsageEvent.delete().where(UsageEvent.id.between(ids[100], ids[399])).execute()  # a gap of 300 keys
    credential = dict(GatewayRequest.select(GatewayRequest.request_id, GatewayRequest.credential_id).tuples())
    for row_id, org_id, event_id in UsageEvent.select(UsageEvent.id, UsageEvent.organization,
                                                      UsageEvent.event_id).tuples():
        expected[row_id] = credential.get(event_id) if org_id == acme.id else None
    yield expected
    batched.run(db.obj, NAME)  # leave the session's database with nothing pending


def _stored() -> dict:
    return dict(UsageEvent.select(UsageEvent.id, UsageEvent.credential_id).tuples())


def _restart() -> None:
    UsageEvent.update(credential_id=None).execute()
    batched.register(db.obj, NAME)


def test_a_backfill_stopped_midway_resumes_to_what_one_run_gives(gateway_history):
    _restart()
    whole = batched.run(db.obj, NAME, 1000)
    assert _stored() == gateway_history and whole.finished
    assert whole.rows_done == sum(1 for c in gateway_history.values() if c is not None) == 900  # 100 in the gap
    assert whole.batches == 3  # 2,701 rows: two full batches and a short one

    _restart()

    def stop_after_four(progress):
        if progress.batches == 4:
            raise Stop

    with pytest.raises(Stop):
        batched.run(db.obj, NAME, 250, after_batch=stop_after_four)
    [stopped] = batched.pending(db.obj)
    assert (stopped.batches, stopped.finished) == (4, False)
    stored = _stored()
    assert all(stored[i] == gateway_history[i] for i in stored if i <= stopped.last_id)
    assert all(stored[i] is None for i in stored if i > stopped.last_id)
    assert sorted(stored).index(stopped.last_id) == 4 * 250 - 1  # four batches of 250 rows, over the gap

    resumed = batched.run(db.obj, NAME, 250)
    assert _stored() == gateway_history
    assert resumed.finished and resumed.rows_done == whole.rows_done and resumed.batches == 11
    assert batched.pending(db.obj) == []
    assert batched.run(db.obj, NAME).batches == 11  # a finished backfill does nothing more


def test_flask_migrate_runs_small_backfills_and_leaves_big_ones_to_the_flag(app, gateway_history, monkeypatch):
    runner = app.test_cli_runner()
    _restart()
    monkeypatch.setattr(batched, "INLINE_ROWS", 100)  # this table counts as big
    answer = runner.invoke(args=["migrate"])
    assert answer.exit_code == 0, answer.output
    highest = max(gateway_history)
    assert (f"backfill {NAME} pending: about {highest:,} rows of usage_event left; run `flask migrate --backfills`"
            in answer.output)
    assert all(c is None for c in _stored().values())

    answer = runner.invoke(args=["migrate", "--backfills", "--batch-rows", "400"])
    assert answer.exit_code == 0, answer.output
    assert f"backfill {NAME} finished" in answer.output and "900 rows changed in 7 batches" in answer.output
    assert _stored() == gateway_history

    _restart()
    # Small enough: done by the migrate itself (the bound is the highest id, which keeps counting across tests).
    monkeypatch.setattr(batched, "INLINE_ROWS", max(gateway_history) + 1)
    answer = runner.invoke(args=["migrate"])
    assert answer.exit_code == 0 and "pending" not in answer.output, answer.output
    assert _stored() == gateway_history


def test_new_gateway_calls_record_the_credential_and_ingest_events_none(gateway, client):
    gateway.openai().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    gateway.anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=20,
                                        messages=[{"role": "user", "content": "Hi"}])
    by_provider = {c.provider: c.id for c in ProviderCredential.in_org(gateway.org)}
    events = gateway.events(2)
    assert {e.provider: e.credential_id for e in events} == by_provider
    assert [c.credential_id for c in gateway.calls(2)] == [e.credential_id for e in events]

    ingest_key = gateway.new_key("ingest", scopes=("ingest",))
    answer = client.http.post("/api/v1/usage", headers={"Authorization": f"Bearer {ingest_key}"}, json={
        "event_id": "sdk-1", "provider": "openai", "model": "gpt-4o", "input_tokens": 3, "output_tokens": 1})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert UsageEvent.get(UsageEvent.event_id == "sdk-1").credential_id is None

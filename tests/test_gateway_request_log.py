"""Request logging through the gateway, with the official SDKs against the
fake upstream: nothing of a call's bodies is kept while the organization's
logging is off; when on, the request as sent and the answer as received
(whole JSON, or the SSE events relayed) are kept after the answer was sent,
capped and marked truncated, never with a key; turning it off stops at once;
retention deletes old bodies only, in batches, idempotently."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import openai
import pytest
import time_machine

from costguardian import clock
from costguardian.models import AuditLog, GatewayRequest, GatewayRequestBody
from costguardian.services.actor import Actor
from costguardian.services.errors import ValidationError
from costguardian.services.gateway import request_log
from costguardian.services.gateway.request_log import BODY_LIMIT, Capture
from tests.fakes.llm_upstream import ANTHROPIC_KEY, OPENAI_KEY
from tests.gateway_support import gateway, gateway_server  # noqa: F401  (fixtures)
from tests.support import SYSTEM

HELLO = [{"role": "user", "content": "Say hello."}]


def _logging_on(gateway, days: int = 7) -> None:
    request_log.update_settings(gateway.org, Actor(user=gateway.owner), True, days)


def _bodies(gateway, count: int) -> dict[str, GatewayRequestBody]:
    """The kept bodies by request id, once `count` calls were recorded."""
    gateway.calls(count)
    return {b.request_id: b for b in GatewayRequestBody.select()}


def _everything_stored() -> str:
    """Every text column of the request log and its bodies, for leak checks."""
    rows = [b.request_body + "\n" + b.answer_body for b in GatewayRequestBody.select()]
    rows += [r.error for r in GatewayRequest.select()]
    return "\n".join(rows)


# --- off: nothing kept ---------------------------------------------------------------------

def test_nothing_is_kept_while_logging_is_off(gateway):
    client = gateway.openai()
    client.chat.completions.create(model="gpt-4o", messages=HELLO)
    list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    gateway.anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=HELLO)
    assert len(gateway.calls(3)) == 3
    assert GatewayRequestBody.select().count() == 0
    assert not gateway.org.request_logging and gateway.org.request_log_days == 7  # the defaults


# --- on: kept as sent and as answered ------------------------------------------------------

def test_a_whole_answer_is_kept_with_its_request(gateway):
    _logging_on(gateway)
    raw = gateway.openai().chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO,
                                                                     user="ann@acme.com")
    completion = raw.parse()
    request_id = raw.headers["x-cg-request-id"]

    body = _bodies(gateway, 1)[request_id]
    sent = json.loads(body.request_body)
    assert sent == {"model": "gpt-4o", "messages": HELLO, "user": "ann@acme.com"}
    assert json.loads(body.answer_body)["choices"][0]["message"]["content"] == completion.choices[0].message.content
    assert not body.request_truncated and not body.answer_truncated
    assert body.request_bytes == len(body.request_body.encode()) and body.answer_bytes == len(body.answer_body.encode())
    assert body.organization_id == gateway.org.id


def test_a_stream_is_kept_as_the_events_relayed(gateway):
    _logging_on(gateway)
    chunks = list(gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    [body] = _bodies(gateway, 1).values()
    assert json.loads(body.request_body)["stream"] is True
    assert "stream_options" not in json.loads(body.request_body)  # as the caller sent it, not as forwarded
    events = [line[len("data: "):] for line in body.answer_body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    relayed = [json.loads(e) for e in events[:-1]]
    assert len(relayed) == len(chunks)  # the usage-only chunk the caller did not ask for was not relayed, nor kept
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in relayed) == gateway.upstream.reply
    assert not body.answer_truncated


def test_an_anthropic_stream_and_message_are_kept(gateway):
    _logging_on(gateway)
    client = gateway.anthropic()
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=HELLO)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=HELLO) as stream:
        text = stream.get_final_text()
    bodies = sorted(_bodies(gateway, 2).values(), key=lambda b: b.id)
    assert json.loads(bodies[0].answer_body)["content"][0]["text"] == message.content[0].text
    assert "event: message_start" in bodies[1].answer_body and "event: message_stop" in bodies[1].answer_body
    assert json.loads(bodies[1].request_body)["max_tokens"] == 50 and text == gateway.upstream.reply


def test_bodies_beyond_the_cap_are_cut_and_marked(gateway):
    _logging_on(gateway)
    gateway.upstream.reply = "lorem " * 50_000  # a 300 KB answer
    prompt = "x" * (BODY_LIMIT + 10_000)
    gateway.openai().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
    [body] = _bodies(gateway, 1).values()
    assert body.request_truncated and body.request_bytes > BODY_LIMIT
    assert body.answer_truncated and body.answer_bytes > BODY_LIMIT
    assert len(body.request_body.encode()) <= BODY_LIMIT and len(body.answer_body.encode()) <= BODY_LIMIT
    assert body.request_body.startswith('{"model"')


def test_neither_key_is_ever_kept(gateway):
    """The provider's key echoed in an answer (whole or streamed) or an
    error is redacted; the caller's key travels in a header, never kept."""
    _logging_on(gateway)
    gateway.upstream.reply = f"Your key is {OPENAI_KEY} ."  # each call's own provider key, echoed
    client = gateway.openai()
    client.chat.completions.create(model="gpt-4o", messages=HELLO)
    list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    gateway.upstream.reply = f"Your key is {ANTHROPIC_KEY} ."
    gateway.anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=HELLO)
    gateway.upstream.openai_key = "sk-another-key-0000000000"  # the stored key is refused: 401 naming it
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    bodies = _bodies(gateway, 4)
    assert len(bodies) == 4
    stored = _everything_stored()
    assert OPENAI_KEY not in stored and ANTHROPIC_KEY not in stored and gateway.key not in stored
    assert "…" + OPENAI_KEY[-4:] in stored and "…" + ANTHROPIC_KEY[-4:] in stored


def test_a_key_cut_by_the_cap_leaves_no_start_of_it():
    kept = Capture(limit=40)
    kept.secret = OPENAI_KEY
    kept.append(b'data: {"text": "' + OPENAI_KEY.encode() + b'"}\n\n')
    assert len(kept.answer) == 40 and OPENAI_KEY[:20].encode() in bytes(kept.answer)
    answer = request_log._redacted(kept.answer, kept.secret, truncated=True)
    assert OPENAI_KEY[:5].encode() not in answer and answer.endswith("…".encode())


def test_turning_logging_off_stops_capture_at_once(gateway):
    _logging_on(gateway)
    client = gateway.openai()
    first = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
    gateway.calls(1)
    request_log.update_settings(gateway.org, Actor(user=gateway.owner), False, 7)
    second = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
    bodies = _bodies(gateway, 2)
    assert set(bodies) == {first.headers["x-cg-request-id"]}
    assert second.headers["x-cg-request-id"] not in bodies


# --- the setting, deleting, retention ------------------------------------------------------

def test_settings_are_checked_and_audited(make_org):
    org = make_org("Acme")
    for bad in (0, 91, "seven", "", None, -3):
        with pytest.raises(ValidationError) as caught:
            request_log.update_settings(org, SYSTEM, True, bad)
        assert "from 1 to 90" in caught.value.errors["retention_days"]
    assert not org.request_logging
    request_log.update_settings(org, SYSTEM, True, 30)
    request_log.update_settings(org, SYSTEM, True, 30)  # no change: no audit row
    rows = list(AuditLog.select().where(AuditLog.organization == org, AuditLog.action == "org.updated"))
    assert [r.detail["changes"] for r in rows] == [{"request_logging": ["off", "on"],
                                                    "request_log_retention": ["7 days", "30 days"]}]


def _keep(org, request_id: str, when: datetime) -> None:
    with time_machine.travel(when.replace(tzinfo=timezone.utc), tick=False):
        kept = Capture()
        kept.take_request(b'{"model": "gpt-4o"}')
        request_log.store(org, request_id, kept)


def test_retention_deletes_only_bodies_older_than_each_organizations_days(make_org):
    week, month = make_org("Week"), make_org("Month")
    request_log.update_settings(week, SYSTEM, True, 7)
    request_log.update_settings(month, SYSTEM, True, 30)
    start = datetime(2026, 3, 1, 12, 0)
    for n in range(5):
        _keep(week, f"gw_week_old_{n}", start)
    _keep(week, "gw_week_new", start + timedelta(days=6))
    _keep(month, "gw_month_old", start)
    with time_machine.travel((start + timedelta(days=7, minutes=1)).replace(tzinfo=timezone.utc), tick=False):
        assert request_log.sweep_expired(batch=2) == 5  # in batches of 2
        assert request_log.sweep_expired() == 0  # idempotent
    assert sorted(b.request_id for b in GatewayRequestBody.select()) == ["gw_month_old", "gw_week_new"]
    with time_machine.travel((start + timedelta(days=31)).replace(tzinfo=timezone.utc), tick=False):
        from tasks import huey, purge_request_bodies

        task = purge_request_bodies.task_class
        assert task in huey._registry._periodic_tasks  # hourly
        assert task().validate_datetime(datetime(2026, 3, 1, 14, 25))
        assert not task().validate_datetime(datetime(2026, 3, 1, 14, 26))
        purge_request_bodies.call_local()
    assert GatewayRequestBody.select().count() == 0  # the month's body too, after 30 days


def test_retention_applies_after_logging_was_turned_off(make_org):
    org = make_org("Acme")
    request_log.update_settings(org, SYSTEM, True, 3)
    _keep(org, "gw_kept", clock.now() - timedelta(days=4))
    request_log.update_settings(org, SYSTEM, False, 3)
    assert request_log.sweep_expired() == 1


def test_deleting_every_body_now_is_audited(make_org):
    org, other = make_org("Acme"), make_org("Other")
    for n in range(3):
        _keep(org, f"gw_{n}", clock.now())
    _keep(other, "gw_other", clock.now())
    assert request_log.delete_bodies(org, SYSTEM) == 3
    assert [b.request_id for b in GatewayRequestBody.select()] == ["gw_other"]
    row = AuditLog.get(AuditLog.organization == org, AuditLog.action == "org.request_bodies_deleted")
    assert row.detail["count"] == 3


def test_a_kept_stream_still_arrives_event_by_event(gateway):
    """Keeping the stream appends each event as it passes: nothing waits for the end."""
    _logging_on(gateway)
    gateway.upstream.reply, gateway.upstream.chunk_delay = "one two three", 0.25
    arrivals = [time.monotonic() for chunk in gateway.openai().chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True) if chunk.choices and chunk.choices[0].delta.content]
    assert len(arrivals) == 3 and arrivals[-1] - arrivals[0] >= 0.4
    [body] = _bodies(gateway, 1).values()
    assert body.answer_body.count('"content"') >= 3 and body.answer_body.rstrip().endswith("data: [DONE]")


def test_a_broken_stream_keeps_what_was_relayed_and_the_error_event(gateway, app, monkeypatch):
    _logging_on(gateway)
    monkeypatch.setitem(app.config, "CG_GATEWAY_READ_TIMEOUT", 0.4)
    gateway.upstream.reply, gateway.upstream.chunk_delay = "one two three four", 1.0
    with pytest.raises(openai.APIError):
        list(gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    [body] = _bodies(gateway, 1).values()
    assert "read timed out" in body.answer_body and not body.answer_truncated

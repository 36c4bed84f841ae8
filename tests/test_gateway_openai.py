"""The OpenAI-compatible gateway through the official `openai` SDK, changed
only in base_url and api_key, against the fake upstream: every call is one
priced usage event with the provider's own tokens, streams pass through
event by event, errors keep OpenAI's shape."""
from __future__ import annotations


import openai
import pytest
import requests

from costguardian.models import Department, GatewayRequest, UsageEvent
from costguardian.services.gateway import vault
from costguardian.services.actor import Actor
from costguardian.services.usage.pricing import OrgPrices, Tokens
from tests.fakes.llm_upstream import AZURE_KEY, OPENAI_KEY
from tests.gateway_support import gateway, gateway_server, run_async  # noqa: F401  (fixtures)

HELLO = [{"role": "user", "content": "Say hello."}]


def _tokens(event) -> tuple[int, int, int, int]:
    return event.input_tokens, event.cache_read_tokens, event.cache_write_tokens, event.output_tokens


def _logged(usage: dict) -> tuple[int, int, int, int]:
    return usage["input"], usage["cache_read"], usage["cache_write"], usage["output"]


def _expected_cost(org, event) -> int:
    cost, _ = OrgPrices.for_org(org).price(event.provider, event.model, event.occurred_at, Tokens(*_tokens(event)[:3],
                                                                                               event.output_tokens))
    return cost


# --- calls and their events ------------------------------------------------------------

def test_a_chat_completion_is_one_priced_event_with_the_providers_tokens(gateway):
    raw = gateway.openai().chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
    completion = raw.parse()
    assert completion.choices[0].message.content == gateway.upstream.reply
    request_id = raw.headers["x-cg-request-id"]

    [event] = gateway.events(1)
    [usage] = gateway.upstream.usage_log
    assert event.event_id == request_id and request_id.startswith("gw_")
    assert (event.provider, event.model, event.api_key_id) == ("openai", "gpt-4o", gateway.api_key.id)
    assert _tokens(event) == _logged(usage) and event.output_tokens == completion.usage.completion_tokens
    assert event.cost_nanos == _expected_cost(gateway.org, event) > 0
    assert event.tags == ["source:gateway"]
    [call] = gateway.calls(1)
    assert (call.request_id, call.endpoint, call.status_code, call.outcome, call.streamed) == (
        request_id, "chat.completions", 200, "ok", False)
    assert call.latency_ms >= 0 and call.ttft_ms is None and call.forwarded

    [sent] = gateway.upstream.requests
    assert sent.path == "/v1/chat/completions" and sent.header("Authorization") == f"Bearer {OPENAI_KEY}"
    assert sent.body["model"] == "gpt-4o" and sent.body["messages"] == HELLO and "stream_options" not in sent.body


def test_a_stream_passes_through_and_the_usage_chunk_the_gateway_asked_for_stays_hidden(gateway):
    chunks = list(gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == gateway.upstream.reply
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)  # no usage-only chunk
    [sent] = gateway.upstream.requests
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}

    [event] = gateway.events(1)
    assert _tokens(event) == _logged(gateway.upstream.usage_log[0]) and event.cost_nanos > 0
    [call] = gateway.calls(1)
    assert call.streamed and call.outcome == "ok" and call.ttft_ms is not None and not call.usage_estimated


def test_a_caller_who_asks_for_usage_gets_the_usage_chunk(gateway):
    chunks = list(gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True,
                                                           stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == gateway.upstream.usage_log[0]["output"]
    [event] = gateway.events(1)
    assert event.output_tokens == chunks[-1].usage.completion_tokens


def test_usage_on_a_final_chunk_that_still_carries_choices_is_counted_once(gateway):
    """LiteLLM #36168 billed such calls about four times over."""
    gateway.upstream.usage_on_last_choice = True
    chunks = list(gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"  # the caller still gets the last chunk
    [event] = gateway.events(1)
    assert _tokens(event) == _logged(gateway.upstream.usage_log[0])
    assert "usage:estimated" not in event.tags


def test_cached_prompt_tokens_are_counted_once(gateway):
    gateway.upstream.cache_read_tokens = 1000
    gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO)
    [event] = gateway.events(1)
    usage = gateway.upstream.usage_log[0]
    assert event.input_tokens == usage["input"] and event.cache_read_tokens == 1000  # inside prompt_tokens
    assert event.cost_nanos == _expected_cost(gateway.org, event)


def test_streaming_is_not_buffered(gateway):
    """The first tokens reach the client while the provider still holds back
    the rest: nothing waits for the whole answer (no timing involved)."""
    gateway.upstream.reply = "one two three four five"
    gateway.upstream.hold_after = 3  # the role chunk and two words, then the provider waits
    stream = gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    words = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            words.append(chunk.choices[0].delta.content)
            if len(words) == 2:
                assert not gateway.upstream.release.is_set()  # delivered before the provider sent the rest
                gateway.upstream.release.set()
    assert "".join(words).split() == ["one", "two", "three", "four", "five"]
    assert not gateway.upstream.hold_expired  # the client had the first words while the provider waited
    gateway.events(1)


def test_legacy_completions_embeddings_and_responses(gateway):
    client = gateway.openai()
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello.", max_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    streamed = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi", stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == gateway.upstream.reply
    embedding = client.embeddings.create(model="text-embedding-3-small", input=["a", "bb"])  # base64 by default
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 8
    response = client.responses.create(model="gpt-4o", input="Say hello.")
    assert response.output_text == gateway.upstream.reply
    events = list(client.responses.create(model="gpt-4o", input="Say hello.", stream=True))
    assert events[-1].type == "response.completed"

    recorded = gateway.events(5)
    assert [_tokens(e) for e in recorded] == [_logged(u) for u in gateway.upstream.usage_log]
    assert recorded[0].output_tokens == 3
    assert [e.model for e in recorded] == ["gpt-3.5-turbo-instruct", "gpt-3.5-turbo-instruct",
                                           "text-embedding-3-small", "gpt-4o", "gpt-4o"]
    assert all(e.cost_nanos and e.cost_nanos > 0 for e in recorded)
    assert [c.endpoint for c in gateway.calls(5)] == ["completions", "completions", "embeddings", "responses",
                                                      "responses"]


def test_the_async_sdk_streams_too(gateway):
    async def call():
        client = gateway.async_openai()
        stream = await client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        plain = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        return text, plain.usage.completion_tokens

    text, output_tokens = run_async(call())
    assert text == gateway.upstream.reply
    events = gateway.events(2)
    assert [e.model for e in events] == ["gpt-4o", "gpt-4o-mini"] and events[1].output_tokens == output_tokens


def test_a_streamed_call_without_usage_from_the_provider_is_estimated_and_marked(gateway):
    gateway.upstream.stream_usage = False  # an OpenAI-compatible server that ignores include_usage
    list(gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    [event] = gateway.events(1)
    assert "usage:estimated" in event.tags and event.output_tokens >= len(gateway.upstream.reply.split())
    assert event.input_tokens > 0 and gateway.calls(1)[0].usage_estimated


# --- routing ---------------------------------------------------------------------------

def test_models_lists_what_the_organizations_credentials_allow(gateway):
    ids = [m.id for m in gateway.openai().models.list()]
    assert "openai/gpt-4o" in ids and "anthropic/claude-sonnet-4-5-20250929" in ids
    credential = vault.credentials_of(gateway.org)[1]
    assert credential.provider == "anthropic"
    vault.set_enabled(credential, Actor(user=gateway.owner), False)
    assert not any(m.id.startswith("anthropic/") for m in gateway.openai().models.list())


def test_provider_slash_model_picks_the_provider_and_the_upstream_gets_the_bare_model(gateway):
    gateway.openai().chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    assert gateway.upstream.requests[-1].body["model"] == "gpt-4o-mini"
    [event] = gateway.events(1)
    assert (event.provider, event.model) == ("openai", "gpt-4o-mini")


def test_an_anthropic_model_where_anthropic_has_no_equivalent_is_a_clear_400(gateway):
    """Chat completions to Claude are translated (tests/test_gateway_translation.py); embeddings cannot be."""
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai().embeddings.create(model="claude-sonnet-4-5", input="hello")
    assert caught.value.code == "unsupported_model"
    assert "Anthropic" in caught.value.message and "/v1/chat/completions" in caught.value.message
    assert gateway.upstream.requests == []
    [call] = gateway.calls(1)
    assert (call.outcome, call.status_code, call.forwarded) == ("refused", 400, False)
    assert UsageEvent.select().count() == 0


def test_a_model_no_credential_serves_is_model_not_found(gateway):
    client = gateway.openai()
    for model in ("mistral-large-latest", "mistral/mistral-large-latest"):
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model=model, messages=HELLO)
        assert caught.value.code == "model_not_found" and model in caught.value.message
    assert "Mistral" in caught.value.message
    assert gateway.upstream.requests == []


def test_azure_goes_to_the_deployment_with_its_api_version_and_key(gateway):
    upstream = gateway.upstream
    upstream.azure_deployments = {"prod-4o": "gpt-4o-2024-08-06"}
    vault.add(gateway.org, Actor(user=gateway.owner), "azure", "EU", AZURE_KEY, base_url=upstream.url,
              deployments="prod-4o = gpt-4o-2024-08-06")
    upstream.requests.clear()
    completion = gateway.openai().chat.completions.create(model="azure/prod-4o", messages=HELLO)
    assert completion.model == "gpt-4o-2024-08-06"
    [sent] = upstream.requests
    assert sent.path == "/openai/deployments/prod-4o/chat/completions"
    assert sent.query["api-version"] == "2024-10-21" and sent.header("api-key") == AZURE_KEY
    [event] = gateway.events(1)
    assert event.provider == "azure" and event.model_raw == "gpt-4o-2024-08-06" and event.cost_nanos > 0



def test_an_admin_typed_url_on_a_private_address_is_not_called_when_private_addresses_are_off(gateway, app,
                                                                                                  monkeypatch):
    """An Azure endpoint is typed by an admin, so its call goes through the
    SSRF-guarded session (requests with the webhooks' checking adapter), not
    the plain pool: with private addresses off, the fake's 127.0.0.1 is
    refused at connect time, nothing reaches it, and the call is recorded as
    unreachable."""
    upstream = gateway.upstream
    upstream.azure_deployments = {"prod-4o": "gpt-4o-2024-08-06"}
    vault.add(gateway.org, Actor(user=gateway.owner), "azure", "EU", AZURE_KEY, base_url=upstream.url,
              deployments="prod-4o = gpt-4o-2024-08-06")  # saved while private addresses were allowed
    monkeypatch.setitem(app.config, "CG_ALLOW_PRIVATE_WEBHOOKS", False)
    upstream.requests.clear()
    with pytest.raises(openai.APIStatusError) as caught:
        gateway.openai().chat.completions.create(model="azure/prod-4o", messages=HELLO)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_unreachable"
    assert "Only public addresses are called" in caught.value.message
    assert upstream.requests == []
    [call] = gateway.calls(1)
    assert (call.status_code, call.outcome, call.forwarded) == (502, "unreachable", True)


# --- attribution -----------------------------------------------------------------------

def test_attribution_headers_and_the_user_field(gateway):
    Department.create(organization=gateway.org, name="Search", code="CC-42")
    client = gateway.openai(default_headers={"X-CG-User": "Dana@Acme.com", "X-CG-Department": "search",
                                             "X-CG-Tags": "feature:autocomplete, env:prod"})
    client.chat.completions.create(model="gpt-4o", messages=HELLO)
    gateway.openai(default_headers={"X-CG-Department": "cc-42"}).chat.completions.create(
        model="gpt-4o", messages=HELLO, user="end-user-17")
    gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO)
    first, second, third = gateway.events(3)
    search = Department.get(Department.name == "Search")
    assert (first.user_ref, first.department_id) == ("dana@acme.com", search.id)
    assert first.tags == ["source:gateway", "feature:autocomplete", "env:prod"]
    assert (second.user_ref, second.department_id) == ("end-user-17", search.id)
    assert (third.user_ref, third.department_id) == ("", None)
    assert gateway.upstream.requests[1].body["user"] == "end-user-17"  # the provider still gets its field


def test_the_keys_default_user_and_department_apply(gateway):
    finance = Department.create(organization=gateway.org, name="Finance")
    key = gateway.new_key("finance bot", user=gateway.owner, department=finance)
    gateway.openai(key=key).chat.completions.create(model="gpt-4o", messages=HELLO)
    [event] = gateway.events(1)
    assert (event.user_ref, event.department_id) == ("olga@acme.com", finance.id)


@pytest.mark.parametrize("headers, message", [
    ({"X-CG-Department": "Nowhere"}, "no department named"),
    ({"X-CG-Tags": "source:spoofed"}, "gateway's own"),
    ({"X-CG-Tags": ",".join(f"t{i}" for i in range(18))}, "at most 17 tags"),
    ({"X-CG-User": "x" * 201}, "at most 200 characters"),
])
def test_bad_attribution_is_refused_before_anything_is_forwarded(gateway, headers, message):
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai(default_headers=headers).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert message in caught.value.message and caught.value.code == "invalid_attribution"
    assert gateway.upstream.requests == []


# --- keys and tenants ------------------------------------------------------------------

def test_a_wrong_missing_or_unscoped_key_is_refused_in_openais_shape(gateway):
    with pytest.raises(openai.AuthenticationError) as caught:
        gateway.openai(key="cg_live_aaaaaaaaaaaa_" + "x" * 40).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.code == "invalid_api_key" and caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError):
        gateway.openai(key="sk-not-ours").models.list()
    missing = requests.post(gateway.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": HELLO},
                            timeout=5)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    assert "Authorization: Bearer cg_" in missing.json()["error"]["message"] and missing.headers["X-CG-Request-Id"]
    ingest_only = gateway.new_key("ingest", scopes=("ingest",))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        gateway.openai(key=ingest_only).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert "'gateway' scope" in caught.value.message
    assert gateway.upstream.requests == [] and GatewayRequest.select().count() == 0


def test_a_key_reaches_only_its_own_organizations_credentials(gateway, make_user, make_org):
    from costguardian.services import keys
    from tests.fakes.llm_upstream import ANTHROPIC_KEY

    other_owner = make_user("bob@globex.com")
    globex = make_org("Globex", owner=other_owner)
    vault.add(globex, Actor(user=other_owner), "anthropic", "Theirs", ANTHROPIC_KEY)
    theirs = keys.create_key(globex, Actor(user=other_owner), "gw", ["gateway"]).plaintext
    client = gateway.openai(key=theirs)
    with pytest.raises(openai.NotFoundError):  # Acme's OpenAI key is not Globex's
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert [m.id for m in client.models.list()] == [f"anthropic/{m}" for m in
                                                    sorted(gateway.upstream.models["anthropic"])]
    gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO)
    gateway.calls(2)
    assert [e.organization_id for e in UsageEvent.select()] == [gateway.org.id]
    assert GatewayRequest.select().where(GatewayRequest.organization == globex.id).count() == 1


# --- errors ----------------------------------------------------------------------------

def test_the_providers_error_status_body_and_retry_after_pass_through(gateway):
    gateway.upstream.fail_next = [429]
    gateway.upstream.retry_after = "7"
    with pytest.raises(openai.RateLimitError) as caught:
        gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body["message"] == "Failing as told (HTTP 429)."  # the provider's own body
    assert caught.value.response.headers["x-cg-request-id"]
    [event] = gateway.events(1)
    assert _tokens(event) == (0, 0, 0, 0) and event.cost_nanos == 0 and "status:error" in event.tags
    [call] = gateway.calls(1)
    assert (call.status_code, call.outcome) == (429, "upstream_error") and "Failing as told" in call.error


def test_the_sdks_retries_never_double_the_cost(gateway):
    gateway.upstream.fail_next = [429, 503]
    gateway.upstream.retry_after = "0.01"
    completion = gateway.openai(max_retries=2).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert completion.choices[0].message.content
    failed_429, failed_503, served = gateway.events(3)  # one event per attempt: the failed ones at zero cost
    assert [e.cost_nanos for e in (failed_429, failed_503)] == [0, 0]
    assert _tokens(served) == _logged(gateway.upstream.usage_log[0]) and len(gateway.upstream.usage_log) == 1
    assert sum(e.cost_nanos for e in UsageEvent.select()) == served.cost_nanos > 0
    assert [c.status_code for c in gateway.calls(3)] == [429, 503, 200]


def test_a_provider_that_does_not_answer_in_time_is_a_504(gateway, app, monkeypatch):
    monkeypatch.setitem(app.config, "CG_GATEWAY_READ_TIMEOUT", 0.3)
    gateway.upstream.delay = 1.0
    with pytest.raises(openai.InternalServerError) as caught:
        gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.status_code == 504 and caught.value.code == "upstream_timeout"
    [event] = gateway.events(1)
    assert event.cost_nanos == 0 and "status:error" in event.tags
    assert gateway.calls(1)[0].outcome == "timeout"


def test_a_provider_that_cannot_be_reached_is_a_502(gateway, app, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", {"openai": f"http://127.0.0.1:{closed}/v1"})
    with pytest.raises(openai.InternalServerError) as caught:
        gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_unreachable"
    assert "connection refused" in caught.value.message
    assert gateway.calls(1)[0].outcome == "unreachable"


def test_a_cancelled_stream_is_billed_for_the_tokens_seen(gateway):
    """Bifrost #3357 billed nothing for a stream the caller cancelled."""
    gateway.upstream.reply = " ".join(f"w{i}" for i in range(400))
    gateway.upstream.chunk_delay = 0.01
    stream = gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received == 20:
            break
    stream.close()
    [event] = gateway.events(1)
    assert 20 <= event.output_tokens < 400 and event.input_tokens > 0 and event.cost_nanos > 0
    assert {"status:cancelled", "usage:estimated"} <= set(event.tags)
    [call] = gateway.calls(1)
    assert call.outcome == "cancelled" and call.usage_estimated and call.streamed


def test_a_provider_dropping_the_stream_ends_it_with_an_error_and_records_what_was_seen(gateway):
    gateway.upstream.disconnect_after = 6  # the role chunk and five words
    with pytest.raises(openai.APIError) as caught:
        for _ in gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True):
            pass
    assert "closed the connection" in caught.value.message
    [event] = gateway.events(1)
    assert event.output_tokens >= 5 and {"status:error", "usage:estimated"} <= set(event.tags)
    assert gateway.calls(1)[0].outcome == "upstream_error"


def test_errors_outside_the_views_are_in_openais_shape(gateway):
    wrong_method = requests.get(gateway.url + "/v1/chat/completions", timeout=5)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["type"] == "invalid_request_error"
    unknown = requests.post(gateway.url + "/v1/nothing-here", timeout=5)
    assert unknown.status_code == 404 and "message" in unknown.json()["error"]
    not_json = requests.post(gateway.url + "/v1/chat/completions", data=b"{", timeout=5,
                             headers={"Authorization": f"Bearer {gateway.key}"})
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"


def test_recording_happens_after_the_answer_was_sent(gateway, backend):
    """While another transaction holds the usage table, no event can be
    written; the callers still get their whole answers, so neither waited for
    its recording, which lands once the table is free. (PostgreSQL: a table
    lock stops writers and lets readers through; SQLite has no such lock.)"""
    if backend != "postgres":
        pytest.skip("needs a lock that blocks only the usage table's writers")
    import os
    import threading

    import psycopg

    locker = psycopg.connect(os.environ["DATABASE_URL"])
    locker.execute("LOCK TABLE usage_event IN SHARE ROW EXCLUSIVE MODE")
    answers = []

    def call():
        answers.append(gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO))
        with gateway.anthropic().messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=HELLO) as stream:
            answers.append(stream.get_final_message())  # read to the end of the stream

    caller = threading.Thread(target=call)
    try:
        caller.start()
        caller.join(60)
        assert not caller.is_alive() and len(answers) == 2  # answered while no event could be written
        assert UsageEvent.select().count() == 0
    finally:
        locker.rollback()
        locker.close()
    assert len(gateway.events(2)) == 2


def test_an_unexpected_failure_inside_the_gateway_is_a_500_in_the_callers_shape(gateway, monkeypatch):
    from costguardian.services.gateway import routing

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(routing, "resolve", broken)
    with pytest.raises(openai.InternalServerError) as caught:
        gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.status_code == 500 and "boom" not in caught.value.message
    assert caught.value.body["type"] == "server_error"


def test_prompt_sized_bodies_are_taken_and_absurd_ones_refused_in_openais_shape(gateway):
    big = "x" * (6 * 1024 * 1024)  # over the JSON API's 4 MB, as a prompt with images would be
    completion = gateway.openai().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": big}])
    assert completion.choices
    too_big = requests.post(gateway.url + "/v1/chat/completions", data=b"x" * (33 * 1024 * 1024), timeout=30,
                            headers={"Authorization": f"Bearer {gateway.key}", "Content-Type": "application/json"})
    assert too_big.status_code == 413 and too_big.json()["error"]["message"]
    gateway.events(1)


def test_a_provider_that_stalls_inside_its_answer_is_a_504(gateway, app, monkeypatch):
    monkeypatch.setitem(app.config, "CG_GATEWAY_READ_TIMEOUT", 0.4)
    gateway.upstream.reply, gateway.upstream.chunk_delay = "one two three four", 1.0
    with pytest.raises(openai.APIError) as caught:  # the headers came in time; a token did not
        list(gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    assert caught.value.body["code"] == "upstream_timeout"
    [event] = gateway.events(1)
    # only the role chunk came: the prompt (estimated) is billed, no output
    assert {"status:error", "usage:estimated"} <= set(event.tags)
    assert event.input_tokens > 0 and event.output_tokens == 0
    assert gateway.calls(1)[0].outcome == "timeout"


def test_a_provider_error_that_echoes_the_organizations_key_does_not_show_it(gateway, monkeypatch):
    def echo(request):
        return gateway.upstream.error("openai", 400, f"Bad request made with {OPENAI_KEY}.")

    monkeypatch.setitem(gateway.upstream._routes, ("POST", "/v1/chat/completions"), ("openai", echo))
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai().chat.completions.create(model="gpt-4o", messages=HELLO)
    assert OPENAI_KEY not in caught.value.response.text and OPENAI_KEY[-4:] in caught.value.body["message"]
    assert OPENAI_KEY not in gateway.calls(1)[0].error


def test_a_success_that_is_not_json_is_a_502_recorded_as_an_upstream_error(gateway, monkeypatch):
    from werkzeug.wrappers import Response

    def html(request):
        return Response("<html><body>Service temporarily moved</body></html>", 200, content_type="text/html")

    monkeypatch.setitem(gateway.upstream._routes, ("POST", "/v1/chat/completions"), ("openai", html))
    with pytest.raises(openai.InternalServerError) as caught:
        gateway.openai(max_retries=0).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_invalid_answer"
    assert "without a JSON object (text/html" in caught.value.body["message"]
    [event] = gateway.events(1)
    assert {"status:error", "usage:estimated"} <= set(event.tags)
    assert event.input_tokens > 0  # the prompt may be billed (estimated from the request)
    [call] = gateway.calls(1)
    assert (call.status_code, call.outcome) == (502, "upstream_error")
    assert call.error.startswith("upstream_invalid_answer")


def test_a_cookie_one_provider_answer_sets_is_never_sent_with_later_calls(gateway, monkeypatch):
    """One session (and connection pool) serves every thread and organization:
    a cookie a provider sets (Cloudflare's __cf_bm on api.openai.com) must not
    ride along with another organization's next call."""
    fake = gateway.upstream
    wire, original = fake._routes[("POST", "/v1/chat/completions")]

    def setting_a_cookie(request):
        response = original(request)
        response.set_cookie("__cf_bm", "bot-management-cookie", path="/")
        return response

    monkeypatch.setitem(fake._routes, ("POST", "/v1/chat/completions"), (wire, setting_a_cookie))
    client = gateway.openai()
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    gateway.events(2)
    sent = [r for r in fake.requests if r.path == "/v1/chat/completions"]
    assert len(sent) == 2
    assert not any(name.lower() == "cookie" for request in sent for name in request.headers)

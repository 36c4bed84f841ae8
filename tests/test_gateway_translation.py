"""Calls translated between the OpenAI and Anthropic formats, through the
official SDKs changed only in base_url and api_key: the `openai` SDK calling
Claude (chat completions → Anthropic's /v1/messages) and the `anthropic` SDK
calling OpenAI-wire models (messages → /chat/completions), whole and
streamed, tool calls included; Gemini through Google's OpenAI-compatible API.
What is recorded stays the provider's own usage, so cache tokens count once."""
from __future__ import annotations

import json

import anthropic
import openai
import pytest

from costguardian.models import GatewayRequest, UsageEvent
from costguardian.services.actor import Actor
from costguardian.services.budgets import budgets
from costguardian.services.gateway import admission, streams, translate_requests, translate_streams, vault
from costguardian.services.usage.pricing import OrgPrices, Tokens
from tests.fakes.llm_upstream import ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY
from tests.gateway_support import gateway, gateway_server, run_async  # noqa: F401  (fixtures)
from tests.support import SYSTEM

CLAUDE = "claude-sonnet-4-5"
HELLO = [{"role": "user", "content": "Say hello."}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
ANTHROPIC_WEATHER = {"name": "get_weather", "description": "The weather in a city.",
                     "input_schema": WEATHER["function"]["parameters"]}


def _tokens(event) -> tuple[int, int, int, int]:
    return event.input_tokens, event.cache_read_tokens, event.cache_write_tokens, event.output_tokens


def _logged(usage: dict) -> tuple[int, int, int, int]:
    return usage["input"], usage["cache_read"], usage["cache_write"], usage["output"]


def _expected_cost(org, event) -> int:
    cost, _ = OrgPrices.for_org(org).price(event.provider, event.model, event.occurred_at,
                                           Tokens(*_tokens(event)[:3], event.output_tokens))
    return cost


# --- the openai SDK calling Claude ------------------------------------------------------

def test_the_openai_sdk_calls_claude_and_the_event_carries_anthropics_usage(gateway):
    """Bifrost #3451 counted cache read and creation tokens twice."""
    gateway.upstream.cache_read_tokens, gateway.upstream.cache_write_tokens = 3000, 500
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model=f"anthropic/{CLAUDE}", temperature=0.2, stop="END", user="end-user-9",
        messages=[{"role": "system", "content": "Be brief."}, *HELLO], seed=7)
    completion = raw.parse()
    assert completion.object == "chat.completion" and completion.model == CLAUDE
    assert completion.choices[0].message.content == gateway.upstream.reply
    assert completion.choices[0].finish_reason == "stop"
    [usage] = gateway.upstream.usage_log
    assert completion.usage.prompt_tokens == usage["input"]  # uncached + cache read + cache creation
    assert completion.usage.prompt_tokens_details.cached_tokens == 3000
    assert completion.usage.total_tokens == usage["input"] + usage["output"]

    [sent] = gateway.upstream.requests
    assert sent.path == "/v1/messages" and sent.header("x-api-key") == ANTHROPIC_KEY
    assert sent.header("anthropic-version") == "2023-06-01" and sent.header("Authorization") is None
    assert sent.body == {"model": CLAUDE, "max_tokens": 4096, "temperature": 0.2, "stop_sequences": ["END"],
                         "metadata": {"user_id": "end-user-9"}, "system": [{"type": "text", "text": "Be brief."}],
                         "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}]}

    [event] = gateway.events(1)
    assert event.event_id == raw.headers["x-cg-request-id"]
    assert (event.provider, event.model) == ("anthropic", CLAUDE)
    assert _tokens(event) == _logged(usage) == (usage["input"], 3000, 500, usage["output"])
    assert event.cost_nanos == _expected_cost(gateway.org, event) > 0
    assert event.user_ref == "end-user-9" and event.tags == ["source:gateway"]
    [call] = gateway.calls(1)
    assert (call.endpoint, call.provider, call.outcome, call.status_code) == ("chat.completions", "anthropic", "ok",
                                                                               200)


def test_max_tokens_and_the_configured_default_reach_anthropic(gateway, app, monkeypatch):
    monkeypatch.setitem(app.config, "CG_GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS", 1234)
    client = gateway.openai()
    client.chat.completions.create(model=CLAUDE, messages=HELLO)
    cut = client.chat.completions.create(model=CLAUDE, messages=HELLO, max_completion_tokens=3)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 3
    client.chat.completions.create(model=CLAUDE, messages=HELLO, max_tokens=7)
    assert [r.body["max_tokens"] for r in gateway.upstream.requests] == [1234, 3, 7]
    gateway.events(3)


def test_a_stream_from_claude_arrives_as_chat_completion_chunks(gateway):
    gateway.upstream.anthropic_usage_deltas = 3  # cumulative totals: counted once
    gateway.upstream.cache_read_tokens = 200
    chunks = list(gateway.openai().chat.completions.create(model=CLAUDE, messages=HELLO, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.model == CLAUDE for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == gateway.upstream.reply
    assert chunks[-1].choices[0].finish_reason == "stop" and all(c.usage is None for c in chunks)
    [event] = gateway.events(1)
    assert _tokens(event) == _logged(gateway.upstream.usage_log[0]) and event.cache_read_tokens == 200
    [call] = gateway.calls(1)
    assert call.streamed and call.outcome == "ok" and call.ttft_ms is not None and not call.usage_estimated

    with_usage = list(gateway.openai().chat.completions.create(model=CLAUDE, messages=HELLO, stream=True,
                                                               stream_options={"include_usage": True}))
    assert with_usage[-1].choices == [] and with_usage[-1].usage.prompt_tokens == gateway.upstream.usage_log[1]["input"]
    assert with_usage[-1].usage.prompt_tokens_details.cached_tokens == 200
    assert "stream_options" not in gateway.upstream.requests[-1].body
    gateway.events(2)


def test_the_async_openai_sdk_calls_claude_whole_and_streamed(gateway):
    async def call():
        client = gateway.async_openai()
        whole = await client.chat.completions.create(model=CLAUDE, messages=HELLO, max_tokens=4)
        stream = await client.chat.completions.create(model=CLAUDE, messages=HELLO, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        return whole, text

    whole, text = run_async(call())
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 4
    assert text == gateway.upstream.reply
    first, second = gateway.events(2)
    assert (first.provider, first.output_tokens) == ("anthropic", 4)
    assert second.output_tokens == len(gateway.upstream.reply.split())


def test_a_tool_call_round_trip_with_claude(gateway):
    gateway.upstream.tool_arguments = {"city": "Paris", "unit": "celsius"}
    client = gateway.openai()
    asked = client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "Weather in Paris?"}],
                                           tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)
    choice = asked.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [tool_call] = choice.message.tool_calls
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris", "unit": "celsius"}
    sent = gateway.upstream.requests[0].body
    assert sent["tools"] == [ANTHROPIC_WEATHER]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}

    history = [{"role": "user", "content": "Weather in Paris?"}, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": tool_call.id, "content": "18 °C, sunny"}]
    answered = client.chat.completions.create(model=CLAUDE, messages=history, tools=[WEATHER])
    assert answered.choices[0].message.content == gateway.upstream.reply  # the fake checked the tool_result
    turns = gateway.upstream.requests[1].body["messages"]
    assert turns[1] == {"role": "assistant", "content": [{"type": "tool_use", "id": tool_call.id,
                                                          "name": "get_weather",
                                                          "input": {"city": "Paris", "unit": "celsius"}}]}
    assert turns[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_call.id,
                                                     "content": [{"type": "text", "text": "18 °C, sunny"}]}]}

    streamed = list(client.chat.completions.create(model=CLAUDE, messages=history[:1], tools=[WEATHER], stream=True))
    calls = [c.choices[0].delta.tool_calls[0] for c in streamed if c.choices and c.choices[0].delta.tool_calls]
    assert calls[0].id and calls[0].function.name == "get_weather"
    assert json.loads("".join(c.function.arguments for c in calls)) == {"city": "Paris", "unit": "celsius"}
    assert streamed[-1].choices[0].finish_reason == "tool_calls"
    assert all(e.provider == "anthropic" and e.output_tokens > 0 for e in gateway.events(3))


def test_images_become_anthropic_image_sources(gateway):
    parts = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
             {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]
    gateway.openai().chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": parts}])
    [_, inline, linked] = gateway.upstream.requests[0].body["messages"][0]["content"]
    assert inline == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                  "data": "iVBORw0KGgo="}}
    assert linked == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    gateway.events(1)


@pytest.mark.parametrize("options, param", [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
    ({"reasoning_effort": "high"}, "reasoning_effort"),
])
def test_parameters_anthropic_lacks_are_refused_in_openais_shape(gateway, options, param):
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai().chat.completions.create(model=CLAUDE, messages=HELLO, **options)
    assert caught.value.code == "unsupported_parameter" and f"`{param}`" in caught.value.message
    assert caught.value.param == param  # OpenAI's shape names the parameter at fault
    assert gateway.upstream.requests == []
    assert [c.outcome for c in gateway.calls(1)] == ["refused"] and UsageEvent.select().count() == 0


def test_anthropics_error_becomes_openais_with_its_status_and_retry_after(gateway):
    gateway.upstream.fail_next, gateway.upstream.retry_after = [429], "7"
    with pytest.raises(openai.RateLimitError) as caught:
        gateway.openai().chat.completions.create(model=CLAUDE, messages=HELLO)
    assert caught.value.status_code == 429 and caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body == {"message": "Failing as told (HTTP 429).", "type": "rate_limit_error", "param": None,
                                 "code": "rate_limit_error"}
    gateway.upstream.fail_next = [529]
    with pytest.raises(openai.APIStatusError) as caught:
        gateway.openai().chat.completions.create(model=CLAUDE, messages=HELLO, stream=True)
    assert caught.value.status_code == 529 and caught.value.body["code"] == "overloaded_error"
    events = gateway.events(2)
    assert all(e.cost_nanos == 0 and "status:error" in e.tags and e.provider == "anthropic" for e in events)
    assert [c.status_code for c in gateway.calls(2)] == [429, 529]


def test_a_translated_call_against_an_exhausted_hard_budget_is_a_429_in_the_callers_shape(gateway):
    budgets.create(gateway.org, SYSTEM, {"name": "Search team cap", "amount_usd": "0.000001",
                                         "enforcement": "hard"})
    with pytest.raises(openai.RateLimitError) as caught:
        gateway.openai(max_retries=2).chat.completions.create(model=CLAUDE, messages=HELLO)
    assert caught.value.body["code"] == "budget_exceeded" and "Search team cap" in caught.value.message
    with pytest.raises(anthropic.RateLimitError) as caught:
        gateway.anthropic(max_retries=2).messages.create(model="gpt-4o", max_tokens=10, messages=HELLO)
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert gateway.upstream.requests == []
    assert [c.outcome for c in gateway.calls(2)] == ["blocked", "blocked"]


def test_the_admission_estimate_reads_either_format_alike(gateway):
    """The caller's body is what admission counts: the same prompt in OpenAI's
    and in Anthropic's format is estimated alike, with the same output cap."""
    parts = [{"type": "text", "text": "Describe this picture in detail, please. " * 20},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 40_000}}]
    body = {"model": CLAUDE, "messages": [{"role": "system", "content": "You are terse."},
                                          {"role": "user", "content": parts}], "tools": [WEATHER]}
    translated = translate_requests.anthropic_request(body)

    def estimate(provider, request_body):
        return admission.estimate(admission.Call(org=gateway.org, api_key=None, provider=provider, model=CLAUDE,
                                                 user=None, department_id=None, body=request_body))

    as_openai, as_anthropic = estimate("anthropic", body), estimate("anthropic", translated)
    assert as_openai.max_output_tokens == as_anthropic.max_output_tokens == translated["max_tokens"] == 4096
    assert abs(as_openai.input_tokens - as_anthropic.input_tokens) <= 0.1 * as_anthropic.input_tokens
    assert as_openai.input_tokens < 4000  # the image is a fixed count, never its base64 data
    back = translate_requests.openai_request({**translated, "model": "gpt-4o"}, "openai")
    assert estimate("openai", back).max_output_tokens == 4096


def test_a_cancelled_translated_stream_is_recorded_with_what_was_seen(gateway):
    gateway.upstream.reply = " ".join(f"w{i}" for i in range(400))
    gateway.upstream.chunk_delay, gateway.upstream.cache_read_tokens = 0.01, 50
    stream = gateway.openai().chat.completions.create(model=CLAUDE, messages=HELLO, stream=True)
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received == 20:
            break
    stream.close()
    [event] = gateway.events(1)
    logged = gateway.upstream.usage_log[0]
    assert event.provider == "anthropic"
    assert (event.input_tokens, event.cache_read_tokens) == (logged["input"], 50)  # message_start's, exact
    assert 20 <= event.output_tokens < 400 and event.cost_nanos > 0
    assert {"status:cancelled", "usage:estimated"} <= set(event.tags)
    assert gateway.calls(1)[0].outcome == "cancelled"


def test_a_provider_dropping_a_translated_stream_ends_it_with_an_openai_error(gateway):
    gateway.upstream.disconnect_after = 8
    with pytest.raises(openai.APIError) as caught:
        for _ in gateway.openai().chat.completions.create(model=CLAUDE, messages=HELLO, stream=True):
            pass
    assert "closed the connection" in caught.value.message
    [event] = gateway.events(1)
    assert {"status:error", "usage:estimated"} <= set(event.tags) and event.provider == "anthropic"


# --- the anthropic SDK calling OpenAI-wire models ---------------------------------------

def test_the_anthropic_sdk_calls_an_openai_model(gateway):
    gateway.upstream.cache_read_tokens = 1000
    message = gateway.anthropic().messages.create(
        model="openai/gpt-4o", max_tokens=100, system="Be brief.", messages=HELLO,
        stop_sequences=["END"], metadata={"user_id": "end-user-3"}, extra_body={"temperature": 0.5})
    assert message.type == "message" and message.role == "assistant" and message.model == "gpt-4o"
    assert message.content[0].text == gateway.upstream.reply and message.stop_reason == "end_turn"
    [usage] = gateway.upstream.usage_log
    assert message.usage.input_tokens == usage["input"] - 1000 and message.usage.cache_read_input_tokens == 1000
    assert message.usage.output_tokens == usage["output"]
    [sent] = gateway.upstream.requests
    assert sent.path == "/v1/chat/completions" and sent.header("Authorization") == f"Bearer {OPENAI_KEY}"
    assert sent.body == {"model": "gpt-4o", "max_completion_tokens": 100, "temperature": 0.5, "stop": ["END"],
                         "user": "end-user-3", "messages": [{"role": "system", "content": "Be brief."},
                                                            {"role": "user", "content": "Say hello."}]}
    [event] = gateway.events(1)
    assert (event.provider, event.model) == ("openai", "gpt-4o")
    assert _tokens(event) == _logged(usage) and event.cache_read_tokens == 1000  # inside prompt_tokens: once
    assert event.cost_nanos == _expected_cost(gateway.org, event) > 0 and event.user_ref == "end-user-3"


def test_the_anthropic_sdk_streams_from_an_openai_model(gateway):
    with gateway.anthropic().messages.stream(model="gpt-4o", max_tokens=100, messages=HELLO) as stream:
        kinds = []
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.content[0].text == gateway.upstream.reply and final.stop_reason == "end_turn"
    [usage] = gateway.upstream.usage_log
    assert (final.usage.input_tokens, final.usage.output_tokens) == (usage["input"], usage["output"])
    assert gateway.upstream.requests[0].body["stream_options"] == {"include_usage": True}
    [event] = gateway.events(1)
    assert _tokens(event) == _logged(usage) and "usage:estimated" not in event.tags
    assert gateway.calls(1)[0].streamed


def test_the_anthropic_sdk_round_trips_a_tool_call_with_an_openai_model(gateway):
    gateway.upstream.tool_arguments = {"city": "Oslo"}
    client = gateway.anthropic()
    first = client.messages.create(model="gpt-4o", max_tokens=100, tools=[ANTHROPIC_WEATHER],
                                   tool_choice={"type": "tool", "name": "get_weather"},
                                   messages=[{"role": "user", "content": "Weather in Oslo?"}])
    assert first.stop_reason == "tool_use"
    [use] = first.content
    assert (use.type, use.name, use.input) == ("tool_use", "get_weather", {"city": "Oslo"})
    assert gateway.upstream.requests[0].body["tools"] == [WEATHER]
    assert gateway.upstream.requests[0].body["tool_choice"] == {"type": "function",
                                                                "function": {"name": "get_weather"}}
    history = [{"role": "user", "content": "Weather in Oslo?"},
               {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "2 °C"},
                                            {"type": "text", "text": "Thanks!"}]}]
    second = client.messages.create(model="gpt-4o", max_tokens=100, tools=[ANTHROPIC_WEATHER], messages=history)
    assert second.content[0].text == gateway.upstream.reply  # the fake checked the tool message's call id
    assert gateway.upstream.requests[1].body["messages"][2:] == [
        {"role": "tool", "tool_call_id": use.id, "content": "2 °C"}, {"role": "user", "content": "Thanks!"}]

    with client.messages.stream(model="gpt-4o", max_tokens=100, tools=[ANTHROPIC_WEATHER],
                                messages=history[:1]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[0].input == {"city": "Oslo"}
    gateway.events(3)


def test_openais_error_becomes_anthropics_and_parameters_openai_lacks_are_refused(gateway):
    gateway.upstream.fail_next = [503]
    with pytest.raises(anthropic.InternalServerError) as caught:
        gateway.anthropic().messages.create(model="gpt-4o", max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 503
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "api_error"
    with pytest.raises(anthropic.BadRequestError) as caught:
        gateway.anthropic().messages.create(model="gpt-4o", max_tokens=10, messages=HELLO, extra_body={"top_k": 5})
    assert "`top_k`" in caught.value.body["error"]["message"]
    assert len(gateway.upstream.requests) == 1
    assert [c.outcome for c in gateway.calls(2)] == ["upstream_error", "refused"]


# --- Gemini through its OpenAI-compatible API -------------------------------------------

def test_gemini_goes_through_googles_openai_compatible_api(gateway):
    vault.add(gateway.org, Actor(user=gateway.owner), "google", "Gemini", GEMINI_KEY)
    gateway.upstream.requests.clear()
    completion = gateway.openai().chat.completions.create(model="gemini-2.5-flash", messages=HELLO)
    assert completion.choices[0].message.content == gateway.upstream.reply
    streamed = list(gateway.openai().chat.completions.create(model="google/gemini-2.5-flash", messages=HELLO,
                                                             stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == gateway.upstream.reply
    message = gateway.anthropic().messages.create(model="gemini-2.5-flash", max_tokens=50, messages=HELLO)
    assert message.content[0].text == gateway.upstream.reply
    embedding = gateway.openai().embeddings.create(model="google/text-embedding-004", input="hello")
    assert len(embedding.data[0].embedding) == 8
    paths = [r.path for r in gateway.upstream.requests]
    assert paths == ["/v1beta/openai/chat/completions"] * 3 + ["/v1beta/openai/embeddings"]
    assert {r.header("Authorization") for r in gateway.upstream.requests} == {f"Bearer {GEMINI_KEY}"}
    assert gateway.upstream.requests[2].body["max_tokens"] == 50
    events = gateway.events(4)
    assert {e.provider for e in events} == {"google"}
    assert [_tokens(e) for e in events] == [_logged(u) for u in gateway.upstream.usage_log]
    assert all(e.cost_nanos > 0 for e in events[:3])
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai().responses.create(model="gemini-2.5-flash", input="hello")
    assert caught.value.code == "unsupported_model"


# --- models retrieve --------------------------------------------------------------------

def test_models_retrieve_answers_for_allowed_models_and_404_otherwise(gateway):
    client = gateway.openai()
    claude = client.models.retrieve("anthropic/claude-sonnet-4-5-20250929")
    assert (claude.id, claude.object, claude.owned_by) == ("anthropic/claude-sonnet-4-5-20250929", "model",
                                                           "anthropic")
    assert client.models.retrieve("gpt-4o").owned_by == "openai"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-9-imaginary")
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("mistral/mistral-large-latest")

    sdk = gateway.anthropic()
    model = sdk.models.retrieve("claude-sonnet-4-5-20250929")
    assert (model.id, model.type) == ("claude-sonnet-4-5-20250929", "model")
    assert sdk.models.retrieve("openai/gpt-4o").id == "openai/gpt-4o"  # /anthropic/v1/messages serves it too
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk.models.retrieve("claude-imaginary")
    assert caught.value.body["error"]["type"] == "not_found_error"
    assert gateway.upstream.requests == [] and GatewayRequest.select().count() == 0


# --- the stream translators on their own --------------------------------------------------

def _events(raw: bytes) -> list[dict]:
    return [json.loads(e.data) for e in streams.events([raw]) if e.data and e.data != "[DONE]"]


def test_an_openai_stream_with_two_tool_calls_and_no_done_closes_as_anthropic_events():
    reader = translate_streams.OpenAIToAnthropicStream()
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o"}
    chunks = [{"choices": []},  # Azure's prompt-filter chunk comes first
              {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Checking."}}]},
              {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {
                  "name": "a", "arguments": '{"x":'}}]}}]},
              {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}}]},
              {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "c2", "function": {
                  "name": "b", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]},
              {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 9,
                                        "prompt_tokens_details": {"cached_tokens": 10}}}]
    out = b"".join(reader.relayed(streams.parse(f"data: {json.dumps({**base, **c})}\n\n".encode())) for c in chunks)
    out += reader.tail()  # the provider's stream ended without [DONE]
    events = _events(out)
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert events[4]["content_block"] == {"type": "tool_use", "id": "c1", "name": "a", "input": {}}
    assert events[8]["index"] == 2 and events[8]["content_block"]["id"] == "c2"
    assert events[11]["delta"]["stop_reason"] == "tool_use"
    assert events[11]["usage"] == {"input_tokens": 20, "cache_creation_input_tokens": 0,
                                   "cache_read_input_tokens": 10, "output_tokens": 9}
    assert reader.usage["prompt_tokens"] == 30 and reader.final  # the provider's own, for the recording
    assert reader.tail() == b""


def test_an_anthropic_error_event_mid_stream_becomes_an_openai_error_chunk():
    reader = translate_streams.AnthropicToOpenAIStream(caller_wants_usage=False)
    sent = [{"type": "message_start", "message": {"id": "msg_1", "model": CLAUDE, "usage": {"input_tokens": 5}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm"}},
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]
    out = [reader.relayed(streams.parse(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode())) for e in sent]
    assert out[1] == b""
    assert _events(out[2])[0]["choices"][0]["delta"] == {"reasoning_content": "Hmm"}
    assert _events(out[3]) == [{"error": {"message": "Overloaded", "type": "server_error", "param": None,
                                          "code": "overloaded_error"}}]
    assert reader.error == "overloaded_error: Overloaded" and reader.usage == {"input_tokens": 5}

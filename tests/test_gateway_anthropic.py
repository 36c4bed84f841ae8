"""The Anthropic-compatible gateway (/anthropic/v1/…) through the official
`anthropic` SDK, changed only in base_url and api_key: usage from
message_start and the cumulative message_delta, cache tokens counted once,
errors in Anthropic's shape."""
from __future__ import annotations

import anthropic
import pytest
import requests

from costguardian.models import GatewayRequest, UsageEvent
from tests.fakes.llm_upstream import ANTHROPIC_KEY
from tests.gateway_support import gateway, gateway_server, run_async  # noqa: F401  (fixtures)

MODEL = "claude-sonnet-4-5"
HELLO = [{"role": "user", "content": "Say hello."}]


def _tokens(event) -> tuple[int, int, int, int]:
    return event.input_tokens, event.cache_read_tokens, event.cache_write_tokens, event.output_tokens


def _logged(usage: dict) -> tuple[int, int, int, int]:
    return usage["input"], usage["cache_read"], usage["cache_write"], usage["output"]


def test_a_message_is_one_priced_event_with_cache_tokens_counted_once(gateway):
    """Bifrost #3451 counted cache read and creation tokens twice."""
    gateway.upstream.cache_read_tokens, gateway.upstream.cache_write_tokens = 3000, 500
    raw = gateway.anthropic().messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=HELLO)
    message = raw.parse()
    assert message.content[0].text == gateway.upstream.reply
    assert message.usage.cache_read_input_tokens == 3000  # the caller sees the provider's own usage

    [event] = gateway.events(1)
    assert event.event_id == raw.headers["x-cg-request-id"]
    assert (event.provider, event.model) == ("anthropic", "claude-sonnet-4-5")
    uncached = message.usage.input_tokens
    assert _tokens(event) == (uncached + 3500, 3000, 500, message.usage.output_tokens)
    assert _tokens(event) == _logged(gateway.upstream.usage_log[0])
    assert event.cost_nanos > 0 and event.tags == ["source:gateway"]
    [sent] = gateway.upstream.requests
    assert sent.path == "/v1/messages" and sent.header("x-api-key") == ANTHROPIC_KEY
    assert sent.header("anthropic-version") and sent.body["model"] == MODEL  # the SDK's own version, passed on


def test_a_caller_without_anthropic_version_gets_the_gateways_default(gateway):
    answer = requests.post(gateway.url + "/anthropic/v1/messages", headers={"x-api-key": gateway.key}, timeout=5,
                           json={"model": MODEL, "max_tokens": 5, "messages": HELLO})
    assert answer.status_code == 200 and answer.json()["type"] == "message"
    assert answer.headers["X-CG-Request-Id"].startswith("gw_")
    assert gateway.upstream.requests[-1].header("anthropic-version") == "2023-06-01"
    gateway.events(1)


def test_a_streamed_message_counts_the_cumulative_message_delta_once(gateway):
    gateway.upstream.anthropic_usage_deltas = 3  # totals so far in each: 5, 10, 16
    gateway.upstream.cache_read_tokens = 200
    with gateway.anthropic().messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == gateway.upstream.reply
    [event] = gateway.events(1)
    assert event.output_tokens == final.usage.output_tokens == 16  # not 1 + 5 + 10 + 16
    assert _tokens(event) == _logged(gateway.upstream.usage_log[0]) and event.cache_read_tokens == 200
    [call] = gateway.calls(1)
    assert call.streamed and call.outcome == "ok" and call.ttft_ms is not None and not call.usage_estimated


def test_the_async_sdk_streams_too(gateway):
    async def call():
        client = gateway.async_anthropic()
        async with client.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
            text = "".join([t async for t in stream.text_stream])
        raw = await client.messages.create(model=MODEL, max_tokens=4, messages=HELLO, stream=True)
        kinds = [event.type async for event in raw]
        return text, kinds

    text, kinds = run_async(call())
    assert text == gateway.upstream.reply
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    first, second = gateway.events(2)
    assert first.output_tokens == len(gateway.upstream.reply.split()) and second.output_tokens == 4


def test_count_tokens_passes_through_and_is_not_a_usage_event(gateway):
    counted = gateway.anthropic().messages.count_tokens(model=MODEL, messages=HELLO)
    assert counted.input_tokens > 0
    assert gateway.upstream.requests[-1].path == "/v1/messages/count_tokens"
    assert UsageEvent.select().count() == 0 and GatewayRequest.select().count() == 0


def test_models_lists_the_anthropic_models_the_organization_may_use(gateway):
    ids = [m.id for m in gateway.anthropic().models.list()]
    assert ids == sorted(gateway.upstream.models["anthropic"])


def test_the_key_works_as_x_api_key_and_as_a_bearer_token(gateway):
    gateway.anthropic().messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    bearer = anthropic.Anthropic(base_url=gateway.url + "/anthropic", auth_token=gateway.key, max_retries=0)
    bearer.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert len(gateway.events(2)) == 2


def test_a_wrong_or_missing_key_is_refused_in_anthropics_shape(gateway):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        gateway.anthropic(key="cg_live_aaaaaaaaaaaa_" + "x" * 40).messages.create(model=MODEL, max_tokens=10,
                                                                                  messages=HELLO)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"
    assert caught.value.body["error"]["message"] == "This API key is not valid."
    missing = requests.post(gateway.url + "/anthropic/v1/messages", json={"model": MODEL, "max_tokens": 10,
                                                                          "messages": HELLO}, timeout=5)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    assert "x-api-key: cg_" in missing.json()["error"]["message"]
    assert gateway.upstream.requests == []


def test_count_tokens_for_an_openai_model_is_a_clear_400_and_an_unserved_model_a_404(gateway):
    """Messages to an OpenAI model are translated (tests/test_gateway_translation.py); count_tokens is not."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        gateway.anthropic().messages.count_tokens(model="gpt-4o", messages=HELLO)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "OpenAI" in caught.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as caught:
        gateway.anthropic().messages.create(model="mistral/mistral-large-latest", max_tokens=10, messages=HELLO)
    assert caught.value.body["error"]["type"] == "not_found_error"
    assert gateway.upstream.requests == []


def test_the_providers_errors_keep_their_shape_and_retries_never_double_the_cost(gateway):
    gateway.upstream.fail_next = [529]
    with pytest.raises(anthropic.APIStatusError) as caught:
        gateway.anthropic().messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 529 and caught.value.body["error"]["type"] == "overloaded_error"
    gateway.upstream.fail_next, gateway.upstream.retry_after = [429], "0.01"
    message = gateway.anthropic(max_retries=1).messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    overloaded, limited, served = gateway.events(3)
    assert overloaded.cost_nanos == limited.cost_nanos == 0 and "status:error" in limited.tags
    assert served.output_tokens == message.usage.output_tokens and served.cost_nanos > 0
    assert sum(e.cost_nanos for e in UsageEvent.select()) == served.cost_nanos
    assert [c.status_code for c in gateway.calls(3)] == [529, 429, 200]


def test_a_cancelled_stream_is_billed_for_the_tokens_seen(gateway):
    gateway.upstream.reply = " ".join(f"w{i}" for i in range(400))
    gateway.upstream.chunk_delay = 0.01
    gateway.upstream.cache_read_tokens = 50
    seen = 0
    with gateway.anthropic().messages.stream(model=MODEL, max_tokens=1000, messages=HELLO) as stream:
        for _ in stream.text_stream:
            seen += 1
            if seen == 25:
                break
    [event] = gateway.events(1)
    logged = gateway.upstream.usage_log[0]
    # the input side is exact (message_start), the output what was generated before the caller left
    assert (event.input_tokens, event.cache_read_tokens) == (logged["input"], 50)
    assert 25 <= event.output_tokens < 400 and event.cost_nanos > 0
    assert {"status:cancelled", "usage:estimated"} <= set(event.tags)
    assert gateway.calls(1)[0].outcome == "cancelled"


def test_a_provider_dropping_the_stream_ends_it_with_an_anthropic_error_event(gateway):
    gateway.upstream.disconnect_after = 8
    with pytest.raises(anthropic.APIStatusError) as caught:
        with gateway.anthropic().messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
            for _ in stream:
                pass
    assert caught.value.body["error"]["type"] == "api_error"
    [event] = gateway.events(1)
    assert event.output_tokens >= 4 and {"status:error", "usage:estimated"} <= set(event.tags)

"""Translation between the OpenAI and Anthropic formats at its edges, through
the gateway with the official SDKs and the fake upstream: text holding
Unicode line separators, Gemini's tool calls without `index`, malformed
parameters (a 400 in the caller's shape, never a 500), refusals, a stream
cut short (either way), Anthropic's temperature range and tool_choice "none"."""
from __future__ import annotations

import json

import anthropic
import openai
import pytest

from costguardian.models import UsageEvent
from costguardian.services.actor import Actor
from costguardian.services.gateway import streams, translate_answers, vault
from tests.fakes.llm_upstream import GEMINI_KEY
from tests.gateway_support import gateway, gateway_server  # noqa: F401  (fixtures)
from tests.test_gateway_translation import ANTHROPIC_WEATHER, CLAUDE, HELLO, WEATHER

# Every character str.splitlines() cuts at that is not an SSE line end.
SEPARATORS = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei"
USAGE = {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}


def _text(delta: dict, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def _with_gemini(gateway) -> None:
    vault.add(gateway.org, Actor(user=gateway.owner), "google", "Gemini", GEMINI_KEY)
    gateway.upstream.requests.clear()


# --- 1. SSE lines end at \r\n, \r or \n only ----------------------------------------------

def test_an_sse_data_line_keeps_unicode_line_separators():
    event = streams.parse(f'event: x\r\ndata: {{"t": "{SEPARATORS}"}}\rdata: 2\n\n'.encode())
    assert event.name == "x" and event.data == f'{{"t": "{SEPARATORS}"}}\n2'


def test_model_text_with_unicode_line_separators_survives_translation(gateway):
    gateway.upstream.stream_script = [_text({"role": "assistant", "content": ""}), _text({"content": SEPARATORS}),
                                      _text({"content": " end"}), _text({}, "stop"), USAGE, "[DONE]"]
    with gateway.anthropic().messages.stream(model="gpt-4o", max_tokens=50, messages=HELLO) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == SEPARATORS + " end" and final.stop_reason == "end_turn"
    [event] = gateway.events(1)
    assert (event.input_tokens, event.output_tokens) == (12, 7) and "usage:estimated" not in event.tags


# --- 2. Gemini's parallel tool calls without `index` --------------------------------------

@pytest.mark.parametrize("calls", [
    # whole calls with ids, both in one chunk
    [[{"id": "function-call-1", "type": "function", "function": {"name": "get_weather",
                                                                 "arguments": '{"city": "Paris"}'}},
      {"id": "function-call-2", "type": "function", "function": {"name": "get_weather",
                                                                 "arguments": '{"city": "Oslo"}'}}]],
    # no ids: each call named, its arguments in fragments after it
    [[{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": '}}],
     [{"function": {"arguments": '"Paris"}'}}],
     [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]],
], ids=["ids", "positions"])
def test_geminis_index_less_parallel_tool_calls_stay_apart_and_stop_for_tool_use(gateway, calls):
    _with_gemini(gateway)
    gateway.upstream.stream_script = [_text({"role": "assistant", **({"tool_calls": calls[0]})}),
                                      *[_text({"tool_calls": more}) for more in calls[1:]],
                                      _text({}, "stop"), USAGE, "[DONE]"]
    with gateway.anthropic().messages.stream(model="gemini-2.5-flash", max_tokens=50, tools=[ANTHROPIC_WEATHER],
                                             messages=[{"role": "user", "content": "Paris and Oslo?"}]) as stream:
        final = stream.get_final_message()
    assert [(b.type, b.name, b.input) for b in final.content] == [("tool_use", "get_weather", {"city": "Paris"}),
                                                                  ("tool_use", "get_weather", {"city": "Oslo"})]
    assert final.stop_reason == "tool_use"
    assert gateway.upstream.requests[0].path == "/v1beta/openai/chat/completions"
    gateway.events(1)


def test_a_whole_answer_with_tool_calls_ending_with_stop_is_tool_use():
    message = translate_answers.anthropic_message({"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "function-call-1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]}}]})
    assert message["stop_reason"] == "tool_use" and message["content"][0]["type"] == "tool_use"


# --- 3. malformed parameters: a 400 in the caller's shape, never a 500 --------------------

@pytest.mark.parametrize("options, param", [
    ({"tools": ["x"]}, "tools"),
    ({"tools": 5}, "tools"),
    ({"stop": 5}, "stop"),
    ({"stop": ["END", 5]}, "stop"),
    ({"modalities": 5}, "modalities"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": "get_weather"}}, "tool_choice"),
    ({"tools": [WEATHER], "parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "assistant", "tool_calls": 5}, *HELLO]}, "messages[0].tool_calls"),
])
def test_malformed_openai_parameters_for_claude_are_a_400(gateway, options, param):
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai().chat.completions.create(model=CLAUDE, messages=HELLO, extra_body=options)
    assert caught.value.status_code == 400 and caught.value.code == "invalid_type"
    assert f"`{param}`" in caught.value.message
    assert gateway.upstream.requests == []
    assert [c.outcome for c in gateway.calls(1)] == ["refused"] and UsageEvent.select().count() == 0


@pytest.mark.parametrize("options, param", [
    ({"tools": ["x"]}, "tools"),
    ({"tools": 5}, "tools"),
    ({"stop_sequences": 5}, "stop_sequences"),
    ({"stop_sequences": "END"}, "stop_sequences"),  # once sent on as ["E", "N", "D"]
    ({"tools": [ANTHROPIC_WEATHER], "tool_choice": "auto"}, "tool_choice"),
    ({"tools": [ANTHROPIC_WEATHER], "tool_choice": {"type": "tool"}}, "tool_choice"),
])
def test_malformed_anthropic_parameters_for_an_openai_model_are_a_400(gateway, options, param):
    with pytest.raises(anthropic.BadRequestError) as caught:
        gateway.anthropic().messages.create(model="gpt-4o", max_tokens=10, messages=HELLO, extra_body=options)
    assert caught.value.status_code == 400
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "invalid_request_error"
    assert f"`{param}`" in caught.value.body["error"]["message"]
    assert gateway.upstream.requests == []
    assert [c.outcome for c in gateway.calls(1)] == ["refused"]


# --- 4. refusals are the answer's text ---------------------------------------------------

def test_a_streamed_refusal_reaches_the_anthropic_caller_as_text(gateway):
    gateway.upstream.stream_script = [_text({"role": "assistant", "content": None, "refusal": ""}),
                                      _text({"refusal": "I'm sorry, "}), _text({"refusal": "I can't help with that."}),
                                      _text({}, "stop"), USAGE, "[DONE]"]
    with gateway.anthropic().messages.stream(model="gpt-4o", max_tokens=50, messages=HELLO) as stream:
        final = stream.get_final_message()
    assert [b.text for b in final.content] == ["I'm sorry, I can't help with that."]
    gateway.events(1)


def test_a_whole_refusal_is_the_answers_text():
    message = translate_answers.anthropic_message({"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": None, "refusal": "I can't help with that."}}]})
    assert message["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert message["stop_reason"] == "end_turn"


# --- 5. a stream cut short is an error, not an end_turn ------------------------------------

def test_an_openai_stream_ending_without_finish_reason_or_done_is_an_anthropic_error(gateway):
    gateway.upstream.stream_script = [_text({"role": "assistant", "content": ""}),
                                      *[_text({"content": f" word{i}"}) for i in range(6)]]
    kinds, texts = [], []
    with pytest.raises(anthropic.APIStatusError) as caught:
        with gateway.anthropic().messages.stream(model="gpt-4o", max_tokens=50, messages=HELLO) as stream:
            for event in stream:
                kinds.append(event.type)
                if event.type == "content_block_delta":
                    texts.append(event.delta.text)
    assert "ended early" in str(caught.value) and caught.value.body["error"]["type"] == "api_error"
    assert kinds[0] == "message_start" and "message_stop" not in kinds and "message_delta" not in kinds
    assert "".join(texts) == "".join(f" word{i}" for i in range(6))
    [event] = gateway.events(1)
    assert {"status:error", "usage:estimated"} <= set(event.tags) and event.output_tokens >= 6
    [call] = gateway.calls(1)
    assert call.outcome == "upstream_error" and "ended early" in call.error


def test_an_openai_stream_with_finish_reason_but_no_done_still_ends_normally(gateway):
    gateway.upstream.stream_script = [_text({"role": "assistant", "content": "Hi."}), _text({}, "length")]
    with gateway.anthropic().messages.stream(model="gpt-4o", max_tokens=50, messages=HELLO) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Hi." and final.stop_reason == "max_tokens"
    assert gateway.calls(1)[0].outcome == "ok"


def _anthropic_events(*events: tuple[str, dict]) -> bytes:
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


def test_an_anthropic_stream_ending_without_message_stop_is_an_openai_error(gateway, monkeypatch):
    from werkzeug.wrappers import Response

    message = {"id": "msg_cut", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 12, "output_tokens": 1}}
    body = _anthropic_events(
        ("message_start", {"type": "message_start", "message": message}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        *[("content_block_delta", {"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": f" word{i}"}}) for i in range(5)])

    def cut_short(request):  # a whole HTTP answer whose stream stops before message_delta / message_stop
        return Response(body, 200, content_type="text/event-stream")

    monkeypatch.setitem(gateway.upstream._routes, ("POST", "/v1/messages"), ("anthropic", cut_short))
    texts = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in gateway.openai(max_retries=0).chat.completions.create(model=CLAUDE, messages=HELLO,
                                                                          stream=True):
            texts.extend(c.delta.content or "" for c in chunk.choices)
    assert "ended early" in str(caught.value)
    assert "".join(texts) == "".join(f" word{i}" for i in range(5))  # what came before the end was relayed
    [event] = gateway.events(1)
    assert {"status:error", "usage:estimated"} <= set(event.tags)
    [call] = gateway.calls(1)
    assert call.outcome == "upstream_error" and "ended early" in call.error


def _message_events(words: list[str], stop: bool) -> list[dict]:
    """An Anthropic message stream for CLAUDE answering `words`; without `stop` it ends before message_delta and
    message_stop, as a provider whose connection closed early."""
    start = {"id": "msg_cut0123456789", "type": "message", "role": "assistant", "model": CLAUDE, "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1}}
    events = [{"type": "message_start", "message": start},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
              *[{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}
                for w in words]]
    if stop:
        events += [{"type": "content_block_stop", "index": 0},
                   {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": len(words)}},
                   {"type": "message_stop"}]
    return events


def test_a_translated_anthropic_stream_cut_short_ends_with_an_error_chunk_and_no_done(gateway):
    words = [" Hi", " there"]
    gateway.upstream.messages_script = _message_events(words, stop=False)
    with gateway.openai().chat.completions.with_streaming_response.create(model=CLAUDE, messages=HELLO,
                                                                          stream=True) as response:
        body = b"".join(response.iter_bytes())
    *chunks, last = [json.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: ")]
    assert b"[DONE]" not in body and all("error" not in c for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "".join(words)
    assert set(last) == {"error"} and last["error"]["type"] == "server_error"  # the SDK raises APIError on it
    assert "ended early" in last["error"]["message"]
    [event] = gateway.events(1)
    assert {"status:error", "usage:estimated"} <= set(event.tags)
    assert event.input_tokens == 12 and event.output_tokens >= len(words)  # message_start's input, the output seen
    assert gateway.calls(1)[0].outcome == "upstream_error"


def test_an_anthropic_stream_with_message_stop_still_ends_with_done(gateway):
    gateway.upstream.messages_script = _message_events([" Hi", " there."], stop=True)
    with gateway.openai().chat.completions.with_streaming_response.create(
            model=CLAUDE, messages=HELLO, stream=True, stream_options={"include_usage": True}) as response:
        body = b"".join(response.iter_bytes())
    assert body.rstrip().endswith(b"data: [DONE]") and b'"error"' not in body
    [event] = gateway.events(1)
    assert (event.input_tokens, event.output_tokens) == (12, 2) and "usage:estimated" not in event.tags
    assert "status:error" not in event.tags and gateway.calls(1)[0].outcome == "ok"


# --- 6. Anthropic's temperature range ------------------------------------------------------

def test_a_temperature_above_one_for_claude_is_refused_not_clamped(gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai().chat.completions.create(model=CLAUDE, messages=HELLO, temperature=1.5)
    assert caught.value.code == "unsupported_value"
    assert "`temperature`" in caught.value.message and "between 0 and 1" in caught.value.message
    assert gateway.upstream.requests == []
    gateway.openai().chat.completions.create(model=CLAUDE, messages=HELLO, temperature=1)
    assert gateway.upstream.requests[0].body["temperature"] == 1
    gateway.anthropic().messages.create(model="gpt-4o", max_tokens=10, messages=HELLO,
                                        extra_body={"temperature": 1.5})
    assert gateway.upstream.requests[1].body["temperature"] == 1.5  # OpenAI's range goes to 2
    gateway.calls(3)


# --- 7. tool_choice none takes no disable_parallel_tool_use ----------------------------------

def test_tool_choice_none_with_parallel_tool_calls_off_reaches_anthropic_without_the_flag(gateway):
    client = gateway.openai()
    client.chat.completions.create(model=CLAUDE, messages=HELLO, tools=[WEATHER], tool_choice="none",
                                   parallel_tool_calls=False)
    client.chat.completions.create(model=CLAUDE, messages=HELLO, tools=[WEATHER], tool_choice="auto",
                                   parallel_tool_calls=False)
    client.chat.completions.create(model=CLAUDE, messages=HELLO, tools=[WEATHER], parallel_tool_calls=False)
    assert [r.body["tool_choice"] for r in gateway.upstream.requests] == [
        {"type": "none"}, {"type": "auto", "disable_parallel_tool_use": True},
        {"type": "auto", "disable_parallel_tool_use": True}]
    gateway.events(3)


def test_the_scripted_stream_is_sent_byte_for_byte_unescaped(gateway):
    """The fake's scripted stream: providers send UTF-8, not \\u escapes."""
    gateway.upstream.stream_script = [_text({"content": "é\u2028"}), "[DONE]"]
    with gateway.openai().chat.completions.with_streaming_response.create(model="gpt-4o", messages=HELLO,
                                                                          stream=True) as response:
        body = b"".join(response.iter_bytes())
    assert "é\u2028".encode() in body and json.loads(body.split(b"\n")[0][6:])["model"] == "gpt-4o"
    gateway.events(1)

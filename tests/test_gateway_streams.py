"""Reading providers' streams without HTTP: events split as bytes arrive,
usage read where each provider puts it, counted once."""
from __future__ import annotations

import json

from costguardian.services.gateway import anthropic_wire, openai_wire, streams
from costguardian.services.usage.usage_objects import tokens_from_usage_object


def _sse(*events) -> bytes:
    out = b""
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        out += ((f"event: {name}\n" if name else "") + f"data: {payload}\n\n").encode()
    return out


def test_events_are_complete_as_soon_as_their_last_byte_arrives_whatever_the_chunking():
    stream = _sse((None, {"a": 1}), ("ping", {"type": "ping"}), (None, "[DONE]"))
    for size in (1, 2, 7, len(stream)):
        pieces = [stream[i:i + size] for i in range(0, len(stream), size)]
        events = list(streams.events(pieces))
        assert [(e.name, e.data) for e in events] == [(None, '{"a": 1}'), ("ping", '{"type": "ping"}'),
                                                       (None, "[DONE]")]
        assert b"".join(e.raw for e in events) == stream  # forwarded byte for byte


def test_crlf_comments_and_multi_line_data():
    raw = b": keep-alive\r\n\r\nevent: x\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n"
    events = list(streams.events([raw]))
    assert [(e.name, e.data) for e in events] == [(None, ""), ("x", '{"a":\n1}')]


def test_generator_yields_each_event_before_the_next_chunk_is_read():
    seen = []

    def chunks():
        for part in (b'data: {"n": 1}\n\n', b'data: {"n"', b': 2}\n\n'):
            seen.append(part)
            yield part

    events = streams.events(chunks())
    next(events)
    assert len(seen) == 1  # the first event went out before more was read


def _chunk(choices, usage=None, **extra):
    body = {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-2024-08-06", "choices": choices, **extra}
    if usage is not None:
        body["usage"] = usage
    return streams.parse(_sse((None, body)))


USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 100}}


def test_openai_usage_only_chunk_is_held_back_when_the_gateway_asked_for_it():
    reader = openai_wire.ChatStream(caller_wants_usage=False)
    assert reader.feed(_chunk([{"index": 0, "delta": {"content": "Hi"}}]))
    assert reader.feed(_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    assert not reader.feed(_chunk([], USAGE))  # not for this caller
    assert reader.feed(streams.parse(b"data: [DONE]\n\n"))
    assert reader.final and reader.usage == USAGE and reader.model == "gpt-4o-2024-08-06"

    asked = openai_wire.ChatStream(caller_wants_usage=True)
    assert asked.feed(_chunk([], USAGE))


def test_usage_on_a_final_chunk_with_choices_is_forwarded_and_counted_once():
    """LiteLLM #36168: the last chunk still carries choices and the usage."""
    reader = openai_wire.ChatStream(caller_wants_usage=False)
    for word in ("a", "b", "c"):
        reader.feed(_chunk([{"index": 0, "delta": {"content": word}}], None))
    assert reader.feed(_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}], USAGE))  # has choices: forwarded
    reader.feed(streams.parse(b"data: [DONE]\n\n"))
    tokens = tokens_from_usage_object(reader.usage, "openai")
    assert (tokens.input, tokens.cache_read, tokens.output) == (120, 100, 30)


def test_cumulative_usage_in_every_chunk_is_the_latest_not_the_sum():
    reader = openai_wire.ChatStream(caller_wants_usage=True)
    for n in (1, 2, 3):
        reader.feed(_chunk([{"index": 0, "delta": {"content": "x"}}], {"prompt_tokens": 10, "completion_tokens": n}))
    reader.feed(_chunk([], None, x_groq={"usage": {"prompt_tokens": 10, "completion_tokens": 4}}))
    assert reader.usage == {"prompt_tokens": 10, "completion_tokens": 4}


def test_an_openai_stream_cut_short_is_estimated_from_what_was_seen():
    reader = openai_wire.ChatStream(caller_wants_usage=False)
    for text in ("Hello", " there", " general", " Kenobi"):
        reader.feed(_chunk([{"index": 0, "delta": {"content": text}}]))
    assert not reader.final
    assert reader.estimated_usage(42) == {"prompt_tokens": 42, "completion_tokens": 7}  # 26 chars / 4 > 4 events
    error = reader.error_event("timeout", "gone")
    assert json.loads(error.decode().removeprefix("data: "))["error"]["code"] == "upstream_timeout"


def test_anthropic_message_delta_output_tokens_are_cumulative():
    reader = anthropic_wire.MessagesStream()
    start = {"type": "message_start", "message": {"model": "claude-sonnet-4-5-20250929", "usage": {
        "input_tokens": 20, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200, "output_tokens": 1}}}
    reader.feed(streams.parse(_sse(("message_start", start))))
    for total in (5, 9, 12):
        reader.feed(streams.parse(_sse(("message_delta", {"type": "message_delta", "delta": {},
                                                          "usage": {"output_tokens": total}}))))
    assert reader.final and reader.usage["output_tokens"] == 12  # not 1 + 5 + 9 + 12
    tokens = tokens_from_usage_object(reader.usage, "anthropic")
    # cache tokens once: input counts every prompt token, the cache ones among them
    assert (tokens.input, tokens.cache_read, tokens.cache_write, tokens.output) == (1220, 1000, 200, 12)


def test_anthropic_message_delta_with_input_counts_overwrites_not_adds():
    reader = anthropic_wire.MessagesStream()
    reader.feed(streams.parse(_sse(("message_start", {"type": "message_start", "message": {
        "usage": {"input_tokens": 20, "cache_read_input_tokens": 0, "output_tokens": 1}}}))))
    reader.feed(streams.parse(_sse(("message_delta", {"type": "message_delta", "usage": {
        "input_tokens": 20, "cache_read_input_tokens": 0, "cache_creation_input_tokens": None, "output_tokens": 7}}))))
    assert reader.usage == {"input_tokens": 20, "cache_read_input_tokens": 0, "output_tokens": 7}


def test_anthropic_stream_cut_before_message_delta_keeps_the_exact_input_side():
    reader = anthropic_wire.MessagesStream()
    reader.feed(streams.parse(_sse(("message_start", {"type": "message_start", "message": {
        "usage": {"input_tokens": 20, "cache_read_input_tokens": 50, "output_tokens": 1}}}))))
    for text in ("one", " two", " three"):
        reader.feed(streams.parse(_sse(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                                "delta": {"type": "text_delta", "text": text}}))))
    assert not reader.final
    assert reader.estimated_usage(999) == {"input_tokens": 20, "cache_read_input_tokens": 50, "output_tokens": 4}


def test_responses_usage_comes_from_response_completed():
    reader = openai_wire.ResponsesStream()
    reader.feed(streams.parse(_sse(("response.created", {"type": "response.created", "sequence_number": 0,
                                                         "response": {"model": "gpt-4o", "usage": None}}))))
    reader.feed(streams.parse(_sse(("response.output_text.delta", {"type": "response.output_text.delta",
                                                                   "sequence_number": 1, "delta": "Hi"}))))
    assert not reader.final and reader.output_events == 1
    usage = {"input_tokens": 50, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 1}
    reader.feed(streams.parse(_sse(("response.completed", {"type": "response.completed", "sequence_number": 2,
                                                           "response": {"model": "gpt-4o", "usage": usage}}))))
    assert reader.final and reader.usage == usage
    tokens = tokens_from_usage_object(reader.usage, "openai")
    assert (tokens.input, tokens.cache_read, tokens.output) == (50, 10, 1)

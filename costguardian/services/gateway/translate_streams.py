"""Stream translation (services.gateway.translate): each provider event is
turned into the caller's events as it arrives (never the answer buffered),
while the provider's own reader (the base class) keeps its native usage for
the recording.

Anthropic → OpenAI chunks: message_start → the role chunk; text deltas →
`content`; a tool_use block → a tool call (id and name), its input_json
deltas → `arguments` fragments; thinking → `reasoning_content`;
message_delta → the chunk with finish_reason; message_stop → the usage chunk
(only when the caller asked `stream_options.include_usage`), then
`data: [DONE]`.

OpenAI chunks → Anthropic events: the first chunk → message_start; text
(and a `refusal`) → a text block (content_block_start, text_delta …); each
tool call → a tool_use block with input_json_delta fragments (told apart by
`index`, or — Gemini sends none — by `id`, or as a new call when it names
its function); [DONE] (or the end of the stream after a finish_reason) →
content_block_stop, message_delta (stop_reason, the usage totals) and
message_stop. OpenAI reports usage after finish_reason, so message_delta
waits for [DONE]. A stream that ends with neither a finish_reason nor [DONE]
was cut short: it ends with an `error` event (api_error) and the call is
recorded as an upstream error. Gemini ends a tool-calling answer with "stop":
once a tool_use block was sent the stop_reason is tool_use.
"""
from __future__ import annotations

import json

from costguardian.services.gateway import anthropic_wire, openai_wire
from costguardian.services.gateway import translate_answers as answers
from costguardian.services.gateway.streams import Event


def _sse(data, name: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return ((f"event: {name}\n" if name else "") + f"data: {payload}\n\n").encode()


def _json(text: str):
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class AnthropicToOpenAIStream(anthropic_wire.MessagesStream):
    """Anthropic's messages stream, relayed as chat.completion.chunk events."""

    def __init__(self, caller_wants_usage: bool):
        super().__init__()
        self.caller_wants_usage = caller_wants_usage
        self.id, self.created = "", answers.created()
        self.tool_calls: dict[int, int] = {}  # content block index → tool call index
        self.done = False

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> bytes:
        return _sse({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                     "model": self.model or "", "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                            "finish_reason": finish_reason}]})

    def relayed(self, event: Event) -> bytes:
        self.feed(event)  # the native usage, model and text seen
        data = _json(event.data) if event.data else None
        if data is None or self.done:
            return b""
        kind = data.get("type") or event.name
        if kind == "message_start" and isinstance(data.get("message"), dict):
            self.id = data["message"].get("id") or ""
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start" and isinstance(data.get("content_block"), dict):
            block = data["content_block"]
            if block.get("type") == "tool_use":
                index = self.tool_calls[data.get("index")] = len(self.tool_calls)
                return self._chunk({"tool_calls": [{"index": index, "id": block.get("id"), "type": "function",
                                                    "function": {"name": block.get("name"), "arguments": ""}}]})
            if block.get("type") == "text" and block.get("text"):
                return self._chunk({"content": block["text"]})
            return b""
        if kind == "content_block_delta" and isinstance(data.get("delta"), dict):
            delta = data["delta"]
            if delta.get("type") == "text_delta":
                return self._chunk({"content": delta.get("text") or ""})
            if delta.get("type") == "thinking_delta":
                return self._chunk({"reasoning_content": delta.get("thinking") or ""})
            if delta.get("type") == "input_json_delta" and data.get("index") in self.tool_calls:
                return self._chunk({"tool_calls": [{"index": self.tool_calls[data["index"]],
                                                    "function": {"arguments": delta.get("partial_json") or ""}}]})
            return b""
        if kind == "message_delta":
            reason = data["delta"].get("stop_reason") if isinstance(data.get("delta"), dict) else None
            return self._chunk({}, answers.FINISH_REASONS.get(reason, "stop")) if reason else b""
        if kind == "message_stop":
            self.done = True
            usage = b""
            if self.caller_wants_usage:
                usage = _sse({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                              "model": self.model or "", "choices": [], "usage": answers.openai_usage(self.usage)})
            return usage + _sse("[DONE]")
        if kind == "error":
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            self.done = True
            return _sse(openai_wire.error_body(500, error.get("message") or "The provider failed.",
                                               code=error.get("type"), kind="server_error"))
        return b""  # ping, content_block_stop

    def tail(self) -> bytes:
        """Nothing after message_stop (or an error event); when the provider's
        stream ended before its message did, an error chunk and no [DONE]."""
        if self.done:
            return b""
        self.done = True
        message = ("The provider's stream ended early: the connection closed before the answer was complete "
                   "(no message_stop).")
        self.error = self.error or f"api_error: {message}"
        return _sse(openai_wire.error_body(502, message, code="upstream_stream_ended"))

    def error_event(self, kind: str, message: str) -> bytes:
        return _sse(openai_wire.error_body(504 if kind == "timeout" else 502, message, code=f"upstream_{kind}"))


class OpenAIToAnthropicStream(openai_wire.ChatStream):
    """An OpenAI-wire chat stream, relayed as Anthropic's message events."""

    def __init__(self):
        super().__init__(caller_wants_usage=True)
        self.started = False
        self.finished = False
        self.blocks = 0  # content blocks started
        self.open: tuple | None = None  # ("text", -1) or ("tool", …) of the open block
        self.tools = 0  # tool_use blocks started
        self.finish_reason: str | None = None
        self.done = False  # data: [DONE] arrived

    def relayed(self, event: Event) -> bytes:
        if self.finished:
            return b""
        if event.data.strip() == "[DONE]":
            self.done = True
            return self.tail()
        chunk = _json(event.data) if event.data else None
        self.feed(event)  # the native usage, model and text seen
        if chunk is None:
            return b""
        if chunk.get("error"):
            error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            self.finished = True
            return _sse(anthropic_wire.error_body(500, error.get("message") or "The provider failed."), "error")
        choices = chunk.get("choices") if isinstance(chunk.get("choices"), list) else []
        if not choices:  # Azure's prompt-filter chunk, a usage-only chunk: nothing for the caller yet
            return b""
        out = self._start(chunk)
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            for text in (delta.get("content"), delta.get("refusal")):  # a refusal is the answer's text
                if text and isinstance(text, str):
                    out += self._open(("text", -1), {"type": "text", "text": ""})
                    out += self._event("content_block_delta", index=self.blocks - 1,
                                       delta={"type": "text_delta", "text": text})
            calls = delta.get("tool_calls") if isinstance(delta.get("tool_calls"), list) else []
            for call in calls:
                if not isinstance(call, dict):
                    continue
                function = call.get("function") if isinstance(call.get("function"), dict) else {}
                key = self._tool_key(call, function)
                if self.open != key:
                    self.tools += 1
                    out += self._open(key, {"type": "tool_use", "id": call.get("id") or "",
                                            "name": function.get("name") or "", "input": {}})
                if function.get("arguments"):
                    out += self._event("content_block_delta", index=self.blocks - 1,
                                       delta={"type": "input_json_delta", "partial_json": function["arguments"]})
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return out

    def _tool_key(self, call: dict, function: dict) -> tuple:
        """Which tool_use block a tool call fragment belongs to. OpenAI numbers its calls (`index`); Gemini's
        OpenAI-compatible API sends none, with each call whole (an id, or at least a name) or its arguments in
        fragments after it."""
        if isinstance(call.get("index"), int) and not isinstance(call.get("index"), bool):
            return "tool", call["index"]
        if call.get("id"):
            return "tool-id", str(call["id"])
        if function.get("name") or self.open is None or self.open[0] == "text":
            return "tool-new", self.blocks  # a call of its own: the block about to be opened
        return self.open  # the open call's next arguments

    @property
    def stop_reason(self) -> str:
        reason = (self.finish_reason or "").lower()
        if self.tools and reason in ("stop", ""):  # Gemini: a tool-calling answer ends with "stop"
            return "tool_use"
        return answers.STOP_REASONS.get(reason, "end_turn")

    def tail(self) -> bytes:
        """content_block_stop, message_delta with the stop reason and usage totals, message_stop; or, when the
        provider's stream ended before its answer did (no finish_reason, no [DONE]), an error event."""
        if self.finished:
            return b""
        self.finished = True
        if self.finish_reason is None and not self.done:
            message = ("The provider's stream ended early: the connection closed before the answer was complete "
                       "(no finish_reason, no [DONE]).")
            self.error = self.error or f"api_error: {message}"
            return _sse(anthropic_wire.error_body(502, message, kind="api_error"), "error")
        out = self._start({}) + self._close()
        usage = answers.anthropic_usage(self.usage) if self.final else {"output_tokens": self.output_estimate()}
        out += self._event("message_delta", delta={"stop_reason": self.stop_reason, "stop_sequence": None},
                           usage=usage)
        return out + self._event("message_stop")

    def _start(self, chunk: dict) -> bytes:
        if self.started:
            return b""
        self.started = True
        message = {"id": chunk.get("id") or "", "type": "message", "role": "assistant",
                   "model": chunk.get("model") or self.model or "", "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}
        return self._event("message_start", message=message)

    def _open(self, key: tuple[str, int], block: dict) -> bytes:
        if self.open == key:
            return b""
        out = self._close()
        self.open = key
        self.blocks += 1
        return out + self._event("content_block_start", index=self.blocks - 1, content_block=block)

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return self._event("content_block_stop", index=self.blocks - 1)

    @staticmethod
    def _event(kind: str, **fields) -> bytes:
        return _sse({"type": kind, **fields}, kind)

    def error_event(self, kind: str, message: str) -> bytes:
        return _sse(anthropic_wire.error_body(504 if kind == "timeout" else 502, message), "error")

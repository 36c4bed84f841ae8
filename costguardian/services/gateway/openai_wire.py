"""OpenAI's wire format, as the gateway needs it: its error body, and
reading usage from its answers and streams.

Streams (chat completions and legacy completions): usage comes in a chunk
of its own at the end when `stream_options.include_usage` is set (its
`choices` empty); the gateway sets it when the caller did not and then holds
that chunk back. Some OpenAI-compatible servers put usage on the last chunk
that still carries `choices` (and Groq under `x_groq.usage`): that chunk is
forwarded, and its usage counted once, as the latest usage object seen
(never summed). Responses API streams report usage in `response.completed`
(or `.incomplete` / `.failed`).
"""
from __future__ import annotations

import json

from costguardian.services.gateway.streams import Event, Reader

TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
         404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
         422: "invalid_request_error", 429: "rate_limit_error"}
FINAL_RESPONSE_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def error_body(status: int, message: str, code: str | None = None, kind: str | None = None,
               param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind or TYPES.get(status, "server_error" if status >= 500
                                                                      else "invalid_request_error"),
                      "param": param, "code": code}}


def _json(data: str):
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _describe(error) -> str:
    if isinstance(error, dict):
        return f"{error.get('type') or error.get('code') or 'error'}: {error.get('message') or ''}".strip()
    return str(error)


class ChatStream(Reader):
    """Chat completions and legacy completions chunks."""

    def __init__(self, caller_wants_usage: bool):
        super().__init__()
        self.caller_wants_usage = caller_wants_usage

    def feed(self, event: Event) -> bool:
        chunk = _json(event.data) if event.data and event.data != "[DONE]" else None
        if chunk is None:
            return True
        if chunk.get("error"):
            self.error = _describe(chunk["error"])
            return True
        self.model = chunk.get("model") or self.model
        usage = chunk.get("usage")
        if not isinstance(usage, dict):
            usage = (chunk.get("x_groq") or {}).get("usage") if isinstance(chunk.get("x_groq"), dict) else None
        if isinstance(usage, dict):
            self.usage, self.final = usage, True  # the latest one: cumulative, never added up
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict):
                continue
            self.text_seen(choice.get("text"))
            delta = choice.get("delta")
            if isinstance(delta, dict):
                for name in ("content", "reasoning_content", "reasoning", "refusal"):
                    self.text_seen(delta.get(name))
                for call in delta.get("tool_calls") or []:
                    if isinstance(call, dict) and isinstance(call.get("function"), dict):
                        self.text_seen(call["function"].get("arguments"))
        if isinstance(usage, dict) and not choices and not self.caller_wants_usage:
            return False  # the usage-only chunk the gateway asked for
        return True

    def error_event(self, kind: str, message: str) -> bytes:
        body = error_body(504 if kind == "timeout" else 502, message, code=f"upstream_{kind}")
        return f"data: {json.dumps(body)}\n\n".encode()

    def estimated_usage(self, input_tokens: int) -> dict:
        return {"prompt_tokens": input_tokens, "completion_tokens": self.output_estimate()}


class ResponsesStream(Reader):
    """Responses API events."""

    def __init__(self):
        super().__init__()
        self.sequence = 0

    def feed(self, event: Event) -> bool:
        data = _json(event.data) if event.data else None
        if data is None:
            return True
        kind = data.get("type") or event.name or ""
        if isinstance(data.get("sequence_number"), int):
            self.sequence = data["sequence_number"]
        response = data.get("response") if isinstance(data.get("response"), dict) else None
        if response is not None:
            self.model = response.get("model") or self.model
            if kind in FINAL_RESPONSE_EVENTS and isinstance(response.get("usage"), dict):
                self.usage, self.final = response["usage"], True
            if kind == "response.failed" and response.get("error"):
                self.error = _describe(response["error"])
        if kind == "error":
            self.error = _describe(data)
        elif kind.endswith(".delta") and not kind.startswith("response.audio"):
            self.text_seen(data.get("delta"))
        return True

    def error_event(self, kind: str, message: str) -> bytes:
        body = {"type": "error", "code": f"upstream_{kind}", "message": message, "param": None,
                "sequence_number": self.sequence + 1}
        return f"event: error\ndata: {json.dumps(body)}\n\n".encode()

    def estimated_usage(self, input_tokens: int) -> dict:
        return {"input_tokens": input_tokens, "output_tokens": self.output_estimate()}


def answer_usage(body: dict) -> dict | None:
    """The usage object of a whole (non-streamed) answer."""
    usage = body.get("usage")
    return usage if isinstance(usage, dict) else None


def estimated_answer_usage(kind: str, body: dict, input_tokens: int) -> dict:
    """An answer without usage (some OpenAI-compatible servers): the prompt's
    estimate and a quarter of the answer's characters."""
    output = 0 if kind == "embeddings" else max(1, len(json.dumps(body.get("choices") or body.get("output") or ""))
                                                // 4)
    if kind == "responses":
        return {"input_tokens": input_tokens, "output_tokens": output}
    return {"prompt_tokens": input_tokens, "completion_tokens": output}

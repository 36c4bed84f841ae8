"""Anthropic's wire format, as the gateway needs it: its error body, and
reading usage from its answers and streams.

A messages stream reports usage twice: `message_start` carries the input
side (input_tokens, which EXCLUDES cache reads and writes, reported beside
it as cache_read_input_tokens / cache_creation_input_tokens) with a token or
so of output; each `message_delta` carries usage totals so far — its
output_tokens is CUMULATIVE, not an increment, and newer API versions repeat
the input counts there too. So the usage object is kept as one dict that
every later report overwrites field by field, never added up; the result is
the provider's own usage object, converted once by the ingest service
(services.usage.usage_objects), which counts cache tokens once.
"""
from __future__ import annotations

import json

from costguardian.services.gateway.streams import Event, Reader

TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
         404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
         502: "api_error", 503: "api_error", 504: "timeout_error", 529: "overloaded_error"}


def error_body(status: int, message: str, kind: str | None = None, request_id: str | None = None) -> dict:
    body = {"type": "error", "error": {"type": kind or TYPES.get(status, "api_error" if status >= 500
                                                                 else "invalid_request_error"),
                                       "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body


def _json(data: str):
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class MessagesStream(Reader):
    def feed(self, event: Event) -> bool:
        data = _json(event.data) if event.data else None
        if data is None:
            return True
        kind = data.get("type") or event.name
        if kind == "message_start" and isinstance(data.get("message"), dict):
            message = data["message"]
            self.model = message.get("model") or self.model
            if isinstance(message.get("usage"), dict):
                self.usage = dict(message["usage"])
        elif kind == "message_delta" and isinstance(data.get("usage"), dict):
            merged = dict(self.usage or {})
            merged.update({k: v for k, v in data["usage"].items() if v is not None})  # totals so far: overwrite
            self.usage, self.final = merged, True
        elif kind == "content_block_delta" and isinstance(data.get("delta"), dict):
            delta = data["delta"]
            for name in ("text", "partial_json", "thinking"):
                self.text_seen(delta.get(name))
        elif kind == "error":
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            self.error = f"{error.get('type') or 'error'}: {error.get('message') or ''}".strip()
        return True

    def error_event(self, kind: str, message: str) -> bytes:
        body = error_body(504 if kind == "timeout" else 502, message)
        return f"event: error\ndata: {json.dumps(body)}\n\n".encode()

    def estimated_usage(self, input_tokens: int) -> dict:
        if self.usage:  # message_start's exact input side, the output seen
            return {**self.usage, "output_tokens": max(int(self.usage.get("output_tokens") or 0),
                                                       self.output_estimate())}
        return {"input_tokens": input_tokens, "output_tokens": self.output_estimate()}


def answer_usage(body: dict) -> dict | None:
    usage = body.get("usage")
    return usage if isinstance(usage, dict) else None


def estimated_answer_usage(body: dict, input_tokens: int) -> dict:
    return {"input_tokens": input_tokens, "output_tokens": max(1, len(json.dumps(body.get("content") or "")) // 4)}

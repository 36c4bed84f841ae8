"""Translation between the OpenAI chat completions and the Anthropic messages
formats, both ways, for a call whose provider does not speak the caller's
format (routing sets `Route.translation`). The proxy asks this module for
the provider's request body, the caller's answer (or error) and a stream
reader that turns the provider's events into the caller's as they arrive:

    outgoing = translate.request(route, body)            # raises Unsupported (400 in the caller's shape)
    status, content = translate.answer(route, raw)        # a whole answer
    content = translate.error(route, status, raw)        # the provider's error, in the caller's shape
    reader = translate.stream_reader(route, body)        # streams.Reader: native usage, translated events

What is recorded stays the provider's: its own usage object (Anthropic's for
a Claude call made through /v1/chat/completions), read before translating,
so cache tokens are priced by the provider's rules and counted once.

The requests: translate_requests.py; whole answers: translate_answers.py;
streams: translate_streams.py.
"""
from __future__ import annotations

import json

from costguardian.services.gateway import anthropic_wire, openai_wire, translate_answers, upstream
from costguardian.services.gateway.routing import ANTHROPIC_TO_OPENAI, OPENAI_TO_ANTHROPIC, Route
from costguardian.services.gateway.translate_requests import Unsupported, anthropic_request, openai_request
from costguardian.services.gateway.translate_streams import AnthropicToOpenAIStream, OpenAIToAnthropicStream

__all__ = ["Unsupported", "answer", "error", "request", "stream_reader"]


def request(route: Route, body: dict) -> dict:
    """The provider's request for the caller's `body` (its model already the upstream's)."""
    if route.translation == OPENAI_TO_ANTHROPIC:
        return anthropic_request(body)
    if route.translation == ANTHROPIC_TO_OPENAI:
        return openai_request(body, route.provider.key)
    raise ValueError(f"not a translation: {route.translation!r}")


def answer(route: Route, content: bytes) -> tuple[int, bytes]:
    """The caller's answer for the provider's successful one: (status, JSON bytes)."""
    native = _json(content)
    if not isinstance(native, dict):
        message = f"{route.provider.label} answered with something that is not a JSON object; it cannot be translated."
        return 502, json.dumps(_error_body(route, 502, message, "upstream_unreadable")).encode()
    if route.translation == OPENAI_TO_ANTHROPIC:
        translated = translate_answers.chat_completion(native)
    else:
        translated = translate_answers.anthropic_message(native)
    return 200, json.dumps(translated).encode()


def error(route: Route, status: int, content: bytes) -> bytes:
    """The provider's error, in the caller's shape, with the provider's words
    (and its error type as OpenAI's `code`)."""
    parsed = _json(content)
    if isinstance(parsed, list) and parsed:  # Gemini's OpenAI-compatible API wraps its error in a list
        parsed = parsed[0]
        content = json.dumps(parsed).encode()
    detail = parsed.get("error") if isinstance(parsed, dict) else None
    kind = (detail.get("type") or detail.get("code") or detail.get("status")) if isinstance(detail, dict) else None
    message = upstream.provider_message(content) or f"{route.provider.label} answered HTTP {status}."
    return json.dumps(_error_body(route, status, message, str(kind) if kind else None)).encode()


def stream_reader(route: Route, body: dict):
    if route.translation == OPENAI_TO_ANTHROPIC:
        options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        return AnthropicToOpenAIStream(caller_wants_usage=bool(options.get("include_usage")))
    return OpenAIToAnthropicStream()


def _error_body(route: Route, status: int, message: str, code: str | None) -> dict:
    if route.translation == OPENAI_TO_ANTHROPIC:  # the caller speaks OpenAI
        return openai_wire.error_body(status, message, code=code)
    return anthropic_wire.error_body(status, message)


def _json(content: bytes):
    try:
        return json.loads(content)
    except ValueError:
        return None

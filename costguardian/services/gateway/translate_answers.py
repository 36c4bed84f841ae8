"""Whole-answer translation (services.gateway.translate): Anthropic's
message as an OpenAI `chat.completion`, an OpenAI chat completion as an
Anthropic `message`, and the usage objects between the two.

Usage, for the caller: OpenAI's prompt_tokens counts every prompt token,
Anthropic's input_tokens leaves out the ones read from or written to the
cache (reported beside it). So prompt_tokens = input + cache read + cache
creation, prompt_tokens_details.cached_tokens = cache read; and back,
input_tokens = prompt_tokens − cached_tokens. (What is recorded is the
provider's own object, never these.)
"""
from __future__ import annotations

import calendar
import json

from costguardian import clock

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "pause_turn": "stop", "refusal": "content_filter", "model_context_window_exceeded": "length"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}


def created() -> int:
    return calendar.timegm(clock.now().timetuple())


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def openai_usage(usage) -> dict:
    """Anthropic's usage object in OpenAI's chat terms."""
    usage = usage if isinstance(usage, dict) else {}
    read, written = _int(usage.get("cache_read_input_tokens")), _int(usage.get("cache_creation_input_tokens"))
    prompt = _int(usage.get("input_tokens")) + read + written
    output = _int(usage.get("output_tokens"))
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": read}}


def anthropic_usage(usage) -> dict:
    """OpenAI's chat usage object (Groq's too) in Anthropic's terms."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    read, written = _int(details.get("cached_tokens")), _int(details.get("cache_write_tokens"))
    return {"input_tokens": max(0, _int(usage.get("prompt_tokens")) - read - written),
            "cache_creation_input_tokens": written, "cache_read_input_tokens": read,
            "output_tokens": _int(usage.get("completion_tokens"))}


def chat_completion(message: dict) -> dict:
    """Anthropic's message → OpenAI's chat.completion."""
    texts, reasoning, calls = [], [], []
    for block in message.get("content") or []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input", {}))}})
    reply = {"role": "assistant", "content": "".join(texts) if texts or not calls else None, "refusal": None}
    if reasoning:
        reply["reasoning_content"] = "".join(reasoning)
    if calls:
        reply["tool_calls"] = calls
    return {"id": message.get("id") or "", "object": "chat.completion", "created": created(),
            "model": message.get("model") or "",
            "choices": [{"index": 0, "message": reply, "logprobs": None,
                         "finish_reason": FINISH_REASONS.get(message.get("stop_reason"), "stop")}],
            "usage": openai_usage(message.get("usage"))}


def anthropic_message(completion: dict) -> dict:
    """An OpenAI chat.completion → Anthropic's message (the first choice)."""
    choices = completion.get("choices") if isinstance(completion.get("choices"), list) else []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    reply = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = []
    text = reply.get("content")
    if isinstance(text, list):  # some compatible servers answer with parts
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    refusal = reply.get("refusal") if isinstance(reply.get("refusal"), str) else ""
    text = (text if isinstance(text, str) else "") + refusal  # a refusal is the answer's text
    if text:
        content.append({"type": "text", "text": text})
    for call in reply.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            content.append({"type": "tool_use", "id": call.get("id") or "", "name": function.get("name") or "",
                            "input": tool_input(function.get("arguments"))})
    reason = str(choice.get("finish_reason") or "").lower()
    if reason in ("stop", "") and any(block["type"] == "tool_use" for block in content):
        reason = "tool_calls"  # Gemini ends a tool-calling answer with "stop"
    return {"id": completion.get("id") or "", "type": "message", "role": "assistant",
            "model": completion.get("model") or "", "content": content,
            "stop_reason": STOP_REASONS.get(reason, "end_turn"), "stop_sequence": None,
            "usage": anthropic_usage(completion.get("usage"))}


def tool_input(arguments) -> dict:
    """A tool call's JSON arguments as Anthropic's `input` object."""
    try:
        value = json.loads(arguments or "{}")
    except (TypeError, ValueError):
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}

"""Request translation (services.gateway.translate): an OpenAI chat
completions body for Anthropic's /v1/messages, and an Anthropic messages body
for an OpenAI-wire provider's /chat/completions.

A parameter the target has no equivalent for is refused (`Unsupported`, a
400 in the caller's shape naming it) when dropping it would change the answer
the caller gets (n > 1, logprobs, response_format json, audio, Anthropic's
top_k, server tools …); it is dropped when it cannot: a hint about sampling
or caching (`seed`, `presence_penalty`, `frequency_penalty`, `service_tier`,
`store`, `prediction`, `prompt_cache_key`, OpenAI's stored-completion
`metadata`, Anthropic's `cache_control`, earlier `thinking` blocks).
A parameter this module does not know is refused, so none is ever lost
silently, and so is a value of the wrong type or out of the target's range
(`invalid_type`, `unsupported_value`): a 400 before the call, never a 500.
"""
from __future__ import annotations

import json
import re

from costguardian.services.gateway import admission

# OpenAI chat completions → Anthropic messages
OPENAI_DROPPED = frozenset({"seed", "presence_penalty", "frequency_penalty", "service_tier", "store", "prediction",
                            "prompt_cache_key", "metadata", "stream_options", "verbosity"})
OPENAI_PASSED = frozenset({"temperature", "top_p", "stream"})
ANTHROPIC_EXTRAS = frozenset({"top_k", "thinking"})  # Anthropic's own, given through the OpenAI SDK's extra_body
# Anthropic messages → OpenAI chat completions
ANTHROPIC_DROPPED = frozenset({"service_tier", "cache_control", "context_management"})
ANTHROPIC_PASSED = frozenset({"temperature", "top_p", "stream"})
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)", re.DOTALL)


class Unsupported(Exception):
    """The call cannot be translated as asked: 400 in the caller's shape."""

    def __init__(self, message: str, param: str | None = None, code: str = "unsupported_parameter"):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


def _given(value) -> bool:
    return value is not None and value is not False and value != [] and value != {}


def _invalid(param: str, expected: str) -> Unsupported:
    return Unsupported(f"Invalid type for `{param}`: expected {expected}.", param, "invalid_type")


def _strings(value, param: str, single: bool = False) -> list[str]:
    """A list of strings (or, when `single`, one string standing for a list of it)."""
    if single and isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(param, "a string or an array of strings" if single else "an array of strings")
    return value


def _objects(value, param: str) -> list:
    if not isinstance(value, list):
        raise _invalid(param, "an array of objects")
    return value


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- OpenAI → Anthropic ---------------------------------------------------------------

def anthropic_request(body: dict) -> dict:
    out = {"model": body["model"], "max_tokens": _max_tokens(body)}
    for key, value in body.items():
        if key in ("model", "messages", "max_tokens", "max_completion_tokens") or key in OPENAI_DROPPED:
            continue
        if key in OPENAI_PASSED or key in ANTHROPIC_EXTRAS:
            if key in ("temperature", "top_p") and value is not None:
                _unit_interval(key, value)
            if value is not None:
                out[key] = value
        elif key in ("stop",):
            if _given(value):
                out["stop_sequences"] = _strings(value, key, single=True)
        elif key in ("user", "safety_identifier"):
            if isinstance(value, str) and value:
                out.setdefault("metadata", {})["user_id"] = value
        elif key in ("tools", "tool_choice", "parallel_tool_calls"):
            continue  # below, together
        elif key == "n":
            if value not in (None, 1):
                raise Unsupported("`n` > 1 is not supported for Anthropic models: Claude gives one answer per "
                                  "call; make several calls instead.", "n")
        elif key in ("logprobs", "top_logprobs"):
            if _given(value) and value != 0:
                raise Unsupported("`logprobs` are not available for Anthropic models.", key)
        elif key == "response_format":
            if _given(value) and (not isinstance(value, dict) or value.get("type") != "text"):
                raise Unsupported("`response_format` (JSON mode, json_schema) is not translated for Anthropic "
                                  "models: describe the format in the prompt, or use a tool with an input "
                                  "schema.", key)
        elif key == "modalities":
            if _given(value) and _strings(value, key) != ["text"]:
                raise Unsupported("Only text output is available for Anthropic models.", key)
        elif key == "reasoning_effort":
            if value not in (None, "none"):
                raise Unsupported("`reasoning_effort` is not translated for Anthropic models: pass Anthropic's "
                                  "`thinking` parameter instead (extra_body={\"thinking\": {\"type\": \"enabled\", "
                                  "\"budget_tokens\": 2048}}).", key)
        elif key == "logit_bias":
            if _given(value):
                raise Unsupported("`logit_bias` is not available for Anthropic models.", key)
        elif value is not None:
            raise Unsupported(f"The parameter `{key}` has no Anthropic equivalent, so the gateway cannot send it "
                              "to an Anthropic model.", key)
    system, messages = _anthropic_messages(body.get("messages"))
    if system:
        out["system"] = system
    out["messages"] = messages
    out.update(_anthropic_tools(body))
    return out


def _unit_interval(key: str, value) -> None:
    """Anthropic takes temperature and top_p from 0 to 1 (OpenAI's temperature goes to 2): refused, never clamped."""
    if not _number(value):
        raise _invalid(key, "a number")
    if not 0 <= value <= 1:
        raise Unsupported(f"`{key}` must be between 0 and 1 for Anthropic models (got {value}); OpenAI's range "
                          "up to 2 has no Anthropic equivalent.", key, "unsupported_value")


def _max_tokens(body: dict) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return admission.default_max_output_tokens()  # Anthropic requires it; admission reserved for the same cap


def _anthropic_messages(messages) -> tuple[list[dict], list[dict]]:
    if not isinstance(messages, list) or not messages:
        raise Unsupported("`messages` must be a non-empty list.", "messages")
    system: list[dict] = []
    turns: list[dict] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise Unsupported(f"messages[{index}] must be an object.", "messages")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), index))
        elif role == "user":
            _append(turns, "user", _user_blocks(message.get("content"), index))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(message, index))
        elif role == "tool":
            _append(turns, "user", [{"type": "tool_result", "tool_use_id": str(message.get("tool_call_id") or ""),
                                     "content": _text_blocks(message.get("content"), index) or ""}])
        else:
            raise Unsupported(f"messages[{index}]: the role `{role}` is not translated for Anthropic models "
                              "(use `tool` messages and `tools` rather than functions).", "messages")
    return system, turns


def _append(turns: list[dict], role: str, blocks: list[dict]) -> None:
    """Consecutive turns of one role become one (tool results and the user's next words share a turn)."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _text_blocks(content, index: int) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content if isinstance(content, list) else [content]:
        if isinstance(part, dict) and part.get("type") in ("text", "refusal"):
            text = part.get("text") if part.get("type") == "text" else part.get("refusal")
            if text:
                blocks.append(_cached({"type": "text", "text": text}, part))
        else:
            raise Unsupported(f"messages[{index}]: only text content is translated here.", "messages")
    return blocks


def _user_blocks(content, index: int) -> list[dict]:
    if isinstance(content, str) or content is None:
        return _text_blocks(content, index)
    blocks = []
    for part in content if isinstance(content, list) else [content]:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.extend(_text_blocks([part], index))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append(_cached({"type": "image", "source": _source(url, index)}, part))
        elif kind == "file" and isinstance(part.get("file"), dict) and part["file"].get("file_data"):
            blocks.append(_cached({"type": "document", "source": _source(part["file"]["file_data"], index)}, part))
        else:
            raise Unsupported(f"messages[{index}]: content of type `{kind}` is not translated for Anthropic models "
                              "(text, images and PDF files as data URLs are).", "messages")
    return blocks


def _source(url, index: int) -> dict:
    if not isinstance(url, str) or not url:
        raise Unsupported(f"messages[{index}]: an image or file needs a URL.", "messages")
    match = _DATA_URL.fullmatch(url)
    if match:
        return {"type": "base64", "media_type": match["type"], "data": match["data"]}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise Unsupported(f"messages[{index}]: only data: and http(s) URLs are translated for Anthropic models.",
                      "messages")


def _cached(block: dict, part: dict) -> dict:
    if isinstance(part.get("cache_control"), dict):  # Anthropic's prompt caching, given on an OpenAI part
        block["cache_control"] = part["cache_control"]
    return block


def _assistant_blocks(message: dict, index: int) -> list[dict]:
    blocks = _text_blocks(message.get("content"), index)
    if message.get("refusal") and not blocks:
        blocks.append({"type": "text", "text": message["refusal"]})
    for call in _objects(message.get("tool_calls") or [], f"messages[{index}].tool_calls"):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise Unsupported(f"messages[{index}]: only function tool calls are translated.", "messages")
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            raise Unsupported(f"messages[{index}]: the arguments of tool call {call.get('id')} are not JSON.",
                              "messages") from None
        blocks.append({"type": "tool_use", "id": str(call.get("id") or ""), "name": function.get("name") or "",
                       "input": arguments if isinstance(arguments, dict) else {"value": arguments}})
    return blocks


def _anthropic_tools(body: dict) -> dict:
    out = {}
    tools = body.get("tools")
    if _given(tools):
        out["tools"] = []
        for tool in _objects(tools, "tools"):
            if not isinstance(tool, dict):
                raise _invalid("tools", "an array of objects")
            function = tool.get("function") if tool.get("type") == "function" else None
            if not isinstance(function, dict) or not function.get("name"):
                raise Unsupported("Only `function` tools are translated for Anthropic models.", "tools")
            schema = function.get("parameters") or {"type": "object", "properties": {}}
            out["tools"].append({"name": function["name"], **({"description": function["description"]}
                                                                 if function.get("description") else {}),
                                 "input_schema": schema})
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function") if choice.get("type") == "function" else None
        name = function.get("name") if isinstance(function, dict) else None
        if not name or not isinstance(name, str):
            raise _invalid("tool_choice", 'none, auto, required or {"type": "function", "function": {"name": …}}')
        translated = {"type": "tool", "name": name}
    elif choice in ("auto", "none", "required"):
        translated = {"type": {"required": "any"}.get(choice, choice)}
    elif choice is None:
        translated = None
    else:
        raise Unsupported("`tool_choice` must be none, auto, required or one function.", "tool_choice")
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise _invalid("parallel_tool_calls", "a boolean")
    # Anthropic takes disable_parallel_tool_use with auto, any and tool only (it refuses it with none).
    if parallel is False and out.get("tools") and (translated is None or translated["type"] != "none"):
        translated = {**(translated or {"type": "auto"}), "disable_parallel_tool_use": True}
    if translated is not None and (out.get("tools") or translated["type"] == "none"):
        out["tool_choice"] = translated
    return out


# --- Anthropic → OpenAI ---------------------------------------------------------------

def openai_request(body: dict, provider_key: str) -> dict:
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise Unsupported("max_tokens: Field required (a whole number ≥ 1).", "max_tokens")
    # OpenAI's own API wants max_completion_tokens (its reasoning models refuse max_tokens); others take max_tokens.
    out = {"model": body["model"], ("max_completion_tokens" if provider_key in ("openai", "azure")
                                    else "max_tokens"): max_tokens}
    for key, value in body.items():
        if key in ("model", "max_tokens", "messages", "system", "tools", "tool_choice") or key in ANTHROPIC_DROPPED:
            continue
        if key in ANTHROPIC_PASSED:
            if value is not None:
                out[key] = value
        elif key == "stop_sequences":
            if _given(value):
                out["stop"] = list(_strings(value, key))
        elif key == "metadata":
            user = value.get("user_id") if isinstance(value, dict) else None
            if isinstance(user, str) and user:
                out["user"] = user
        elif key == "thinking":
            if _given(value) and not (isinstance(value, dict) and value.get("type") == "disabled"):
                raise Unsupported("Extended `thinking` is only available for Anthropic models.", key)
        elif value is not None:
            raise Unsupported(f"The parameter `{key}` has no equivalent in the OpenAI API, so the gateway cannot "
                              "send it to this model.", key)
    messages = []
    system = _plain_text(body.get("system"), "system")
    if system:
        messages.append({"role": "system", "content": system})
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise Unsupported("messages: a non-empty list is required.", "messages")
    for index, turn in enumerate(turns):
        messages.extend(_openai_messages(turn, index))
    out["messages"] = messages
    out.update(_openai_tools(body))
    return out


def _plain_text(content, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for block in content if isinstance(content, list) else [content]:
        if not isinstance(block, dict) or block.get("type") != "text":
            raise Unsupported(f"{where}: only text blocks are translated here.", where)
        texts.append(block.get("text") or "")
    return "\n".join(texts)


def _openai_messages(turn, index: int) -> list[dict]:
    where = f"messages.{index}"
    if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
        raise Unsupported(f"{where}: the role must be user or assistant.", "messages")
    content = turn.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(blocks, list):
        raise Unsupported(f"{where}.content: a string or a list of blocks is required.", "messages")
    if turn["role"] == "assistant":
        texts, calls = [], []
        for block in blocks:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                texts.append(block.get("text") or "")
            elif kind == "tool_use":
                calls.append({"id": block.get("id"), "type": "function",
                              "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input", {}))}})
            elif kind not in ("thinking", "redacted_thinking"):  # earlier reasoning: another provider cannot take it
                raise Unsupported(f"{where}: assistant content of type `{kind}` is not translated.", "messages")
        message = {"role": "assistant", "content": "".join(texts) or None}
        if calls:
            message["tool_calls"] = calls
        return [message]
    results, parts = [], []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":  # each a `tool` message, right after the assistant's tool calls
            text = _plain_text(block.get("content"), f"{where}.tool_result")
            results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                            "content": ("Error: " + text) if block.get("is_error") else text})
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind in ("image", "document"):
            parts.append(_openai_media(block, where))
        else:
            raise Unsupported(f"{where}: user content of type `{kind}` is not translated.", "messages")
    if parts and all(p["type"] == "text" for p in parts):
        results.append({"role": "user", "content": "\n".join(p["text"] for p in parts)})
    elif parts:
        results.append({"role": "user", "content": parts})
    return results


def _openai_media(block: dict, where: str) -> dict:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    kind = source.get("type")
    if kind == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif kind == "url":
        url = source.get("url")
    elif kind == "text" and block["type"] == "document":
        return {"type": "text", "text": source.get("data") or ""}
    else:
        raise Unsupported(f"{where}: a {block['type']} source of type `{kind}` is not translated.", "messages")
    if block["type"] == "image":
        return {"type": "image_url", "image_url": {"url": url}}
    if kind != "base64":
        raise Unsupported(f"{where}: documents are translated from base64 data only.", "messages")
    return {"type": "file", "file": {"file_data": url, "filename": block.get("title") or "document.pdf"}}


def _openai_tools(body: dict) -> dict:
    out = {}
    tools = body.get("tools")
    if _given(tools):
        out["tools"] = []
        for tool in _objects(tools, "tools"):
            if not isinstance(tool, dict):
                raise _invalid("tools", "an array of objects")
            if tool.get("type") not in (None, "custom") or not tool.get("name"):
                raise Unsupported(f"Only client tools with an input_schema are translated (not `{tool.get('type')}` "
                                  "server tools).", "tools")
            function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
            if tool.get("description"):
                function["description"] = tool["description"]
            out["tools"].append({"type": "function", "function": function})
    choice = body.get("tool_choice")
    if choice is not None and (not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none")
                               or (choice["type"] == "tool" and not isinstance(choice.get("name"), str))):
        raise _invalid("tool_choice", "an object of type auto, any, none, or tool with a `name`")
    if isinstance(choice, dict) and out.get("tools"):
        kind = choice.get("type")
        if kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        elif kind in ("auto", "any", "none"):
            out["tool_choice"] = {"any": "required"}.get(kind, kind)
        if choice.get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    return out

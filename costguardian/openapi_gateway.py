"""The OpenAPI 3.1 document for the LLM gateway, served at
/api/gateway-openapi.json: the OpenAI-compatible endpoints under /v1/ and
the Anthropic-compatible ones under /anthropic/v1/.

A document of its own rather than a part of /api/openapi.json: the gateway
speaks the providers' APIs (their error shapes, not problem+json; their
SDKs, not ours; a key sent as `x-api-key` as well as a bearer token), so
the JSON API's document, its reference page (/docs/api) and its generated
clients stay about Cost Guardian's own API.

Request bodies name the fields the gateway itself reads (model, stream,
max_tokens, user …) and the main ones the provider needs (messages,
input …); every other field goes to the provider as sent
(additionalProperties), as the providers add fields often. A field marked
`x-checked-by: provider` is forwarded without the gateway checking it: the
provider answers a wrong value with its own 400, which passes through.
What the gateway refuses itself before forwarding is what the schema says
of `model`, `stream` and the body being one JSON object, the attribution
headers, the key, budgets and rate limits.
"""
from __future__ import annotations

from costguardian.services.gateway.attribution import MAX_CALLER_TAGS, MAX_TAG, MAX_USER

PROVIDER = {"x-checked-by": "provider"}  # forwarded as sent; the provider refuses a wrong value (400)

# --- errors, in each provider's own shape ------------------------------------------------

OPENAI_ERROR = {
    "type": "object",
    "description": "OpenAI's error shape. The gateway's own refusals set `code` (e.g. model_not_found, "
                   "budget_exceeded, rate_limit_exceeded, invalid_attribution, missing_api_key); a provider's "
                   "error passes through as the provider sent it.",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message"], "properties": {
        "message": {"type": "string"}, "type": {"type": ["string", "null"]},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "integer", "null"]}}}},
}
ANTHROPIC_ERROR = {
    "type": "object",
    "description": "Anthropic's error shape; `request_id` is the gateway's X-CG-Request-Id on its own refusals.",
    "required": ["type", "error"],
    "properties": {"type": {"const": "error"},
                   "error": {"type": "object", "required": ["type", "message"],
                             "properties": {"type": {"type": "string"}, "message": {"type": "string"}}},
                   "request_id": {"type": "string"}},
}

REQUEST_ID = {"X-CG-Request-Id": {"required": True, "description": "The gateway's id of the call (gw_…); the "
                                  "usage event recorded for it and the request log carry it.",
                                  "schema": {"type": "string", "pattern": "^gw_[0-9a-f]{32}$"}}}
RATE_LIMIT_HEADERS = {
    f"x-ratelimit-{what}-{unit}": {"description": f"{what.capitalize()} of the key's (or the organization's) "
                                                  f"{unit} per minute, when it has such a limit.",
                                   "schema": {"type": "string"}}
    for what in ("limit", "remaining", "reset") for unit in ("requests", "tokens")}
RETRY_AFTER = {"retry-after": {"description": "Seconds to wait (a rate limit, or when the budget resets).",
                               "schema": {"type": "string", "pattern": "^[0-9]+$"}}}

# The statuses every call may get, with what the gateway means by each.
_ERRORS = {
    "400": "The body is not one JSON object (invalid_json); `model` is missing or blank (missing_model); "
           "`stream` is not a boolean (invalid_type); the model's provider has no equivalent of this endpoint "
           "(unsupported_model) or of a parameter (translated calls); an X-CG-* header is malformed or names no "
           "department of the organization (invalid_attribution) — or the provider's own 400, passed through.",
    "401": "No key, or an unknown, revoked or expired one — or the provider refused the organization's "
           "provider key (passed through).",
    "403": "The key lacks the `gateway` scope, the organization is suspended or its plan has no gateway "
           "(plan_limit), or the key does not allow X-CG-* attribution headers (attribution_not_allowed).",
    "404": "No enabled provider key of the organization serves the model (model_not_found).",
    "413": "The body is larger than 32 MB.",
    "429": "A hard budget covering the call has no room (budget_exceeded; OpenAI type insufficient_quota; "
           "retry-after: when it resets), a rate limit of the key or organization (rate_limit_exceeded, "
           "retry-after), or the provider's own 429 with its retry headers.",
    "500": "The gateway failed unexpectedly (the error is logged); nothing is charged.",
    "502": "The provider could not be reached, closed the connection, or answered something that is not an "
           "answer (upstream_unreachable, upstream_disconnected, upstream_invalid_answer) — or its own 502.",
    "503": "The budget check could not reach the database and the organization has hard budgets "
           "(budget_check_unavailable: the gateway fails closed) — or the provider's own 503.",
    "504": "The provider did not answer in time (upstream_timeout).",
}


def _error(description: str, schema: dict, headers: dict | None = None) -> dict:
    return {"description": description, "headers": {**REQUEST_ID, **(headers or {})},
            "content": {"application/json": {"schema": schema}}}


def _errors(schema: dict, statuses=tuple(_ERRORS)) -> dict:
    answers = {status: _error(_ERRORS[status], schema, {**RATE_LIMIT_HEADERS, **RETRY_AFTER}
                              if status == "429" else None) for status in statuses}
    answers["default"] = _error("Any other status the provider answered (422, 409, 529 …), passed through with "
                                "its body and retry headers.", schema)
    return answers


OPENAI_ERRORS = _errors({"$ref": "#/components/schemas/OpenAIError"})
ANTHROPIC_ERRORS = _errors({"$ref": "#/components/schemas/AnthropicError"})
# Listing models reads the organization's vault: no provider, no budget, no body.
LISTING_ERRORS = ("401", "403", "429")

# --- requests ----------------------------------------------------------------------------

_SPACES = "\\u0009-\\u000d\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
# Not blank, no NUL (refused with 400 `invalid_value`: such a name could be forwarded but never recorded).
_CHAR = "[^\\u0000\\n]"
MODEL = {"type": "string", "pattern": f"^{_CHAR}*[^{_SPACES}\\u0000]{_CHAR}*$",
         "description": "The model, bare (`gpt-4o`, routed to the provider that serves it) or as "
                        "`provider/model` (`anthropic/claude-sonnet-4-5` through the chat API, translated both "
                        "ways). A model no enabled provider key serves answers 404.",
         "examples": ["gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-sonnet-4-5"]}
STREAM = {"type": ["boolean", "null"], "description": "Stream the answer as server-sent events, relayed event by "
                                                     "event as the provider sends them."}
_TOKENS = {"type": ["integer", "null"], "minimum": 1, **PROVIDER,
           "description": "The call's output cap; the budget check reserves this many output tokens (without "
                          "it, the configured default cap)."}
_USER = {"type": "string", **PROVIDER, "description": "The provider's end-user id; also the call's user when no "
                                                     f"X-CG-User is sent (its first {MAX_USER} characters)."}
_METADATA = {"type": "object", **PROVIDER}
_SERVICE_TIER = {"type": ["string", "null"], **PROVIDER,
                 "description": "Priced at the tier's prices when the catalogue has them."}
_TEXT_OR_PARTS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}
_OPENAI_MESSAGE = {"type": "object", "required": ["role"], "properties": {
    "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
    "content": {"anyOf": [_TEXT_OR_PARTS, {"type": "null"}]}}}
_ANTHROPIC_MESSAGE = {"type": "object", "required": ["role", "content"], "properties": {
    "role": {"enum": ["user", "assistant"]}, "content": _TEXT_OR_PARTS}}
_PROMPT = {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": ["string", "integer"]}},
                     {"type": "array", "minItems": 1, "items": {"type": "array", "items": {"type": "integer"}}}]}


def _body(required: list[str], properties: dict, description: str) -> dict:
    return {"type": "object", "required": ["model", *required], "additionalProperties": True,
            "description": description, "properties": {"model": MODEL, **properties}}


REQUESTS = {
    "ChatCompletionRequest": _body(["messages"], {
        "messages": {"type": "array", "minItems": 1, "items": _OPENAI_MESSAGE, **PROVIDER},
        "stream": STREAM,
        "stream_options": {"type": ["object", "null"], **PROVIDER,
                           "description": "With stream: the gateway sets include_usage to read the call's usage "
                                          "and holds that extra chunk back unless the caller asked for it."},
        "max_tokens": _TOKENS, "max_completion_tokens": _TOKENS,
        "n": {"type": ["integer", "null"], "minimum": 1, **PROVIDER,
              "description": "Answers per call; the reservation covers each."},
        "user": _USER, "metadata": _METADATA, "service_tier": _SERVICE_TIER,
    }, "OpenAI's chat completion request; fields not listed are forwarded as sent."),
    "CompletionRequest": _body(["prompt"], {
        "prompt": {**_PROMPT, **PROVIDER}, "stream": STREAM,
        "stream_options": {"type": ["object", "null"], **PROVIDER}, "max_tokens": _TOKENS,
        "n": {"type": ["integer", "null"], "minimum": 1, **PROVIDER}, "user": _USER,
    }, "OpenAI's legacy completion request."),
    "EmbeddingRequest": _body(["input"], {
        "input": {**_PROMPT, **PROVIDER},
        "encoding_format": {"enum": ["float", "base64"], **PROVIDER},
        "dimensions": {"type": "integer", "minimum": 1, **PROVIDER}, "user": _USER,
    }, "OpenAI's embeddings request (never streamed)."),
    "ResponseRequest": _body(["input"], {
        "input": {**_TEXT_OR_PARTS, **PROVIDER},
        "instructions": {"type": ["string", "null"], **PROVIDER},
        "stream": STREAM, "max_output_tokens": _TOKENS, "user": _USER, "metadata": _METADATA,
        "service_tier": _SERVICE_TIER,
    }, "OpenAI's Responses API request."),
    "MessageRequest": _body(["messages", "max_tokens"], {
        "messages": {"type": "array", "minItems": 1, "items": _ANTHROPIC_MESSAGE, **PROVIDER},
        "max_tokens": {"type": "integer", "minimum": 1, **PROVIDER,
                       "description": "The output cap (required by Anthropic); the budget check reserves it."},
        "system": {**_TEXT_OR_PARTS, **PROVIDER}, "stream": STREAM,
        "metadata": {"type": "object", **PROVIDER, "properties": {"user_id": {
            "type": ["string", "null"], "description": "The call's user when no X-CG-User is sent."}}},
        "service_tier": _SERVICE_TIER,
    }, "Anthropic's messages request; to an OpenAI-style provider's model it is translated to chat completions "
       "and the answer back."),
    "CountTokensRequest": _body(["messages"], {
        "messages": {"type": "array", "minItems": 1, "items": _ANTHROPIC_MESSAGE, **PROVIDER},
        "system": {**_TEXT_OR_PARTS, **PROVIDER},
    }, "Anthropic's count_tokens request (Anthropic models only; free, not recorded)."),
}

# --- answers -----------------------------------------------------------------------------

_USAGE = {"type": ["object", "null"]}
ANSWERS = {
    "ChatCompletion": {"type": "object", "required": ["id", "object", "model", "choices"], "properties": {
        "id": {"type": "string"}, "object": {"const": "chat.completion"}, "created": {"type": "integer"},
        "model": {"type": "string"}, "usage": _USAGE,
        "choices": {"type": "array", "items": {"type": "object", "required": ["index", "message"], "properties": {
            "index": {"type": "integer"}, "finish_reason": {"type": ["string", "null"]},
            "message": {"type": "object", "required": ["role"], "properties": {
                "role": {"const": "assistant"}, "content": {"type": ["string", "null"]},
                "tool_calls": {"type": "array"}}}}}}}},
    "Completion": {"type": "object", "required": ["id", "object", "model", "choices"], "properties": {
        "id": {"type": "string"}, "object": {"const": "text_completion"}, "created": {"type": "integer"},
        "model": {"type": "string"}, "usage": _USAGE,
        "choices": {"type": "array", "items": {"type": "object", "required": ["text", "index"], "properties": {
            "text": {"type": "string"}, "index": {"type": "integer"},
            "finish_reason": {"type": ["string", "null"]}}}}}},
    "EmbeddingList": {"type": "object", "required": ["object", "data", "model"], "properties": {
        "object": {"const": "list"}, "model": {"type": "string"}, "usage": _USAGE,
        "data": {"type": "array", "items": {"type": "object", "required": ["index", "embedding"], "properties": {
            "object": {"const": "embedding"}, "index": {"type": "integer"},
            "embedding": {"anyOf": [{"type": "array", "items": {"type": "number"}},
                                    {"type": "string", "description": "base64 of float32s"}]}}}}}},
    "Response": {"type": "object", "required": ["id", "object", "status", "model", "output"], "properties": {
        "id": {"type": "string"}, "object": {"const": "response"}, "status": {"type": "string"},
        "model": {"type": "string"}, "output": {"type": "array"}, "usage": _USAGE}},
    "Message": {"type": "object", "required": ["id", "type", "role", "model", "content"], "properties": {
        "id": {"type": "string"}, "type": {"const": "message"}, "role": {"const": "assistant"},
        "model": {"type": "string"}, "content": {"type": "array", "items": {
            "type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}},
        "stop_reason": {"type": ["string", "null"]}, "usage": _USAGE}},
    "TokenCount": {"type": "object", "required": ["input_tokens"],
                   "properties": {"input_tokens": {"type": "integer", "minimum": 0}}},
    "OpenAIModel": {"type": "object", "required": ["id", "object", "owned_by"], "properties": {
        "id": {"type": "string", "description": "`provider/model` in the list; as asked for one model."},
        "object": {"const": "model"}, "created": {"type": "integer"}, "owned_by": {"type": "string"}}},
    "AnthropicModel": {"type": "object", "required": ["type", "id", "display_name", "created_at"], "properties": {
        "type": {"const": "model"}, "id": {"type": "string"}, "display_name": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"}}},
}


def _event(data: dict) -> dict:
    """One server-sent event whose data is JSON matching `data`."""
    return {"type": "object", "required": ["data"], "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data}}}


# A stream that breaks after it began ends with an error event in the caller's format.
_CHUNK = {"anyOf": [{"type": "object", "required": ["object"], "properties": {
    "object": {"enum": ["chat.completion.chunk", "text_completion"]}, "choices": {"type": "array"},
    "usage": _USAGE}}, OPENAI_ERROR]}
STREAMS = {
    "chat": {"oneOf": [{"type": "object", "required": ["data"], "properties": {"data": {"const": "[DONE]"}}},
                       _event(_CHUNK)],
             "description": "Chunks as the provider sends them, then `data: [DONE]`. The usage chunk (empty "
                            "`choices`) only when stream_options.include_usage was asked for."},
    "responses": {**_event({"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}),
                  "description": "Responses API events (response.created … response.completed)."},
    "messages": {**_event({"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}),
                 "description": "Anthropic's events (message_start … message_stop); an `error` event if the "
                                "stream breaks."},
}


def _answer(description: str, schema_name: str, stream: str | None = None) -> dict:
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}
    if stream:
        content["text/event-stream"] = {"schema": STREAMS[stream]}
    return {"description": description, "headers": {**REQUEST_ID, **RATE_LIMIT_HEADERS}, "content": content}


ATTRIBUTION = [
    {"name": "X-CG-User", "in": "header", "required": False,
     "schema": {"type": "string", "maxLength": MAX_USER},
     "description": "The member's email or your end-user id the call counts for (default: the key's user). "
                    "A key whose attribution overrides are off answers 403 to any X-CG-* header."},
    {"name": "X-CG-Department", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "A department's name or cost-centre code (default: the key's); one the organization does "
                    "not have answers 400."},
    {"name": "X-CG-Tags", "in": "header", "required": False, "schema": {"type": "string"},
     "description": f"Comma-separated `tag` or `key:value`, at most {MAX_CALLER_TAGS} of at most {MAX_TAG} "
                    "characters; the keys source:, status: and usage: are the gateway's own (400)."},
]
ANTHROPIC_HEADERS = [
    {"name": "anthropic-version", "in": "header", "required": False, "schema": {"type": "string"},
     "examples": ["2023-06-01"], "description": "Forwarded to Anthropic (the SDK sends it; default 2023-06-01)."},
    {"name": "anthropic-beta", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "Forwarded to Anthropic."},
]


_HELLO = [{"role": "user", "content": "Say hello."}]
# Calls as the SDKs send them: bare and `provider/model` names, whole and streamed, translated both ways.
EXAMPLES = {
    "ChatCompletionRequest": {
        "plain": {"model": "gpt-4o-mini", "messages": _HELLO, "max_tokens": 50},
        "streamed": {"model": "gpt-4o-mini", "messages": _HELLO, "stream": True,
                     "stream_options": {"include_usage": True}},
        "anthropic-model": {"model": "anthropic/claude-sonnet-4-5", "messages": _HELLO, "max_tokens": 50},
        "anthropic-model-streamed": {"model": "anthropic/claude-sonnet-4-5", "messages": _HELLO, "stream": True}},
    "CompletionRequest": {"plain": {"model": "gpt-4o-mini", "prompt": "Say hello.", "max_tokens": 5},
                          "streamed": {"model": "gpt-4o-mini", "prompt": "Say hello.", "stream": True}},
    "EmbeddingRequest": {"plain": {"model": "text-embedding-3-small", "input": ["hello", "world"]}},
    "ResponseRequest": {"plain": {"model": "gpt-4o-mini", "input": "Say hello."},
                        "streamed": {"model": "gpt-4o-mini", "input": "Say hello.", "stream": True}},
    "MessageRequest": {
        "plain": {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": _HELLO},
        "streamed": {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": _HELLO, "stream": True},
        "openai-model-streamed": {"model": "openai/gpt-4o-mini", "max_tokens": 50, "messages": _HELLO,
                                  "stream": True}},
    "CountTokensRequest": {"plain": {"model": "claude-sonnet-4-5", "messages": _HELLO}},
}


def _call(summary: str, description: str, request: str, answer: str, answer_schema: str, errors: dict,
          stream: str | None = None, headers: list | None = None) -> dict:
    return {"post": {
        "tags": ["OpenAI-compatible" if errors is OPENAI_ERRORS else "Anthropic-compatible"],
        "summary": summary, "description": description, "parameters": [*ATTRIBUTION, *(headers or [])],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{request}"},
            "examples": {name: {"value": value} for name, value in EXAMPLES[request].items()}}}},
        "responses": {"200": _answer(answer, answer_schema, stream), **errors}}}


def _listing(tag: str, summary: str, schema: dict, errors: dict, parameter: str | None = None,
             example: str = "") -> dict:
    operation = {"tags": [tag], "summary": summary, "responses": {
        "200": {"description": summary + ".", "headers": REQUEST_ID,
                "content": {"application/json": {"schema": schema}}},
        **{status: errors[status] for status in LISTING_ERRORS}}}
    if parameter:
        operation["parameters"] = [{"name": parameter, "in": "path", "required": True,
                                    "schema": {"type": "string", "pattern": "^[^/]"},
                                    "examples": {"model": {"value": example}},
                                    "description": "The model's id; it may hold a slash (`openai/gpt-4o`)."}]
        operation["responses"]["404"] = {**errors["404"], "description": "No enabled provider key serves it."}
    return {"get": operation}


_RECORDED = ("Recorded as one usage event after the answer was sent (idempotent by X-CG-Request-Id), "
             "held to the budgets covering it first. ")


def spec() -> dict:
    openai_model = {"$ref": "#/components/schemas/OpenAIModel"}
    anthropic_model = {"$ref": "#/components/schemas/AnthropicModel"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Cost Guardian gateway", "version": "1",
                 "description": "OpenAI- and Anthropic-compatible endpoints: point the official SDKs at "
                                "`<base>/v1` (OpenAI) or `<base>/anthropic` (Anthropic) with a Cost Guardian key "
                                "that has the `gateway` scope. Each call is attributed, held to the "
                                "organization's budgets and rate limits, forwarded with the organization's "
                                "provider key, and recorded. Every answer, errors included, is in the "
                                "provider's own format and carries X-CG-Request-Id. Cost Guardian's own JSON "
                                "API is described at /api/openapi.json."},
        "servers": [{"url": "/"}],
        "tags": [{"name": "OpenAI-compatible", "description": "base_url …/v1"},
                 {"name": "Anthropic-compatible", "description": "base_url …/anthropic"}],
        "security": [{"gatewayKey": []}, {"gatewayApiKey": []}],
        "components": {
            "securitySchemes": {
                "gatewayKey": {"type": "http", "scheme": "bearer",
                               "description": "A Cost Guardian API key with the `gateway` scope (cg_…): the "
                                              "OpenAI SDK's api_key."},
                "gatewayApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                                  "description": "The same key as the Anthropic SDK sends it."}},
            "schemas": {"OpenAIError": OPENAI_ERROR, "AnthropicError": ANTHROPIC_ERROR, **REQUESTS, **ANSWERS},
        },
        "paths": {
            "/v1/chat/completions": _call(
                "Chat completion", _RECORDED + "Any provider's model: Anthropic's are translated both ways, "
                "streams included.", "ChatCompletionRequest", "The completion, or its stream.", "ChatCompletion",
                OPENAI_ERRORS, "chat"),
            "/v1/completions": _call("Legacy completion", _RECORDED, "CompletionRequest",
                                     "The completion, or its stream.", "Completion", OPENAI_ERRORS, "chat"),
            "/v1/embeddings": _call("Embeddings", _RECORDED, "EmbeddingRequest", "The embeddings.",
                                    "EmbeddingList", OPENAI_ERRORS),
            "/v1/responses": _call("Responses API", _RECORDED, "ResponseRequest", "The response, or its events.",
                                   "Response", OPENAI_ERRORS, "responses"),
            "/v1/models": _listing("OpenAI-compatible", "The models the organization's provider keys allow",
                                   {"type": "object", "required": ["object", "data"], "properties": {
                                       "object": {"const": "list"},
                                       "data": {"type": "array", "items": openai_model}}}, OPENAI_ERRORS),
            "/v1/models/{model}": _listing("OpenAI-compatible", "One model", openai_model, OPENAI_ERRORS, "model",
                                           "openai/gpt-4o"),
            "/anthropic/v1/messages": _call(
                "Message", _RECORDED + "Any provider's model: OpenAI-style providers' are translated both ways, "
                "streams included.", "MessageRequest", "The message, or its stream.", "Message", ANTHROPIC_ERRORS,
                "messages", ANTHROPIC_HEADERS),
            "/anthropic/v1/messages/count_tokens": _call(
                "Count a message's tokens", "Forwarded to Anthropic; neither held to budgets nor recorded.",
                "CountTokensRequest", "The count.", "TokenCount", ANTHROPIC_ERRORS, None, ANTHROPIC_HEADERS),
            "/anthropic/v1/models": _listing(
                "Anthropic-compatible", "The Anthropic models the organization's provider keys allow",
                {"type": "object", "required": ["data", "has_more"], "properties": {
                    "data": {"type": "array", "items": anthropic_model}, "has_more": {"type": "boolean"},
                    "first_id": {"type": ["string", "null"]}, "last_id": {"type": ["string", "null"]}}},
                ANTHROPIC_ERRORS),
            "/anthropic/v1/models/{model_id}": _listing("Anthropic-compatible", "One model", anthropic_model,
                                                        ANTHROPIC_ERRORS, "model_id", "claude-sonnet-4-5-20250929"),
        },
    }

"""A local fake of the LLM providers' HTTP APIs: a real HTTP server on
127.0.0.1 (Werkzeug, in a thread) that speaks each provider's wire format
and authentication the way the providers document them, so that the
official SDKs work against it unchanged:

    openai.OpenAI(base_url=fake.url + "/v1", api_key=fake.openai_key).models.list()
    anthropic.Anthropic(base_url=fake.url, api_key=fake.anthropic_key).models.list()

What it speaks:
- OpenAI (and the OpenAI-compatible providers: Mistral, Groq, DeepSeek, xAI,
  OpenRouter, vLLM …): `GET /v1/models`, `Authorization: Bearer`; OpenRouter's
  `GET /v1/key`.
- Anthropic: `GET /v1/models` with `anthropic-version` and the key in
  `x-api-key` (or `Authorization: Bearer`, as newer SDKs send it),
  paginated (`limit`, `after_id`, `before_id`; `has_more`, `first_id`, `last_id`).
- Google Gemini: `GET /v1beta/models` with `x-goog-api-key` (or `?key=`),
  paginated (`pageSize`, `pageToken`; `nextPageToken`).
- Azure OpenAI: `GET /openai/models?api-version=…` with `api-key`.

The calls the gateway forwards (tests/fakes/llm_generation.py, mixed in),
non-streaming and streaming (real SSE, usage where each provider puts it):
- OpenAI `POST /v1/chat/completions`, `/v1/completions` (the final usage-only
  chunk when `stream_options.include_usage`; with `usage_on_last_choice` the
  usage rides on the last chunk that still carries `choices`, as some
  OpenAI-compatible servers send it), `/v1/embeddings` (floats or base64, as
  the SDK asks), `/v1/responses` (usage in `response.completed`).
- Anthropic `POST /v1/messages` (usage in `message_start`, output tokens
  CUMULATIVE in each `message_delta`; `anthropic_usage_deltas` sends several)
  and `/v1/messages/count_tokens`.
- Google Gemini's OpenAI-compatible API: `POST /v1beta/openai/chat/completions`
  and `/v1beta/openai/embeddings` with the key as a Bearer token (errors in
  Google's shape, wrapped in a list as that API sends them).
- Tool calls: with `tool_arguments` set, a request that offers `tools` and
  holds no tool result yet is answered with a call to its first tool (OpenAI
  `tool_calls`, Anthropic `tool_use`, streamed as argument fragments); a tool
  result that answers no call of the turn before is refused with a 400, as
  the providers do.
- Scripted streams: with `stream_script` set, a streamed chat completion
  (OpenAI, Gemini, Azure …) sends exactly those chunks, in order, and then
  ends the body normally: a dict is one chunk (id, object, created and model
  filled in when it has none; its JSON not ASCII-escaped, as providers send
  UTF-8), a string is one event's data as is (e.g. "[DONE]"). For what the
  generated answer never does: a stream cut short without finish_reason or
  [DONE], Gemini's tool calls without `index`, a `refusal` delta …
  `messages_script` does the same for a streamed Anthropic message: a dict
  is one event, named by its `type`, a string one event's data as is (e.g. a
  stream that ends without `message_stop`).
- Azure OpenAI `POST /openai/deployments/<deployment>/<chat/completions|
  completions|embeddings>?api-version=…` (the model a deployment runs from
  `azure_deployments`).
The answer is `reply`, one "token" per word; prompt tokens are a quarter of
the prompt's characters; `cache_read_tokens` / `cache_write_tokens` add
cached prompt tokens the way each provider reports them (OpenAI: inside
`prompt_tokens`; Anthropic: beside `input_tokens`). `usage_log` keeps each
answer's usage in genai-prices terms (input counts every prompt token).

A wrong key gets each provider's own refusal (status and body shape: OpenAI
401 `invalid_api_key`, Anthropic 401 `authentication_error`, Gemini 400
`API_KEY_INVALID`, Azure 401 `{"error": {"code": "401"}}`). Told to fail:
`fail_with` makes every request answer a status (in the route's own error
shape), `fail_next` the next requests one status each (a 429 carries
`retry-after: <retry_after>`); `delay` stalls each answer before its headers,
`chunk_delay` trickles a stream's events, `disconnect_after` drops the
connection after that many events. `requests` records what arrived
(method, path, query, headers and the JSON body).

Extending it: register another handler with `route(method, path, wire)`;
`authorize(request, wire)` and `error(wire, status, message)` give the same
auth and error shapes to every route.
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field

from werkzeug.wrappers import Request, Response

from tests.fakes.llm_generation import ANTHROPIC, DEFAULT_REPLY, OPENAI, Generation
from tests.fakes.server import LocalServer

GEMINI, AZURE = "gemini", "azure"
GEMINI_OPENAI = "gemini-openai"  # Gemini's OpenAI-compatible API: OpenAI's formats, Google's key and errors

OPENAI_KEY = "sk-fake-openai-3f9c2b7d1e5a8c4f7a21"
ANTHROPIC_KEY = "sk-ant-fake-6d2e8b1f4c9a7e3b5d42"
GEMINI_KEY = "AIzaFakeGemini9c1e5b7d3f2a8e6c4b63"
AZURE_KEY = "fakeazure0c7e2b9f5d1a3e8c6b4d7f84"

AZURE_API_VERSIONS = {"2024-02-01", "2024-06-01", "2024-10-21", "2025-01-01-preview", "2025-04-01-preview"}

CREATED = 1_715_367_049  # a fixed "created" time for every model


def _default_models() -> dict[str, list[str]]:
    return {
        OPENAI: ["gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-mini", "gpt-4.1", "o3-mini", "text-embedding-3-small"],
        ANTHROPIC: ["claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "claude-3-5-haiku-20241022",
                    "claude-haiku-4-5-20251001"],
        GEMINI: ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.0-flash", "text-embedding-004"],
        AZURE: ["gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "gpt-4.1-2025-04-14", "text-embedding-3-large"],
    }


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    headers: dict
    body: dict | None = None  # the JSON body, when there was one

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass
class FakeLLMUpstream(LocalServer, Generation):
    thread_name = "fake-llm-upstream"
    openai_key: str = OPENAI_KEY
    anthropic_key: str = ANTHROPIC_KEY
    gemini_key: str = GEMINI_KEY
    azure_key: str = AZURE_KEY
    models: dict[str, list[str]] = field(default_factory=_default_models)
    fail_with: int | None = None  # every request answers this status, in its route's error shape
    fail_next: list[int] = field(default_factory=list)  # the next requests answer these statuses, one each
    retry_after: str = "1"  # the retry-after of a 429
    delay: float = 0.0  # seconds before each answer (a stalled provider)
    chunk_delay: float = 0.0  # seconds between a stream's events (a provider trickling tokens)
    disconnect_after: int | None = None  # drop a stream's connection after this many events
    hold_after: int | None = None  # send this many of a stream's events, then wait for `release`
    release: threading.Event = field(default_factory=threading.Event)
    hold_expired: bool = False  # a hold ended by its timeout, not by `release`
    reply: str = DEFAULT_REPLY
    cache_read_tokens: int = 0  # prompt tokens read from the provider's cache, per call
    cache_write_tokens: int = 0  # prompt tokens written to it (Anthropic reports these)
    usage_on_last_choice: bool = False  # OpenAI streams: usage on the last chunk with choices, no usage-only chunk
    stream_usage: bool = True  # False: an OpenAI-compatible server that never reports usage in a stream
    anthropic_usage_deltas: int = 1  # message_delta events, each with the CUMULATIVE output tokens
    tool_arguments: dict | None = None  # answer a request offering tools with a call to its first tool
    stream_script: list | None = None  # streamed chat completions: send these chunks instead of the answer
    messages_script: list | None = None  # streamed Anthropic messages: send these events instead of the answer
    azure_deployments: dict[str, str] = field(default_factory=dict)  # deployment -> model it runs
    requests: list[RecordedRequest] = field(default_factory=list)
    usage_log: list[dict] = field(default_factory=list)  # each answer's usage: input (all prompt), cache_read ...
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: object = None
    _thread: threading.Thread | None = None

    def __post_init__(self):
        self._routes: dict[tuple[str, str], tuple[str, object]] = {}
        self.route("GET", "/v1/models", OPENAI)(self._openai_models)
        self.route("GET", "/v1/key", OPENAI)(self._openrouter_key)
        self.route("GET", "/v1beta/models", GEMINI)(self._gemini_models)
        self.route("GET", "/openai/models", AZURE)(self._azure_models)
        self.route("POST", "/v1/chat/completions", OPENAI)(self._chat_completions)
        self.route("POST", "/v1/completions", OPENAI)(self._completions)
        self.route("POST", "/v1/embeddings", OPENAI)(self._embeddings)
        self.route("POST", "/v1/responses", OPENAI)(self._responses)
        self.route("POST", "/v1/messages", ANTHROPIC)(self._messages)
        self.route("POST", "/v1/messages/count_tokens", ANTHROPIC)(self._count_tokens)
        self.route("POST", "/v1beta/openai/chat/completions", GEMINI_OPENAI)(self._chat_completions)
        self.route("POST", "/v1beta/openai/embeddings", GEMINI_OPENAI)(self._embeddings)

    # --- the server ------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.address

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.usage_log.clear()
            self.fail_with, self.delay = None, 0.0
            self.fail_next, self.retry_after = [], "1"
            self.chunk_delay, self.disconnect_after, self.hold_after = 0.0, None, None
            self.release, self.hold_expired = threading.Event(), False
            self.reply, self.cache_read_tokens, self.cache_write_tokens = DEFAULT_REPLY, 0, 0
            self.usage_on_last_choice, self.stream_usage, self.anthropic_usage_deltas = False, True, 1
            self.azure_deployments, self.tool_arguments = {}, None
            self.stream_script, self.messages_script = None, None
            self.models = _default_models()
            self.openai_key, self.anthropic_key = OPENAI_KEY, ANTHROPIC_KEY
            self.gemini_key, self.azure_key = GEMINI_KEY, AZURE_KEY

    def provider_base_urls(self) -> dict[str, str]:
        """CG_PROVIDER_BASE_URLS that send every known provider here (the
        base URLs their SDKs take: OpenAI-style ones end in /v1)."""
        v1 = self.url + "/v1"
        return {"openai": v1, "anthropic": self.url, "google": self.url, "mistral": v1, "groq": v1,
                "deepseek": v1, "xai": v1, "openrouter": v1}

    def route(self, method: str, path: str, wire: str):
        def register(handler):
            self._routes[(method, path)] = (wire, handler)
            return handler
        return register

    @Request.application
    def _app(self, request: Request) -> Response:
        body = request.get_json(silent=True) if request.method == "POST" else None
        with self.lock:
            self.requests.append(RecordedRequest(request.method, request.path, dict(request.args),
                                                 dict(request.headers), body))
            failing = self.fail_next.pop(0) if self.fail_next else self.fail_with
        if self.delay:
            time.sleep(self.delay)
        wire, handler = self._routes.get((request.method, request.path), (None, None))
        azure = _AZURE_DEPLOYMENT.fullmatch(request.path) if request.method == "POST" else None
        if azure is not None and ("POST", "/v1/" + azure["operation"]) in self._routes:
            wire, handler = AZURE, self._routes[("POST", "/v1/" + azure["operation"])][1]
            request.environ["fake.azure_deployment"] = azure["deployment"]
        if handler is None:
            return self.error(OPENAI, 404, f"Unknown request URL: {request.method} {request.path}.",
                              kind="invalid_request_error", code="unknown_url")
        if (request.method, request.path) == ("GET", "/v1/models") and _speaks_anthropic(request):
            wire, handler = ANTHROPIC, self._anthropic_models  # one path, two providers: told apart by auth
        if failing:
            return self.error(wire, failing, "The server had an error while processing your request."
                              if failing >= 500 else f"Failing as told (HTTP {failing}).")
        refusal = self.authorize(request, wire)
        if refusal is not None:
            return refusal
        return handler(request)

    def _chat_completions(self, request: Request) -> Response:
        body = request.get_json(silent=True)
        script = self.stream_script
        if script is None or not isinstance(body, dict) or not body.get("stream"):
            return super()._chat_completions(request)
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": self._model(request, body)}
        return self._stream([(None, item if isinstance(item, str) else json.dumps({**base, **item},
                                                                                  ensure_ascii=False))
                             for item in script])

    def _messages(self, request: Request) -> Response:
        body = request.get_json(silent=True)
        script = self.messages_script
        if script is None or not isinstance(body, dict) or not body.get("stream"):
            return super()._messages(request)
        return self._stream([(item.get("type"), item) if isinstance(item, dict) else (None, item)
                             for item in script])

    # --- auth and errors, in each provider's own shape -----------------------------

    def authorize(self, request: Request, wire: str) -> Response | None:
        if wire == OPENAI:
            given = request.headers.get("Authorization", "")
            if not given.startswith("Bearer ") or not given[7:].strip():
                return self.error(OPENAI, 401, "You didn't provide an API key. You need to provide your API key in "
                                  "an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
            key = given[7:].strip()
            if key != self.openai_key:
                return self.error(OPENAI, 401, f"Incorrect API key provided: {_masked(key)}. You can find your API "
                                  "key at https://platform.openai.com/account/api-keys.", code="invalid_api_key")
        elif wire == ANTHROPIC:
            if not request.headers.get("anthropic-version"):
                return self.error(ANTHROPIC, 400, "anthropic-version: header is required",
                                  kind="invalid_request_error")
            # Anthropic takes its API keys as x-api-key, and (newer SDKs) as a bearer token.
            key = request.headers.get("x-api-key") or request.headers.get("Authorization", "").removeprefix("Bearer ")
            if not key:
                return self.error(ANTHROPIC, 401, "x-api-key header is required", kind="authentication_error")
            if key != self.anthropic_key:
                return self.error(ANTHROPIC, 401, "invalid x-api-key", kind="authentication_error")
        elif wire == GEMINI:
            key = request.headers.get("x-goog-api-key") or request.args.get("key")
            if not key:
                return self.error(GEMINI, 403, "Method doesn't allow unregistered callers (callers without "
                                  "established identity). Please use API Key or other form of API consumer "
                                  "identity to call this API.", kind="PERMISSION_DENIED")
            if key != self.gemini_key:
                return self.error(GEMINI, 400, "API key not valid. Please pass a valid API key.",
                                  kind="INVALID_ARGUMENT", code="API_KEY_INVALID")
        elif wire == GEMINI_OPENAI:
            given = request.headers.get("Authorization", "")
            if not given.startswith("Bearer ") or given[7:].strip() != self.gemini_key:
                return self.error(GEMINI_OPENAI, 400 if given.startswith("Bearer ") else 401,
                                  "API key not valid. Please pass a valid API key.", kind="INVALID_ARGUMENT")
        elif wire == AZURE:
            if request.args.get("api-version") not in AZURE_API_VERSIONS:
                return self.error(AZURE, 404, "Resource not found", code="404")
            key = request.headers.get("api-key") or request.headers.get("Authorization", "").removeprefix("Bearer ")
            if key != self.azure_key:
                return self.error(AZURE, 401, "Access denied due to invalid subscription key or wrong API endpoint. "
                                  "Make sure to provide a valid key for an active subscription and use a correct "
                                  "regional API endpoint for your resource.", code="401")
        return None

    def error(self, wire: str, status: int, message: str, kind: str | None = None, code: str | None = None) -> Response:
        if wire == ANTHROPIC:
            kind = kind or {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                            429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
            body = {"type": "error", "error": {"type": kind, "message": message},
                    "request_id": f"req_{uuid.uuid4().hex[:24]}"}
        elif wire == GEMINI_OPENAI:
            body = [{"error": {"code": status, "message": message, "status": kind or "INTERNAL"}}]
        elif wire == GEMINI:
            body = {"error": {"code": status, "message": message, "status": kind or "INTERNAL"}}
            if code:
                body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": code,
                                             "domain": "googleapis.com",
                                             "metadata": {"service": "generativelanguage.googleapis.com"}}]
        elif wire == AZURE:
            body = {"error": {"code": code or str(status), "message": message}}
        else:
            body = {"error": {"message": message, "type": kind or ("invalid_request_error" if status < 500
                                                                   else "server_error"),
                              "param": None, "code": code}}
        headers = {"x-request-id": uuid.uuid4().hex}
        if status == 429:
            headers["retry-after"] = self.retry_after
        return _json(body, status, headers)

    # --- the models lists --------------------------------------------------------

    def _openai_models(self, request: Request) -> Response:
        return _json({"object": "list", "data": [
            {"id": m, "object": "model", "created": CREATED, "owned_by": "openai" if m.startswith(("gpt", "o", "text"))
             else "system"} for m in self.models[OPENAI]]})

    def _anthropic_models(self, request: Request) -> Response:
        ids = list(self.models[ANTHROPIC])
        try:
            limit = min(max(int(request.args.get("limit", 20)), 1), 1000)
        except ValueError:
            return self.error(ANTHROPIC, 400, "limit: Input should be a valid integer", kind="invalid_request_error")
        after, before = request.args.get("after_id"), request.args.get("before_id")
        if after in ids:
            ids = ids[ids.index(after) + 1:]
        elif before in ids:
            ids = ids[:ids.index(before)][-limit:]
        page = ids[:limit]
        data = [{"type": "model", "id": m, "display_name": _display(m), "created_at": "2025-05-14T00:00:00Z",
                 "lifecycle": "active", "deprecated_at": None, "retires_at": None,
                 "max_input_tokens": 200_000, "max_tokens": 64_000} for m in page]
        return _json({"data": data, "has_more": len(ids) > len(page), "first_id": page[0] if page else None,
                      "last_id": page[-1] if page else None})

    def _gemini_models(self, request: Request) -> Response:
        ids = self.models[GEMINI]
        try:
            size = min(max(int(request.args.get("pageSize", 50)), 1), 1000)
            start = int(request.args.get("pageToken") or 0)
        except ValueError:
            return self.error(GEMINI, 400, "Invalid page token or size.", kind="INVALID_ARGUMENT")
        page = ids[start:start + size]
        body = {"models": [{"name": f"models/{m}", "version": "001", "displayName": _display(m),
                            "description": f"Fake {m}", "inputTokenLimit": 1_048_576, "outputTokenLimit": 65_536,
                            "supportedGenerationMethods": ["embedContent"] if "embedding" in m
                            else ["generateContent", "countTokens"]} for m in page]}
        if start + size < len(ids):
            body["nextPageToken"] = str(start + size)
        return _json(body)

    def _azure_models(self, request: Request) -> Response:
        return _json({"object": "list", "data": [
            {"id": m, "object": "model", "status": "succeeded", "created_at": CREATED,
             "capabilities": {"chat_completion": "embedding" not in m, "completion": False,
                              "embeddings": "embedding" in m, "fine_tune": False, "inference": True},
             "lifecycle_status": "generally-available",
             "deprecation": {"inference": CREATED + 400 * 86400}} for m in self.models[AZURE]]})

    def _openrouter_key(self, request: Request) -> Response:
        return _json({"data": {"label": _masked(request.headers["Authorization"][7:]), "usage": 0, "limit": None,
                               "is_free_tier": False, "rate_limit": {"requests": 20, "interval": "10s"}}})


_AZURE_DEPLOYMENT = re.compile(r"/openai/deployments/(?P<deployment>[^/]+)/(?P<operation>chat/completions|completions|"
                               r"embeddings)")


def _speaks_anthropic(request: Request) -> bool:
    return "x-api-key" in request.headers or "anthropic-version" in request.headers


def _masked(key: str) -> str:
    return key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 8 else "*" * len(key)


def _display(model: str) -> str:
    return " ".join(part.capitalize() for part in model.split("-"))


def _json(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status, headers=headers or {}, mimetype="application/json")

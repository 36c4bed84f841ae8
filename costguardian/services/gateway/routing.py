"""Which provider, credential and upstream URL serve a call.

The caller names a model either as `provider/model` (`openai/gpt-4o`,
`azure/gpt-4o`, `anthropic/claude-sonnet-4-5`; any provider of the vault's
catalogue, or a name the usage catalogue knows for it, such as `x-ai` or
`gemini`) or bare (`gpt-4o`). A bare model goes to the first of these that
has an enabled credential admitting it (vault.credential_for):
1. the provider the pricing catalogue (genai-prices) knows the model from;
2. the providers whose credentials list the model (vault.allowed_models);
3. for a model the catalogue does not know, the endpoint's defaults:
   openai, azure, then any OpenAI-compatible server for the OpenAI-style
   endpoints; anthropic for /anthropic/….
A `provider/model` name whose provider has no credential for it is tried
as a whole among the models credentials list (OpenRouter and vLLM models
are named `org/model` too), never sent to a default provider.

A route also says where the provider is called (`Route.endpoint`) and
whether the call is translated (`Route.translation`, services.gateway.
translate): chat completions to an Anthropic model go to Anthropic's
/v1/messages, and /anthropic/v1/messages to an OpenAI-wire provider (OpenAI,
Azure, Mistral, Groq, Gemini …) goes to its /chat/completions. Gemini is
called through Google's OpenAI-compatible API ({base}/v1beta/openai/, Bearer
key) for chat completions and embeddings. Any other pairing (an Anthropic
model through /v1/embeddings, count_tokens for an OpenAI model) is a 400
naming what would work.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from urllib.parse import quote

from genai_prices.data_snapshot import get_snapshot

from costguardian.services.gateway import providers, vault
from costguardian.services.gateway.providers import ANTHROPIC, AZURE, GEMINI, OPENAI
from costguardian.services.usage import catalog


@dataclass(frozen=True)
class Endpoint:
    name: str  # as the request log names it
    wire: str  # the format the caller speaks: providers.OPENAI or providers.ANTHROPIC
    path: str  # after the provider's base URL (OpenAI-style base URLs end in /v1; Anthropic's do not)
    kind: str  # chat, completions, embeddings, responses, messages, count_tokens
    records: bool = True  # a call that costs money: admitted, recorded as a usage event


ENDPOINTS = {e.name: e for e in (
    Endpoint("chat.completions", OPENAI, "/chat/completions", "chat"),
    Endpoint("completions", OPENAI, "/completions", "completions"),
    Endpoint("embeddings", OPENAI, "/embeddings", "embeddings"),
    Endpoint("responses", OPENAI, "/responses", "responses"),
    Endpoint("messages", ANTHROPIC, "/v1/messages", "messages"),
    Endpoint("messages.count_tokens", ANTHROPIC, "/v1/messages/count_tokens", "count_tokens", records=False),
)}

# Translations (services.gateway.translate): the caller's format → the provider's.
OPENAI_TO_ANTHROPIC, ANTHROPIC_TO_OPENAI = "openai-to-anthropic", "anthropic-to-openai"
GEMINI_OPENAI_PATH = "/v1beta/openai"  # Google's OpenAI-compatible API, under the Gemini base URL
GEMINI_KINDS = ("chat", "embeddings")  # what that API serves of ours
DEFAULTS = {OPENAI: ("openai", "azure", "openai_compatible"), ANTHROPIC: ("anthropic",)}
ENDPOINT_FOR = {ANTHROPIC: "/anthropic/v1/messages with the Anthropic SDK (base_url …/anthropic)",
                OPENAI: "/v1/chat/completions with the OpenAI SDK (base_url …/v1)"}


class RouteError(Exception):
    """No way to serve the call: `status` and `message` for the caller,
    `code` OpenAI's error code."""

    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass(frozen=True)
class Route:
    credential: vault.ResolvedCredential
    model: str  # as the upstream is asked
    pricing_provider: str  # as usage events name the provider
    pricing_model: str  # the model events fall back to (Azure: the model the deployment runs)
    endpoint: Endpoint | None = None  # where the provider is called (set by resolve)
    translation: str | None = None  # OPENAI_TO_ANTHROPIC, ANTHROPIC_TO_OPENAI or None

    @property
    def provider(self) -> providers.Provider:
        return self.credential.provider


def resolve(org, endpoint: Endpoint, requested) -> Route:
    if not isinstance(requested, str) or not requested.strip():
        raise RouteError(400, "you must provide a model parameter", "missing_model")
    requested = requested.strip()
    prefix, _, rest = requested.partition("/")
    named = _provider_named(prefix) if rest else None
    route = _route(org, named, rest) if named else None
    if route is None:  # a name like OpenRouter's `openai/gpt-4o`, or a model of no known provider
        route = _bare(org, endpoint, requested, defaults=named is None)
    if route is None:
        which = providers.PROVIDERS[named].label if named else "provider"
        raise RouteError(404, f"The model `{requested}` does not exist or you do not have access to it: no enabled "
                              f"{which} key of this organization serves it (Cost Guardian → Providers).",
                         "model_not_found")
    upstream, translation = _upstream_endpoint(endpoint, route.provider)
    if upstream is None:
        raise RouteError(400, _unsupported(requested, endpoint, route.provider), "unsupported_model")
    return replace(route, endpoint=upstream, translation=translation)


def _upstream_endpoint(endpoint: Endpoint, provider: providers.Provider) -> tuple[Endpoint | None, str | None]:
    """Where a provider serves a call to `endpoint`, and the translation on the way (None: same format)."""
    wire = OPENAI if provider.wire in (OPENAI, AZURE, GEMINI) else ANTHROPIC  # what the provider's API speaks
    if provider.wire == GEMINI and endpoint.wire == OPENAI and endpoint.kind not in GEMINI_KINDS:
        return None, None
    if wire == endpoint.wire:
        return endpoint, None
    if endpoint.kind == "chat":
        return ENDPOINTS["messages"], OPENAI_TO_ANTHROPIC
    if endpoint.kind == "messages":
        return ENDPOINTS["chat.completions"], ANTHROPIC_TO_OPENAI
    return None, None


def _unsupported(requested: str, endpoint: Endpoint, provider: providers.Provider) -> str:
    if endpoint.kind == "count_tokens":
        return (f"count_tokens counts with Anthropic's tokenizer; the model `{requested}` is served by "
                f"{provider.label}. Count its tokens with that provider's tools, or call it through "
                "/anthropic/v1/messages and read `usage`.")
    return (f"The model `{requested}` is served by {provider.label}, whose API has no equivalent of "
            f"/{endpoint.name.replace('.', '/')}: call it through " + (
                ENDPOINT_FOR[OPENAI] if endpoint.wire == OPENAI else ENDPOINT_FOR[ANTHROPIC]) + ".")


def _route(org, provider_key: str, model: str) -> Route | None:
    credential = vault.credential_for(org, provider_key, model)
    if credential is None:
        return None
    pricing_provider = catalog.normalize_provider(credential.provider.pricing_provider)
    pricing_model = credential.deployments.get(credential.deployment, model) if credential.deployment else model
    return Route(credential, model, pricing_provider, pricing_model)


def _bare(org, endpoint: Endpoint, model: str, defaults: bool = True) -> Route | None:
    tried = set()
    for candidate in _candidates(org, endpoint, model, defaults):
        if candidate in tried:
            continue
        tried.add(candidate)
        route = _route(org, candidate, model)
        if route is not None:
            return route
    return None


def _candidates(org, endpoint: Endpoint, model: str, defaults: bool):
    known = _catalogue_providers(model)
    yield from known
    lowered = model.lower()
    yield from (pair.provider for pair in vault.allowed_models(org) if pair.model.lower() == lowered)
    if defaults and not known:  # a model the catalogue places (a Mistral model) never falls back to OpenAI
        yield from DEFAULTS[endpoint.wire]


def _provider_named(prefix: str) -> str | None:
    """The vault's provider key for a `provider/` prefix, or None."""
    key = prefix.strip().lower()
    for spelling in (key, key.replace("-", "_")):
        if spelling in providers.PROVIDERS:
            return spelling
    normalised = catalog.normalize_provider(key)
    return next((p.key for p in providers.PROVIDERS.values()
                 if not p.custom_base_url and catalog.normalize_provider(p.pricing_provider) == normalised), None)


_lock = threading.Lock()
_known: dict[str, tuple[str, ...]] = {}


def _catalogue_providers(model: str) -> tuple[str, ...]:
    """The vault providers (with a fixed base URL) for the pricing
    catalogue's provider of this model, e.g. gpt-4o → (openai,)."""
    try:
        return _known[model]
    except KeyError:
        pass
    try:
        provider, _ = get_snapshot().find_provider_model(model, None, None, None)
        found = tuple(p.key for p in providers.PROVIDERS.values()
                      if not p.custom_base_url and catalog.normalize_provider(p.pricing_provider) == provider.id)
    except LookupError:
        found = ()
    with _lock:
        if len(_known) > 10_000:
            _known.clear()
        _known[model] = found
    return found


def allowed_model(org, model_id: str) -> vault.AllowedModel | None:
    """The model a retrieve (GET …/models/{id}) describes, when the organization's
    enabled credentials allow it: `provider/model` (a catalogue spelling of the
    provider too) or a bare id of any provider."""
    lowered = (model_id or "").strip().lower()
    prefix, _, rest = lowered.partition("/")
    named = _provider_named(prefix) if rest else None
    for pair in vault.allowed_models(org):
        if pair.model.lower() == lowered or (named == pair.provider and pair.model.lower() == rest):
            return pair
    return None


def upstream_url(route: Route, endpoint: Endpoint | None = None) -> str:
    """Where the call goes: the credential's base URL and the path of the
    endpoint the provider is called at (Azure: the deployment's path and the
    credential's api-version; Gemini: its OpenAI-compatible API)."""
    endpoint = route.endpoint or endpoint
    credential = route.credential
    if credential.provider.is_azure:
        version = quote(credential.api_version or providers.AZURE_DEFAULT_API_VERSION)
        if endpoint.kind == "responses":
            return f"{credential.base_url}/openai/responses?api-version={version}"
        return (f"{credential.base_url}/openai/deployments/{quote(credential.deployment, safe='')}"
                f"{endpoint.path}?api-version={version}")
    if credential.provider.wire == GEMINI:
        return credential.base_url + GEMINI_OPENAI_PATH + endpoint.path
    return credential.base_url + endpoint.path


def upstream_headers(route: Route) -> dict[str, str]:
    """The provider's authentication (Gemini's OpenAI-compatible API takes its key as a Bearer token)."""
    if route.provider.wire == GEMINI:
        return {"Authorization": f"Bearer {route.credential.secret}"}
    return route.credential.headers()


def upstream_model(route: Route, endpoint: Endpoint | None = None) -> str:
    """The model the upstream is asked for (an Azure Responses call names the deployment)."""
    endpoint = route.endpoint or endpoint
    if route.provider.is_azure and endpoint.kind == "responses":
        return route.credential.deployment
    return route.model

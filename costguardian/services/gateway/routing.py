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

Translation between wire formats is not done (yet): a model served by a
provider that does not speak the caller's format (Anthropic or Gemini
through the OpenAI-style endpoints) is refused with 400 naming the endpoint
to use.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from urllib.parse import quote

from genai_prices.data_snapshot import get_snapshot

from costguardian.services.gateway import providers, vault
from costguardian.services.gateway.providers import ANTHROPIC, AZURE, OPENAI
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

SPEAKS = {OPENAI: (OPENAI, AZURE), ANTHROPIC: (ANTHROPIC,)}  # endpoint wire -> provider wires it can forward to
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
    if route.provider.wire not in SPEAKS[endpoint.wire]:
        other = ANTHROPIC if route.provider.wire == ANTHROPIC else None
        hint = (f" Call it through {ENDPOINT_FOR[other]}." if other else "")
        raise RouteError(400, f"The model `{requested}` is served by {route.provider.label}, which does not speak "
                              f"the {'OpenAI' if endpoint.wire == OPENAI else 'Anthropic'} API, and the gateway does "
                              f"not translate between the two yet.{hint}", "unsupported_model")
    return route


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


def upstream_url(route: Route, endpoint: Endpoint) -> str:
    """Where the call goes: the credential's base URL and the endpoint's path
    (Azure: the deployment's path and the credential's api-version)."""
    credential = route.credential
    if credential.provider.is_azure:
        version = quote(credential.api_version or providers.AZURE_DEFAULT_API_VERSION)
        if endpoint.kind == "responses":
            return f"{credential.base_url}/openai/responses?api-version={version}"
        return (f"{credential.base_url}/openai/deployments/{quote(credential.deployment, safe='')}"
                f"{endpoint.path}?api-version={version}")
    return credential.base_url + endpoint.path


def upstream_model(route: Route, endpoint: Endpoint) -> str:
    """The model the upstream is asked for (an Azure Responses call names the deployment)."""
    if route.provider.is_azure and endpoint.kind == "responses":
        return route.credential.deployment
    return route.model

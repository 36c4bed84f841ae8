"""Provider and model names: normalised so the same model is one row in every
report, and matched to the genai-prices catalog.

"Gemini", "vertex_ai" and "google" are one provider; "models/gemini-2.0-flash",
"gpt-4o-2024-08-06" and "openai/gpt-4o" become the catalog's own model ids
(gemini-2.0-flash, gpt-4o). A model the catalog does not know keeps its cleaned
name (lower case, no `models/` or provider prefix). An organization can name
its own aliases (an Azure deployment "prod-4o" → gpt-4o) with ModelAlias.
"""
from __future__ import annotations

import re
import threading

from genai_prices import types as gp_types
from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

# Names people and SDKs use for providers, beyond the catalog's own matching.
PROVIDER_ALIASES = {
    "gemini": "google", "vertex": "google", "vertex_ai": "google", "vertexai": "google",
    "google-vertex": "google", "google_genai": "google", "googleai": "google",
    "bedrock": "aws", "amazon": "aws", "aws-bedrock": "aws", "amazon-bedrock": "aws",
    "azure_openai": "azure", "azure-openai": "azure", "azureopenai": "azure",
    "xai": "x-ai", "grok": "x-ai",
    "claude": "anthropic",
    "mistralai": "mistral", "mistral-ai": "mistral",
    "together_ai": "together", "togetherai": "together",
    "fireworks_ai": "fireworks", "fireworks-ai": "fireworks",
    "meta-llama": "meta", "moonshot": "moonshotai",
}

_NAME = re.compile(r"[^a-z0-9._:/@+-]+")
_lock = threading.Lock()
_provider_cache: dict[str, str] = {}
_model_cache: dict[tuple[str, str], tuple[str, gp_types.ModelInfo | None]] = {}
_CACHE_LIMIT = 20_000


def normalize_provider(raw: str) -> str:
    """The catalog's provider id when it knows the provider, else the cleaned name."""
    cleaned = _NAME.sub("-", (raw or "").strip().lower()).strip("-")
    try:
        return _provider_cache[cleaned]
    except KeyError:
        pass
    name = PROVIDER_ALIASES.get(cleaned, cleaned)
    provider = find_provider_by_id(get_snapshot().providers, name) if name else None
    result = provider.id if provider is not None else name[:64]  # lower-casing can lengthen a name
    with _lock:
        if len(_provider_cache) >= _CACHE_LIMIT:
            _provider_cache.clear()
        _provider_cache[cleaned] = result
    return result


def _lower_name(raw: str) -> str:
    model = (raw or "").strip().lower()
    if model.startswith("models/"):
        model = model[len("models/"):]
    return model


def clean_model(provider: str, raw: str) -> str:
    model = _lower_name(raw)
    for prefix in (provider + "/", provider + ":"):
        if model.startswith(prefix):
            model = model[len(prefix):]
    return model[:128]


def _provider(provider_id: str) -> gp_types.Provider | None:
    return next((p for p in get_snapshot().providers if p.id == provider_id), None)


def _by_id(provider: gp_types.Provider | None, model: str) -> gp_types.ModelInfo | None:
    return next((m for m in provider.models if m.id.lower() == model), None) if provider else None


def _find(provider_id: str, model: str) -> gp_types.ModelInfo | None:
    """The catalog's model for a name: its own id first (some catalog ids do
    not match their own match rules, and a stored name must resolve the same
    in every process), then the catalog's matching, then an id of a provider
    it falls back to (Azure → OpenAI …)."""
    provider = _provider(provider_id)
    info = _by_id(provider, model)
    if info is not None:
        return info
    try:
        return get_snapshot().find_provider_model(model, None, provider_id, None)[1]
    except LookupError:
        pass
    for fallback in (provider.fallback_model_providers or []) if provider else []:
        info = _by_id(_provider(fallback), model)
        if info is not None:
            return info
    return None


def is_own_model(provider_id: str, info: gp_types.ModelInfo) -> bool:
    """Whether the provider lists the model itself (not through a fallback
    provider, whose batch and service-tier prices genai-prices then ignores)."""
    provider = _provider(provider_id)
    return provider is not None and any(m is info for m in provider.models)


def resolve_model(provider: str, raw_model: str) -> tuple[str, gp_types.ModelInfo | None]:
    """(normalised model name, the catalog's ModelInfo or None) for a
    normalised provider. Cached: the catalog lookup is slow. A name with the
    provider's prefix ("openai/gpt-4o") is tried as is first, since a few
    catalog ids carry it ("perplexity/sonar" is not "sonar")."""
    key = (provider, raw_model)
    try:
        return _model_cache[key]
    except KeyError:
        pass
    model = clean_model(provider, raw_model)
    info = None
    for candidate in dict.fromkeys((_lower_name(raw_model)[:128], model)):
        info = _find(provider, candidate) if candidate else None
        if info is not None:
            break
    result = (info.id if info is not None else model, info)
    with _lock:
        if len(_model_cache) >= _CACHE_LIMIT:
            _model_cache.clear()
        _model_cache[key] = result
        # the canonical id resolves to itself
        _model_cache.setdefault((provider, result[0]), result)
    return result


def model_info(provider: str, model: str) -> gp_types.ModelInfo | None:
    return resolve_model(provider, model)[1]


def known_providers() -> list[str]:
    return sorted(p.id for p in get_snapshot().providers)

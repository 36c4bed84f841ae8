"""The provider catalogue, as data: every AI provider an organization can
keep a key for, where its API lives, how a key is presented, and which cheap
call lists its models (the call that proves a key on save).

`base_url` is what the provider's official SDK takes as its base URL
(OpenAI's ends in /v1, Anthropic's and Gemini's do not), so an override in
CG_PROVIDER_BASE_URLS is exactly what one would give the SDK. `custom_base_url`
providers (Azure OpenAI, any OpenAI-compatible server) get theirs from the
credential itself, typed by an admin, so every call to it goes through the
SSRF guard.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

# How a key travels.
BEARER = "bearer"  # Authorization: Bearer <key>
X_API_KEY = "x-api-key"  # x-api-key: <key> (Anthropic, with anthropic-version)
GOOG_API_KEY = "x-goog-api-key"  # x-goog-api-key: <key> (Gemini; also accepted as ?key=, kept out of URLs here)
AZURE_API_KEY = "api-key"  # api-key: <key> (Azure OpenAI)

# Which API the provider speaks (the gateway translates between these).
OPENAI, ANTHROPIC, GEMINI, AZURE = "openai", "anthropic", "gemini", "azure"

ANTHROPIC_VERSION = "2023-06-01"
AZURE_DEFAULT_API_VERSION = "2024-10-21"


@dataclass(frozen=True)
class Provider:
    key: str  # stored on the credential
    label: str
    base_url: str  # default; "" when the credential brings its own
    auth: str  # BEARER, X_API_KEY, GOOG_API_KEY or AZURE_API_KEY
    wire: str  # OPENAI, ANTHROPIC, GEMINI or AZURE
    models_path: str  # appended to the base URL: the models list
    pricing_provider: str  # the usage/pricing catalogue's provider id for its models
    key_hint: str = ""  # what a key looks like, for the form's placeholder
    key_check_path: str = ""  # a call that proves the key when the models list is public
    custom_base_url: bool = False
    key_required: bool = True
    console_url: str = ""  # where an admin creates a key

    @property
    def is_azure(self) -> bool:
        return self.wire == AZURE


PROVIDERS: dict[str, Provider] = {p.key: p for p in (
    Provider("openai", "OpenAI", "https://api.openai.com/v1", BEARER, OPENAI, "/models", "openai",
             key_hint="sk-…", console_url="https://platform.openai.com/api-keys"),
    Provider("anthropic", "Anthropic", "https://api.anthropic.com", X_API_KEY, ANTHROPIC, "/v1/models", "anthropic",
             key_hint="sk-ant-…", console_url="https://console.anthropic.com/settings/keys"),
    Provider("google", "Google Gemini", "https://generativelanguage.googleapis.com", GOOG_API_KEY, GEMINI,
             "/v1beta/models", "google", key_hint="AIza…", console_url="https://aistudio.google.com/apikey"),
    Provider("azure", "Azure OpenAI", "", AZURE_API_KEY, AZURE, "/openai/models", "azure", custom_base_url=True,
             console_url="https://portal.azure.com/"),
    Provider("mistral", "Mistral", "https://api.mistral.ai/v1", BEARER, OPENAI, "/models", "mistral",
             console_url="https://console.mistral.ai/api-keys"),
    Provider("groq", "Groq", "https://api.groq.com/openai/v1", BEARER, OPENAI, "/models", "groq",
             key_hint="gsk_…", console_url="https://console.groq.com/keys"),
    Provider("deepseek", "DeepSeek", "https://api.deepseek.com/v1", BEARER, OPENAI, "/models", "deepseek",
             key_hint="sk-…", console_url="https://platform.deepseek.com/api_keys"),
    Provider("xai", "xAI", "https://api.x.ai/v1", BEARER, OPENAI, "/models", "x-ai",
             key_hint="xai-…", console_url="https://console.x.ai/"),
    # OpenRouter's models list answers without a key, so the key is proven by GET /key.
    Provider("openrouter", "OpenRouter", "https://openrouter.ai/api/v1", BEARER, OPENAI, "/models", "openrouter",
             key_hint="sk-or-…", key_check_path="/key", console_url="https://openrouter.ai/settings/keys"),
    # vLLM, Ollama, LM Studio, LiteLLM … : a base URL ending where /models and
    # /chat/completions live (usually …/v1); many run without a key.
    Provider("openai_compatible", "OpenAI-compatible", "", BEARER, OPENAI, "/models", "openai", custom_base_url=True,
             key_required=False),
)}


def get(key: str) -> Provider | None:
    return PROVIDERS.get(key)


def choices() -> list[tuple[str, str]]:
    return [(p.key, p.label) for p in PROVIDERS.values()]


def configured_base_urls() -> dict[str, str]:
    """CG_PROVIDER_BASE_URLS: `provider=url` pairs separated by commas or
    whitespace (a dict in a test's config works too)."""
    raw = current_app.config.get("CG_PROVIDER_BASE_URLS") or {}
    if isinstance(raw, dict):
        return {k: str(v).rstrip("/") for k, v in raw.items() if v}
    pairs = {}
    for item in str(raw).replace(",", " ").split():
        name, _, url = item.partition("=")
        if name.strip() and url.strip():
            pairs[name.strip()] = url.strip().rstrip("/")
    return pairs


def base_url_for(provider: Provider, credential_base_url: str = "") -> str:
    """Where this provider's API is: the credential's own URL for custom
    providers, else the operator's override, else the public default."""
    if provider.custom_base_url:
        return (credential_base_url or "").rstrip("/")
    return configured_base_urls().get(provider.key, provider.base_url).rstrip("/")

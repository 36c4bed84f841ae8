"""Provider and model names: one name per model in every report, matched to
the genai-prices catalog."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from costguardian.services.usage import catalog


@pytest.mark.parametrize("raw, expected", [
    ("openai", "openai"), ("OpenAI", "openai"), (" openai ", "openai"),
    ("anthropic", "anthropic"), ("claude", "anthropic"),
    ("google", "google"), ("Gemini", "google"), ("vertex_ai", "google"), ("vertex", "google"),
    ("google-vertex", "google"),
    ("bedrock", "aws"), ("aws-bedrock", "aws"), ("amazon", "aws"), ("aws", "aws"),
    ("azure_openai", "azure"), ("azure-openai", "azure"), ("azure", "azure"),
    ("xai", "x-ai"), ("x-ai", "x-ai"), ("grok", "x-ai"),
    ("mistralai", "mistral"), ("Mistral", "mistral"),
    ("deepseek", "deepseek"), ("groq", "groq"), ("together_ai", "together"), ("fireworks_ai", "fireworks"),
    ("moonshot", "moonshotai"),
])
def test_provider_aliases(raw, expected):
    assert catalog.normalize_provider(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("My Corp", "my-corp"), ("my_llm_host", "my_llm_host"), ("", ""), ("  ", ""), ("Self-Hosted!!", "self-hosted"),
])
def test_unknown_providers_keep_a_cleaned_name(raw, expected):
    assert catalog.normalize_provider(raw) == expected


@pytest.mark.parametrize("provider, raw, expected", [
    ("google", "models/gemini-2.0-flash", "gemini-2.0-flash"),  # Gemini API resource names
    ("google", "gemini-2.5-pro", "gemini-2.5-pro"),
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),  # dated ids → the catalog's id
    ("openai", "gpt-4o-2024-11-20", "gpt-4o"),
    ("openai", "GPT-4o", "gpt-4o"),  # case
    ("openai", "  gpt-4o-mini ", "gpt-4o-mini"),
    ("openai", "openai/gpt-4o", "gpt-4o"),  # provider/ prefix (LiteLLM, OpenRouter style)
    ("x-ai", "x-ai/grok-3", "grok-3"),
    ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-latest"),
    ("azure", "gpt-4o", "gpt-4o"),  # through Azure's fallback to OpenAI's models
    ("aws", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "regional.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("perplexity", "perplexity/sonar", "perplexity/sonar"),  # a catalog id that carries the prefix
    ("perplexity", "sonar", "sonar"),
])
def test_models_resolve_to_the_catalogs_id(provider, raw, expected):
    name, info = catalog.resolve_model(provider, raw)
    assert name == expected
    assert info is not None and info.id == expected


@pytest.mark.parametrize("provider, raw, expected", [
    ("openai", "ft:gpt-4o-mini:acme::abc123", "ft:gpt-4o-mini:acme::abc123"),
    ("openai", "My-Fine-Tune", "my-fine-tune"),
    ("openai", "openai/custom-model", "custom-model"),
    ("google", "models/my-tuned-gemini", "my-tuned-gemini"),
    ("mycorp", "Llama-X-70B", "llama-x-70b"),
    ("mycorp", "mycorp:llama-x", "llama-x"),
    ("mycorp", "x" * 300, "x" * 128),
])
def test_unknown_models_keep_a_cleaned_name(provider, raw, expected):
    assert catalog.resolve_model(provider, raw) == (expected, None)


def test_a_stored_name_resolves_the_same_in_a_fresh_process():
    """Events store the catalog's id; a task in another process reprices them
    from that name alone, with no cache of the name that was sent."""
    name, info = catalog.resolve_model("aws", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    code = ("from costguardian.services.usage import catalog; "
            f"n, i = catalog.resolve_model('aws', {name!r}); print(n, i.id if i else None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.stdout.split() == [name, info.id]


def test_own_and_fallback_models():
    _, gpt4o = catalog.resolve_model("openai", "gpt-4o")
    assert catalog.is_own_model("openai", gpt4o)
    assert catalog.resolve_model("azure", "gpt-4o")[1] is gpt4o
    assert not catalog.is_own_model("azure", gpt4o)
    assert not catalog.is_own_model("mycorp", gpt4o)


def test_model_info_and_known_providers():
    assert catalog.model_info("openai", "gpt-4o").id == "gpt-4o"
    assert catalog.model_info("openai", "no-such-model") is None
    providers = catalog.known_providers()
    assert {"openai", "anthropic", "google", "aws", "azure", "mistral", "deepseek", "x-ai", "groq"} <= set(providers)
    assert providers == sorted(providers)

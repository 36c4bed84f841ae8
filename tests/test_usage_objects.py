"""Providers' own usage objects, as their APIs return them, converted to
genai-prices token semantics (input counts every prompt token, cached ones
included); cross-checked with genai-prices' own extractors."""
from __future__ import annotations

import pytest
from genai_prices import extract_usage

from costguardian.services.usage.pricing import Tokens
from costguardian.services.usage.usage_objects import UsageObjectError, tokens_from_usage_object

OPENAI_CHAT = {  # POST /v1/chat/completions, a prompt mostly served from cache
    "prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                  "rejected_prediction_tokens": 0},
}
OPENAI_CHAT_NO_DETAILS = {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29}
OPENAI_EMBEDDINGS = {"prompt_tokens": 8, "total_tokens": 8}
OPENAI_RESPONSES = {  # POST /v1/responses
    "input_tokens": 5328, "input_tokens_details": {"cached_tokens": 4096},
    "output_tokens": 852, "output_tokens_details": {"reasoning_tokens": 640}, "total_tokens": 6180,
}
ANTHROPIC = {  # POST /v1/messages writing a prompt cache; input_tokens excludes cache tokens
    "input_tokens": 21, "cache_creation_input_tokens": 188086, "cache_read_input_tokens": 0, "output_tokens": 393,
    "cache_creation": {"ephemeral_5m_input_tokens": 188086, "ephemeral_1h_input_tokens": 0},
    "server_tool_use": {"web_search_requests": 0}, "service_tier": "standard",
}
ANTHROPIC_CACHE_HIT = {"input_tokens": 50, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 188086,
                       "output_tokens": 120, "service_tier": "standard"}
ANTHROPIC_PLAIN = {"input_tokens": 12, "output_tokens": 6}
GEMINI = {  # generateContent usageMetadata of a thinking model with cached content and a tool call
    "promptTokenCount": 2100, "candidatesTokenCount": 12, "totalTokenCount": 2678, "thoughtsTokenCount": 529,
    "cachedContentTokenCount": 2048, "toolUsePromptTokenCount": 37,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 2100}],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 2048}],
}
GEMINI_PLAIN = {"promptTokenCount": 9, "candidatesTokenCount": 12, "totalTokenCount": 21}
BEDROCK_CONVERSE = {  # Converse API; inputTokens excludes cache reads and writes
    "inputTokens": 30, "outputTokens": 628, "totalTokens": 2706, "cacheReadInputTokens": 1024,
    "cacheWriteInputTokens": 1024,
}


@pytest.mark.parametrize("usage, provider, expected", [
    (OPENAI_CHAT, "openai", Tokens(input=2006, cache_read=1920, output=300)),  # reasoning is inside completion
    (OPENAI_CHAT_NO_DETAILS, "openai", Tokens(input=19, output=10)),
    (OPENAI_EMBEDDINGS, "openai", Tokens(input=8)),
    ({**OPENAI_CHAT, "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 500}}, "openrouter",
     Tokens(input=2006, cache_read=1000, cache_write=500, output=300)),
    (OPENAI_RESPONSES, "openai", Tokens(input=5328, cache_read=4096, output=852)),
    (OPENAI_RESPONSES, "azure", Tokens(input=5328, cache_read=4096, output=852)),
    # 21 + 188,086 written + 0 read
    (ANTHROPIC, "anthropic", Tokens(input=188107, cache_write=188086, output=393)),
    # 50 + 188,086 read
    (ANTHROPIC_CACHE_HIT, "anthropic", Tokens(input=188136, cache_read=188086, output=120)),
    (ANTHROPIC_PLAIN, "anthropic", Tokens(input=12, output=6)),
    (ANTHROPIC_CACHE_HIT, "aws", Tokens(input=188136, cache_read=188086, output=120)),  # Bedrock InvokeModel
    # prompt 2,100 (2,048 cached) + 37 tool-use prompt; output 12 + 529 thoughts
    (GEMINI, "google", Tokens(input=2137, cache_read=2048, output=541)),
    (GEMINI_PLAIN, "google", Tokens(input=9, output=12)),
    # 30 + 1,024 read + 1,024 written
    (BEDROCK_CONVERSE, "aws", Tokens(input=2078, cache_read=1024, cache_write=1024, output=628)),
])
def test_usage_objects(usage, provider, expected):
    assert tokens_from_usage_object(usage, provider) == expected


@pytest.mark.parametrize("response, provider, flavor, usage", [
    ({"model": "gpt-4o", "usage": OPENAI_CHAT}, "openai", "chat", OPENAI_CHAT),
    ({"model": "gpt-4o", "usage": OPENAI_RESPONSES}, "openai", "responses", OPENAI_RESPONSES),
    ({"model": "claude-sonnet-4-5", "usage": ANTHROPIC}, "anthropic", "default", ANTHROPIC),
    ({"model": "claude-sonnet-4-5", "usage": ANTHROPIC_CACHE_HIT}, "anthropic", "default", ANTHROPIC_CACHE_HIT),
    ({"modelVersion": "gemini-2.5-flash", "usageMetadata": GEMINI}, "google", "default", GEMINI),
    ({"usage": BEDROCK_CONVERSE}, "aws", "default", BEDROCK_CONVERSE),
])
def test_agrees_with_genai_prices_extractors(response, provider, flavor, usage):
    extracted = extract_usage(response, provider_id=provider, api_flavor=flavor).usage
    ours = tokens_from_usage_object(usage, provider)
    assert ours == Tokens(input=extracted.input_tokens or 0, cache_read=extracted.cache_read_tokens or 0,
                          cache_write=extracted.cache_write_tokens or 0, output=extracted.output_tokens or 0)


@pytest.mark.parametrize("usage, message", [
    (None, "usage object"), ([1, 2], "usage object"), ("100 tokens", "usage object"), (42, "usage object"),
    ({}, "Not a usage object"), ({"tokens": 5}, "Not a usage object"),
    ({"prompt_tokens": -1, "completion_tokens": 2}, "'prompt_tokens' must be a whole number from 0 to 1,000,000,000"),
    ({"prompt_tokens": 10**9 + 1}, "'prompt_tokens' must be a whole number from 0"),
    # Every count the server knows is checked, whichever format the object is.
    ({"prompt_tokens": 1, "candidatesTokenCount": "x"}, "'candidatesTokenCount'"),
    ({"promptTokenCount": 1, "input_tokens_details": {"cached_tokens": -1}}, "'input_tokens_details.cached_tokens'"),
    ({"prompt_tokens": 1.5, "completion_tokens": 2}, "'prompt_tokens' must be"),
    ({"prompt_tokens": "10", "completion_tokens": 2}, "'prompt_tokens' must be"),
    ({"prompt_tokens": True, "completion_tokens": 2}, "'prompt_tokens' must be"),
    ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": -3}}, "'prompt_tokens_details.cached_tokens'"),
    ({"input_tokens": 3, "output_tokens": 2, "cache_read_input_tokens": "many"}, "'cache_read_input_tokens'"),
    ({"promptTokenCount": 3, "thoughtsTokenCount": -1}, "'thoughtsTokenCount'"),
    ({"inputTokens": 3, "outputTokens": 2.0}, "'outputTokens'"),
])
def test_bad_usage_objects(usage, message):
    with pytest.raises(UsageObjectError, match=message.replace("(", r"\(").replace(".", r"\.")):
        tokens_from_usage_object(usage, "openai")


def test_missing_or_null_counts_are_zero():
    assert tokens_from_usage_object({"prompt_tokens": 5, "completion_tokens": None,
                                     "prompt_tokens_details": None}, "openai") == Tokens(input=5)
    assert tokens_from_usage_object({"candidatesTokenCount": 4}, "google") == Tokens(output=4)

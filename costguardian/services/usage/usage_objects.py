"""Providers' own usage objects, converted to genai-prices token semantics
(`input_tokens` counts every prompt token, cached ones included).

- OpenAI chat completions: prompt_tokens (includes cached), prompt_tokens_details.cached_tokens
  (and .cache_write_tokens, which OpenAI-compatible routers report)
- OpenAI responses: input_tokens (includes cached), input_tokens_details.cached_tokens (.cache_write_tokens)
- Anthropic messages: input_tokens EXCLUDES cache reads and writes, which come as
  cache_read_input_tokens and cache_creation_input_tokens
- Gemini usageMetadata: promptTokenCount (includes cachedContentTokenCount);
  toolUsePromptTokenCount is billed as input on top of it, thoughtsTokenCount as output
- AWS Bedrock Converse: inputTokens excludes cacheReadInputTokens / cacheWriteInputTokens
"""
from __future__ import annotations

from costguardian.services.usage.pricing import Tokens


class UsageObjectError(ValueError):
    pass


MAX_COUNT = 10**9  # per count, as for token counts sent directly
# Every count the server reads from one of the formats: each one present must
# be a whole number (or null), whichever format the object turns out to be, so
# that the API document can state it (openapi.USAGE_OBJECT). Other members
# (total_tokens, *_details arrays, service_tier …) are ignored.
COUNTS = ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "cache_creation_input_tokens",
          "cache_read_input_tokens", "promptTokenCount", "candidatesTokenCount", "toolUsePromptTokenCount",
          "cachedContentTokenCount", "thoughtsTokenCount", "inputTokens", "outputTokens", "cacheReadInputTokens",
          "cacheWriteInputTokens")
DETAIL_COUNTS = {"prompt_tokens_details": ("cached_tokens", "cache_write_tokens"),
                 "input_tokens_details": ("cached_tokens", "cache_write_tokens")}
# One of these names the format.
MARKERS = ("prompt_tokens", "completion_tokens", "promptTokenCount", "candidatesTokenCount", "inputTokens",
           "outputTokens", "input_tokens", "output_tokens")


def _int(obj: dict, *path, default=0) -> int:
    value = obj
    for name in path:
        if not isinstance(value, dict) or value.get(name) is None:
            return default
        value = value[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise UsageObjectError(f"'{'.'.join(path)}' must be a whole number from 0 to {MAX_COUNT:,}.")
    return value


def tokens_from_usage_object(usage, provider: str) -> Tokens:
    if not isinstance(usage, dict):
        raise UsageObjectError("Must be the provider's usage object (a JSON object).")
    for name in COUNTS:
        _int(usage, name)
    for details, names in DETAIL_COUNTS.items():
        for name in names:
            _int(usage, details, name)
    if "prompt_tokens" in usage or "completion_tokens" in usage:  # OpenAI chat completions (and compatibles)
        return Tokens(input=_int(usage, "prompt_tokens"),
                      cache_read=_int(usage, "prompt_tokens_details", "cached_tokens"),
                      cache_write=_int(usage, "prompt_tokens_details", "cache_write_tokens"),
                      output=_int(usage, "completion_tokens"))
    if "promptTokenCount" in usage or "candidatesTokenCount" in usage:  # Gemini usageMetadata
        return Tokens(input=_int(usage, "promptTokenCount") + _int(usage, "toolUsePromptTokenCount"),
                      cache_read=_int(usage, "cachedContentTokenCount"),
                      output=_int(usage, "candidatesTokenCount") + _int(usage, "thoughtsTokenCount"))
    if "inputTokens" in usage or "outputTokens" in usage:  # AWS Bedrock Converse
        read, write = _int(usage, "cacheReadInputTokens"), _int(usage, "cacheWriteInputTokens")
        return Tokens(input=_int(usage, "inputTokens") + read + write, cache_read=read, cache_write=write,
                      output=_int(usage, "outputTokens"))
    anthropic_keys = ("cache_creation_input_tokens", "cache_read_input_tokens")
    if "input_tokens" in usage or "output_tokens" in usage:
        if any(k in usage for k in anthropic_keys) or (provider == "anthropic" and "input_tokens_details" not in usage):
            read, write = _int(usage, "cache_read_input_tokens"), _int(usage, "cache_creation_input_tokens")
            return Tokens(input=_int(usage, "input_tokens") + read + write, cache_read=read, cache_write=write,
                          output=_int(usage, "output_tokens"))
        return Tokens(input=_int(usage, "input_tokens"),  # OpenAI responses
                      cache_read=_int(usage, "input_tokens_details", "cached_tokens"),
                      cache_write=_int(usage, "input_tokens_details", "cache_write_tokens"),
                      output=_int(usage, "output_tokens"))
    raise UsageObjectError("Not a usage object this server recognises (OpenAI chat or responses, Anthropic "
                           "messages, Gemini usageMetadata or Bedrock Converse); send token counts instead.")

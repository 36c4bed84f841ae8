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

from costguardian.services.pricing import Tokens


class UsageObjectError(ValueError):
    pass


def _int(obj: dict, *path, default=0) -> int:
    value = obj
    for name in path:
        if not isinstance(value, dict) or value.get(name) is None:
            return default
        value = value[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageObjectError(f"'{'.'.join(path)}' must be a non-negative whole number.")
    return value


def tokens_from_usage_object(usage, provider: str) -> Tokens:
    if not isinstance(usage, dict):
        raise UsageObjectError("Must be the provider's usage object (a JSON object).")
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

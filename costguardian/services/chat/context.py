"""The messages a chat call sends: the system prompt and as much of the
conversation, newest first, as fits the model's context window.

Tokens are estimated, not counted: ceil(UTF-8 bytes / 3) per message plus 4
for its role and separators, the rule the gateway's admission uses for
providers whose tokenizer is not public. It over-counts prose (about four
characters a token), so a trimmed history fits. The window is the catalog's
`context_window` for the model, less the answer's room (the conversation's
max tokens, else DEFAULT_ANSWER_TOKENS); a model the catalog does not know
gets UNKNOWN_WINDOW. The newest message is always sent (a prompt too long by
itself is the provider's to refuse)."""
from __future__ import annotations

import math
from dataclasses import dataclass

BYTES_PER_TOKEN = 3
PER_MESSAGE_TOKENS = 4
DEFAULT_ANSWER_TOKENS = 4096
UNKNOWN_WINDOW = 32_000


def estimate(text: str) -> int:
    return PER_MESSAGE_TOKENS + math.ceil(len((text or "").encode("utf-8")) / BYTES_PER_TOKEN)


@dataclass(frozen=True)
class Prompt:
    messages: list[dict]  # OpenAI chat format: {"role", "content"}
    trimmed: int  # earlier messages left out
    estimated_tokens: int
    window: int


def build(system_prompt: str, history: list[tuple[str, str]], context_window: int | None,
          max_tokens: int | None) -> Prompt:
    """`history`: (role, content) oldest first, the new user message last."""
    window = context_window or UNKNOWN_WINDOW
    room = max(0, window - (max_tokens or DEFAULT_ANSWER_TOKENS))
    used = estimate(system_prompt) if system_prompt else 0
    kept: list[tuple[str, str]] = []
    for role, content in reversed(history):
        cost = estimate(content)
        if kept and used + cost > room:
            break
        kept.append((role, content))
        used += cost
    kept.reverse()
    # A history that starts with an answer confuses some providers (Anthropic requires a user turn first).
    while len(kept) > 1 and kept[0][0] != "user":
        used -= estimate(kept.pop(0)[1])
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
    messages += [{"role": role, "content": content} for role, content in kept]
    return Prompt(messages, len(history) - len(kept), used, window)

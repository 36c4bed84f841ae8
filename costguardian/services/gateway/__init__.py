"""The LLM gateway: provider credentials today (the vault), the
OpenAI/Anthropic-compatible proxy next.

Others may import: `vault` (an organization's provider keys: add, check,
change, delete, and `credential_for` / `allowed_models` for the gateway),
`providers` (the provider catalogue, as data). `upstream` (the call that
proves a key, through the SSRF guard for admin-typed URLs) and `fields`
(input rules) are the vault's own.
"""
__all__ = ["providers", "vault"]

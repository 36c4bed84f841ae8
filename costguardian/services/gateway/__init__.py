"""The LLM gateway: provider credentials (the vault) and the
OpenAI/Anthropic-compatible proxy.

Others may import: `vault` (an organization's provider keys: add, check,
change, delete, and `credential_for` / `allowed_models` for the gateway),
`providers` (the provider catalogue, as data), `proxy` (one call through
the gateway, for views/gateway.py: `handle`, `error_reply`, the models
lists). `upstream` (the call that proves a key, through the SSRF guard for
admin-typed URLs) and `fields` (input rules) are the vault's own; routing,
attribution, the wire formats (openai_wire, anthropic_wire, streams) and
recording are the proxy's own. `admission` (admit/settle: budget
reservations before a call is forwarded, and their sweep) is the proxy's
and the periodic task's; `tokens` (prompt token estimates) is admission's own.
"""
__all__ = ["admission", "providers", "proxy", "vault"]

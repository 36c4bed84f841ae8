"""Provider usage sync and reconciliation: what OpenAI and Anthropic report
through their organization admin APIs, stored apart from our own usage
events and compared with them.

Modules others may import: connections (admin credentials), sync (the
periodic pull and the backfill), reconcile (drift, shadow usage, cost check,
CSV)."""

"""Usage and cost: what was spent, by whom, at which price.

Others may import: `ingest` (record_usage entry point, batch validation),
`queries` (dashboards, explorer, summaries), `pricing` (the cost engine),
`catalog` (genai-prices lookups), `prices` (organization overrides and
aliases), `repricing`, `usage_objects` (providers' usage objects → tokens),
`exports` (CSV and FOCUS). `rollups` is ingest's storage and is read only
through `queries`.
"""
__all__ = ["catalog", "exports", "ingest", "prices", "pricing", "queries", "repricing", "usage_objects"]

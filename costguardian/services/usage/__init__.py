"""Usage and cost: what was spent, by whom, at which price.

Others may import: `ingest` (record_usage entry point, batch validation),
`queries` (dashboards, explorer, summaries), `pricing` (the cost engine),
`catalog` (genai-prices lookups), `prices` (organization overrides and
aliases), `repricing`, `usage_objects` (providers' usage objects → tokens),
`exports` (CSV and FOCUS), `realign` (rollups moved to a new zone's bucket
alignment). `rollups` is ingest's storage and is read only through `queries`,
except its bucket rule (`alignment`, `bucket_start`), which every reader of
rollup hours shares.
"""
__all__ = ["catalog", "exports", "ingest", "prices", "pricing", "queries", "realign", "repricing", "usage_objects"]

"""Budgets: limits per scope and period, counters kept by ingest, alerts and
forecasts.

Others may import: `budgets` (create/update/status/checks, `budget_status_for`
for the gateway), `periods` (period arithmetic in an organization's zone),
`accounting` (the counters ingest updates in its own transaction),
`forecast` (the projection model) and `reports` (past periods, raises and
alerts of a period, the department allocation and the per-period report).
"""
__all__ = ["accounting", "budgets", "forecast", "periods", "reports"]

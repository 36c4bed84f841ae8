"""The demo organization `make run` creates: `seed` (people, departments,
budgets) and `usage` (realistic traffic through the ingest service)."""
__all__ = ["seed", "usage"]

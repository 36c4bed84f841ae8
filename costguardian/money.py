"""Money is an integer number of nano-dollars (1e-9 USD); this formats it."""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

NANOS_PER_USD = 1_000_000_000


def format_usd(nanos: int | None, places: int = 2) -> str:
    """`$1,234.57` from 1_234_567_000_000 nanos; "—" for an unknown amount."""
    if nanos is None:
        return "—"
    amount = (Decimal(nanos) / NANOS_PER_USD).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.{places}f}"

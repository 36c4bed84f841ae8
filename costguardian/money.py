"""Money is an integer number of nano-dollars (1e-9 USD); this is the one
place that turns it into text, for pages, charts, emails, notifications,
webhooks' human text and the chat.

The display rule (`format_usd`):
- $1 and more (in absolute value): cents, rounded half-to-even, with
  thousands separators: `$1,234.57`.
- Under $1: four significant digits, rounded half-to-even, trailing zeros
  trimmed down to two decimals: `$0.0075`, `$0.4717`, `$0.50`, `$0.000000001`;
  a small call is never shown as `$0.01` or `$0.00`.
- Zero is `$0.00`; a negative amount carries a leading minus (`-$0.0075`);
  an unknown amount (None) is `—`.

Machine-readable figures (CSV, the JSON API, chart data) are exact decimal
USD strings from `usd_decimal` (`0.0075`, `12.5`), never rounded.

Percentages of a limit (`whole_percent`, `format_percent`) are whole
percents rounded down, so a page never claims a threshold that has not been
crossed yet and every screen, alert and email shows the same number.
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

NANOS_PER_USD = 1_000_000_000
SIGNIFICANT_DIGITS = 4
_CENT = Decimal("0.01")


def format_usd(nanos: int | None) -> str:
    """`$1,234.57` from 1_234_567_000_000 nanos, `$0.0075` from 7_500_000; "—" for an unknown amount."""
    if nanos is None:
        return "—"
    nanos = int(nanos)
    if nanos == 0:
        return "$0.00"
    sign = "-" if nanos < 0 else ""
    amount = Decimal(abs(nanos)) / NANOS_PER_USD
    if amount < 1:
        # Four significant digits: quantize to the exponent of the fourth digit.
        rounded = amount.quantize(Decimal(1).scaleb(amount.adjusted() - SIGNIFICANT_DIGITS + 1),
                                  rounding=ROUND_HALF_EVEN)
        if rounded < 1:
            text = format(rounded, "f").rstrip("0")
            decimals = len(text.partition(".")[2])
            if decimals < 2:
                text += "0" * (2 - decimals)
            return f"{sign}${text}"
    return f"{sign}${amount.quantize(_CENT, rounding=ROUND_HALF_EVEN):,.2f}"


def usd_amount(nanos: int | None) -> str:
    """`format_usd` without the dollar sign, for notification texts that
    write `${{ spent_usd }}`: "1,234.57", "0.0075", "-0.0075"."""
    return format_usd(nanos).replace("$", "", 1)


def usd_decimal(nanos: int | None) -> str | None:
    """The exact amount as a plain decimal string without a dollar sign
    (`0.0075`, `12.5`, `0`): for CSV, JSON and chart data. None stays None."""
    if nanos is None:
        return None
    return format((Decimal(int(nanos)) / NANOS_PER_USD).quantize(Decimal("0.000000001")).normalize(), "f")


def whole_percent(part: int, whole: int) -> int:
    """`part` as a whole percent of `whole`, rounded down (0 when whole is not positive)."""
    if whole <= 0:
        return 0
    return (int(part) * 100) // int(whole)


def format_percent(value) -> str:
    """A percentage for display: whole percents rounded down, "<1%" for a
    positive share under one percent, "—" for None. `value` is a percent
    (83.7 → "83%"); pass a Decimal computed from integers for exactness."""
    if value is None:
        return "—"
    value = value if isinstance(value, Decimal) else Decimal(str(value))
    if 0 < value < 1:
        return "<1%"
    return f"{int(value.to_integral_value(rounding='ROUND_FLOOR')):,}%"


def percent_of(part: int, whole: int) -> Decimal:
    """The exact percent `part` is of `whole` (0 when whole is not positive)."""
    if whole <= 0:
        return Decimal(0)
    return Decimal(int(part) * 100) / Decimal(int(whole))

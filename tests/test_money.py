"""Money formatting: one rule for every screen, email and notification
(costguardian/money.py), exact decimals for machines, and percents of a limit."""
from __future__ import annotations

from decimal import Decimal

import pytest

from costguardian.money import NANOS_PER_USD, format_percent, format_usd, percent_of, usd_decimal, whole_percent

USD = NANOS_PER_USD
CENT = USD // 100
HALF_CENT = CENT // 2


@pytest.mark.parametrize("nanos, text", [
    # $1 and more: cents, thousands separators
    (USD, "$1.00"),
    (1_234_567_000_000, "$1,234.57"),
    (1_000_000 * USD, "$1,000,000.00"),
    (14_695_000_000, "$14.70"),             # half to even: 14.695 -> 14.70
    (14_685_000_000, "$14.68"),             # half to even: 14.685 -> 14.68
    (USD + HALF_CENT, "$1.00"),
    # under $1: four significant digits, trimmed to at least two decimals
    (7_500_000, "$0.0075"),                 # a $0.0075 call is not $0.01
    (471_733_955, "$0.4717"),               # the chat's "$0.471733955 left"
    (500_000_000, "$0.50"),
    (CENT, "$0.01"),
    (CENT - 1, "$0.01"),                    # 0.009999999 to four significant digits
    (123_456, "$0.0001235"),
    (1, "$0.000000001"),
    (999_940_000, "$0.9999"),
    (999_960_000, "$1.00"),                 # four digits round up to a dollar: cents from there
    (120_000_000, "$0.12"),
    (120_500_000, "$0.1205"),
    # zero and unknown
    (0, "$0.00"),
    (None, "—"),
])
def test_format_usd(nanos, text):
    assert format_usd(nanos) == text


@pytest.mark.parametrize("nanos, text", [
    (-USD, "-$1.00"),
    (-1_234_567_000_000, "-$1,234.57"),
    (-7_500_000, "-$0.0075"),
    (-1, "-$0.000000001"),
    (-(CENT + HALF_CENT), "-$0.015"),
])
def test_format_usd_negatives(nanos, text):
    assert format_usd(nanos) == text


@pytest.mark.parametrize("nanos, text", [
    (0, "0"), (1, "0.000000001"), (7_500_000, "0.0075"), (12_500_000_000, "12.5"), (10 * USD, "10"),
    (-7_500_000, "-0.0075"), (None, None),
])
def test_usd_decimal_is_exact(nanos, text):
    assert usd_decimal(nanos) == text


@pytest.mark.parametrize("part, whole, number, text", [
    (837, 1000, 83, "83%"),       # rounded down, never past a threshold not crossed
    (84, 100, 84, "84%"),
    (799_999, 1_000_000, 79, "79%"),
    (1, 1000, 0, "<1%"),
    (0, 1000, 0, "0%"),
    (2500, 1000, 250, "250%"),
    (5, 0, 0, "0%"),
])
def test_percent_of_a_limit(part, whole, number, text):
    assert whole_percent(part, whole) == number
    assert format_percent(percent_of(part, whole)) == text


def test_format_percent_other_inputs():
    assert format_percent(None) == "—"
    assert format_percent(12.9) == "12%"
    assert format_percent(Decimal("0.5")) == "<1%"
    assert format_percent(12345) == "12,345%"

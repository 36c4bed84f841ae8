"""Money formatting: integer nano-dollars to dollars for display."""
from __future__ import annotations

import pytest

from costguardian.money import NANOS_PER_USD, format_usd

CENT = NANOS_PER_USD // 100
HALF_CENT = CENT // 2


@pytest.mark.parametrize("nanos, text", [
    (0, "$0.00"),
    (1, "$0.00"),
    (NANOS_PER_USD, "$1.00"),
    (1_234_567_000_000, "$1,234.57"),
    (1_000_000 * NANOS_PER_USD, "$1,000,000.00"),
    (CENT, "$0.01"),
    (CENT - 1, "$0.01"),
])
def test_format_usd(nanos, text):
    assert format_usd(nanos) == text


@pytest.mark.parametrize("nanos, text", [
    (HALF_CENT, "$0.00"),              # 0.005 -> even 0.00
    (CENT + HALF_CENT, "$0.02"),       # 0.015 -> even 0.02
    (2 * CENT + HALF_CENT, "$0.02"),   # 0.025 -> even 0.02
    (3 * CENT + HALF_CENT, "$0.04"),   # 0.035 -> even 0.04
    (2 * CENT + HALF_CENT + 1, "$0.03"),  # just above half rounds up
    (2 * CENT + HALF_CENT - 1, "$0.02"),  # just below half rounds down
])
def test_format_usd_rounds_half_to_even(nanos, text):
    assert format_usd(nanos) == text


@pytest.mark.parametrize("nanos, text", [
    (-NANOS_PER_USD, "-$1.00"),
    (-1_234_567_000_000, "-$1,234.57"),
    (-(CENT + HALF_CENT), "-$0.02"),
    (-(2 * CENT + HALF_CENT), "-$0.02"),
    (-HALF_CENT, "$0.00"),  # rounds to zero: no "-$0.00"
    (-1, "$0.00"),
])
def test_format_usd_negatives(nanos, text):
    assert format_usd(nanos) == text


def test_format_usd_unknown_amount():
    assert format_usd(None) == "—"
    assert format_usd(None, places=4) == "—"


@pytest.mark.parametrize("nanos, places, text", [
    (1_234_567_800, 4, "$1.2346"),
    (123_450_000, 4, "$0.1234"),   # 0.12345 -> even 0.1234
    (123_550_000, 4, "$0.1236"),   # 0.12355 -> even 0.1236
    (1_500_000_000, 0, "$2"),
    (2_500_000_000, 0, "$2"),
    (1_234_567_890_123, 9, "$1,234.567890123"),
])
def test_format_usd_places(nanos, places, text):
    assert format_usd(nanos, places=places) == text

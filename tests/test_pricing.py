"""The cost engine: hand-computed prices from the genai-prices catalog, the
catalog itself as the oracle for every model, and an organization's own prices.

Arithmetic convention in the comments: a price of $P per million tokens is
P × 1,000 nano-dollars per token (1 USD = 1e9 nanos, 1 MTok = 1e6 tokens), so
"6,000 × 2,500" reads "6,000 tokens at $2.50/MTok". Expected values are
literals worked out by hand from the catalog's prices, not computed by code.
"""
from __future__ import annotations

import random
from datetime import datetime, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest
from genai_prices import Usage
from genai_prices import calc_price as genai_calc_price
from genai_prices.data_snapshot import get_snapshot

from costguardian.services.usage import catalog
from costguardian.services.usage.pricing import (OrgPrices, Rates, Tokens, catalog_rates, describe_catalog_price, to_nanos,
                                           usd_per_mtok_to_nanos)

T = datetime(2026, 11, 20, 10, 0)  # after every batch / service-tier variant in the catalog started


def case(provider, model, tokens, expected, when=T, batch=False, tier="", id=None):
    return pytest.param(provider, model, Tokens(*tokens), when, batch, tier, expected, id=id)


# (input incl. cached, cache_read, cache_write, output)
CASES = [
    # --- OpenAI ------------------------------------------------------------------------
    # gpt-4o $2.50 in / $1.25 cached / $10 out: 1,000 × 2,500 + 500 × 10,000 = 2,500,000 + 5,000,000
    case("openai", "gpt-4o", (1_000, 0, 0, 500), 7_500_000, id="openai gpt-4o plain"),
    # 6,000 uncached × 2,500 + 4,000 cached × 1,250 + 1,000 × 10,000 = 15,000,000 + 5,000,000 + 10,000,000
    case("openai", "gpt-4o-2024-08-06", (10_000, 4_000, 0, 1_000), 30_000_000, id="openai gpt-4o cached input"),
    # batch from 2026-10-14: $1.25 in / $5 out: 1,000 × 1,250 + 500 × 5,000 = 1,250,000 + 2,500,000
    case("openai", "gpt-4o", (1_000, 0, 0, 500), 3_750_000, batch=True, id="openai gpt-4o batch"),
    # batch before the variant's start date: standard prices, as the first case
    case("openai", "gpt-4o", (1_000, 0, 0, 500), 7_500_000, when=datetime(2026, 10, 13, 23, 59), batch=True,
         id="openai gpt-4o batch before its start date"),
    # batch keeps the standard cached price ($1.25): 6,000 × 1,250 + 4,000 × 1,250 + 1,000 × 5,000
    # = 7,500,000 + 5,000,000 + 5,000,000
    case("openai", "gpt-4o", (10_000, 4_000, 0, 1_000), 17_500_000, batch=True, id="openai gpt-4o batch cached"),
    # priority tier from 2026-10-12: $4.25 / $17: 1,000 × 4,250 + 500 × 17,000 = 4,250,000 + 8,500,000
    case("openai", "gpt-4o", (1_000, 0, 0, 500), 12_750_000, tier="priority", id="openai gpt-4o priority tier"),
    # gpt-4o-mini $0.15 / $0.60: 2,000 × 150 + 1,000 × 600 = 300,000 + 600,000
    case("openai", "gpt-4o-mini", (2_000, 0, 0, 1_000), 900_000, id="openai gpt-4o-mini"),
    # o3 before the 2025-06-10 price cut: $10 / $40: 1,000 × 10,000 + 1,000 × 40,000
    case("openai", "o3", (1_000, 0, 0, 1_000), 50_000_000, when=datetime(2025, 6, 9, 23, 59),
         id="openai o3 before price change"),
    # o3 from 2025-06-10: $2 / $8: 1,000 × 2,000 + 1,000 × 8,000
    case("openai", "o3", (1_000, 0, 0, 1_000), 10_000_000, when=datetime(2025, 6, 10, 0, 0),
         id="openai o3 after price change"),
    # o3 flex tier: $1 / $4: 1,000 × 1,000 + 1,000 × 4,000
    case("openai", "o3", (1_000, 0, 0, 1_000), 5_000_000, tier="flex", id="openai o3 flex tier"),
    # zero tokens cost nothing
    case("openai", "gpt-4o", (0, 0, 0, 0), 0, id="zero tokens"),
    # Azure prices gpt-4o through its OpenAI fallback, without OpenAI's batch variant (as genai-prices)
    case("azure_openai", "gpt-4o", (1_000, 0, 0, 500), 7_500_000, batch=True, id="azure gpt-4o batch via fallback"),
    # --- Anthropic -----------------------------------------------------------------------
    # claude-sonnet-4-5 $3 / $15: 10,000 × 3,000 + 2,000 × 15,000 = 30,000,000 + 30,000,000
    case("anthropic", "claude-sonnet-4-5", (10_000, 0, 0, 2_000), 60_000_000, id="anthropic sonnet 4.5 plain"),
    # cache read $0.30, cache write $3.75: 1,000 uncached × 3,000 + 6,000 × 300 + 3,000 × 3,750 + 500 × 15,000
    # = 3,000,000 + 1,800,000 + 11,250,000 + 7,500,000
    case("anthropic", "claude-sonnet-4-5-20250929", (10_000, 6_000, 3_000, 500), 23_550_000,
         id="anthropic sonnet 4.5 cache read and write"),
    # above 200k input every token takes the tier: $6 / $22.50: 250,000 × 6,000 + 1,000 × 22,500
    # = 1,500,000,000 + 22,500,000
    case("anthropic", "claude-sonnet-4-5", (250_000, 0, 0, 1_000), 1_522_500_000,
         id="anthropic sonnet 4.5 long context"),
    # exactly 200,000 is not above the tier's start: base prices: 200,000 × 3,000 + 1,000 × 15,000
    case("anthropic", "claude-sonnet-4-5", (200_000, 0, 0, 1_000), 615_000_000,
         id="anthropic sonnet 4.5 at the tier boundary"),
    # tier by total input (cached included): 50,000 × 6,000 + 200,000 × 600 + 50,000 × 7,500 + 2,000 × 22,500
    # = 300,000,000 + 120,000,000 + 375,000,000 + 45,000,000
    case("anthropic", "claude-sonnet-4-5", (300_000, 200_000, 50_000, 2_000), 840_000_000,
         id="anthropic sonnet 4.5 long context with cache"),
    # batch long context: $3 / $11.25: 250,000 × 3,000 + 1,000 × 11,250 = 750,000,000 + 11,250,000
    case("anthropic", "claude-sonnet-4-5", (250_000, 0, 0, 1_000), 761_250_000, batch=True,
         id="anthropic sonnet 4.5 batch long context"),
    # claude-opus-4-1 $15 / $1.50 read / $18.75 write / $75: 4,000 × 15,000 + 2,000 × 1,500 + 4,000 × 18,750
    # + 1,000 × 75,000 = 60,000,000 + 3,000,000 + 75,000,000 + 75,000,000
    case("anthropic", "claude-opus-4-1", (10_000, 2_000, 4_000, 1_000), 213_000_000,
         id="anthropic opus 4.1 cache write"),
    # claude-3-5-haiku $0.80 / $4: 1,000,000 × 800 + 100,000 × 4,000 = 800,000,000 + 400,000,000
    case("claude", "claude-3-5-haiku-latest", (1_000_000, 0, 0, 100_000), 1_200_000_000,
         id="anthropic haiku 3.5 via provider alias"),
    # claude-sonnet-4-6 before 2026-03-13 had long-context tiers: 250,000 × 6,000 + 1,000 × 22,500
    case("anthropic", "claude-sonnet-4-6", (250_000, 0, 0, 1_000), 1_522_500_000, when=datetime(2026, 3, 12, 23, 0),
         id="anthropic sonnet 4.6 before price change"),
    # from 2026-03-13 one flat price: 250,000 × 3,000 + 1,000 × 15,000 = 750,000,000 + 15,000,000
    case("anthropic", "claude-sonnet-4-6", (250_000, 0, 0, 1_000), 765_000_000, when=datetime(2026, 3, 13, 0, 0),
         id="anthropic sonnet 4.6 after price change"),
    # Bedrock cross-region sonnet 4.5 $3.30 / $0.33 read / $4.125 write / $16.50: 7,000 × 3,300 + 2,000 × 330
    # + 1,000 × 4,125 + 1,000 × 16,500 = 23,100,000 + 660,000 + 4,125,000 + 16,500,000
    case("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", (10_000, 2_000, 1_000, 1_000), 44_385_000,
         id="aws bedrock sonnet 4.5"),
    # --- Google --------------------------------------------------------------------------
    # gemini-2.5-pro $1.25 / $10: 100,000 × 1,250 + 10,000 × 10,000 = 125,000,000 + 100,000,000
    case("google", "gemini-2.5-pro", (100_000, 0, 0, 10_000), 225_000_000, id="google gemini 2.5 pro"),
    # above 200k: $2.50 / $0.25 cached / $15: 200,000 × 2,500 + 50,000 × 250 + 10,000 × 15,000
    # = 500,000,000 + 12,500,000 + 150,000,000
    case("vertex_ai", "gemini-2.5-pro", (250_000, 50_000, 0, 10_000), 662_500_000,
         id="google gemini 2.5 pro long context"),
    # batch $0.625 / $5: 100,000 × 625 + 10,000 × 5,000 = 62,500,000 + 50,000,000
    case("google", "gemini-2.5-pro", (100_000, 0, 0, 10_000), 112_500_000, batch=True,
         id="google gemini 2.5 pro batch"),
    # gemini-2.0-flash $0.10 / $0.025 cached / $0.40: 500,000 × 100 + 500,000 × 25 + 100,000 × 400
    # = 50,000,000 + 12,500,000 + 40,000,000
    case("Gemini", "models/gemini-2.0-flash", (1_000_000, 500_000, 0, 100_000), 102_500_000,
         id="google gemini 2.0 flash cached"),
    # --- Mistral -------------------------------------------------------------------------
    # mistral-large $2 / $6: 5,000 × 2,000 + 1,000 × 6,000 = 10,000,000 + 6,000,000
    case("mistral", "mistral-large-latest", (5_000, 0, 0, 1_000), 16_000_000, id="mistral large"),
    # mistral-small-latest before 2026-03-16: $0.10 / $0.30 and no cached price, so cached tokens cost input:
    # 10,000 × 100 + 1,000 × 300 = 1,000,000 + 300,000
    case("mistralai", "mistral-small-latest", (10_000, 4_000, 0, 1_000), 1_300_000,
         when=datetime(2026, 3, 15, 23, 59), id="mistral small before price change"),
    # from 2026-03-16: $0.15 / $0.015 cached / $0.60: 6,000 × 150 + 4,000 × 15 + 1,000 × 600
    # = 900,000 + 60,000 + 600,000
    case("mistral", "mistral-small-latest", (10_000, 4_000, 0, 1_000), 1_560_000, when=datetime(2026, 3, 16, 0, 0),
         id="mistral small after price change"),
    # batch cached $0.0075 = 7.5 nanos a token: 1 × 7.5 = 7.5 → half-even → 8
    case("mistral", "mistral-small-latest", (1, 1, 0, 0), 8, batch=True, id="rounding half-even up"),
    # 3 × 7.5 = 22.5 → half-even → 22
    case("mistral", "mistral-small-latest", (3, 3, 0, 0), 22, batch=True, id="rounding half-even down"),
    # 1 uncached × 75 (batch $0.075) + 1 × 7.5 = 82.5 → 82; rounded once per event, not per part
    case("mistral", "mistral-small-latest", (2, 1, 0, 0), 82, batch=True, id="rounding once per event"),
    # --- DeepSeek (time of day, UTC) --------------------------------------------------------
    # deepseek-chat 00:30-16:30 $0.27 / $0.07 cached / $1.10: 8,000 × 270 + 2,000 × 70 + 1,000 × 1,100
    # = 2,160,000 + 140,000 + 1,100,000
    case("deepseek", "deepseek-chat", (10_000, 2_000, 0, 1_000), 3_400_000, when=datetime(2026, 11, 20, 16, 29),
         id="deepseek chat standard hours"),
    # off-peak from 16:30: $0.135 / $0.035 / $0.55: 8,000 × 135 + 2,000 × 35 + 1,000 × 550
    # = 1,080,000 + 70,000 + 550,000
    case("deepseek", "deepseek-chat", (10_000, 2_000, 0, 1_000), 1_700_000, when=datetime(2026, 11, 20, 16, 30),
         id="deepseek chat off-peak"),
    # off-peak until 00:30: same as above
    case("deepseek", "deepseek-chat", (10_000, 2_000, 0, 1_000), 1_700_000, when=datetime(2026, 11, 21, 0, 29),
         id="deepseek chat off-peak after midnight"),
    # deepseek-reasoner standard $0.55 / $2.19: 1,000 × 550 + 10,000 × 2,190 = 550,000 + 21,900,000
    case("deepseek", "deepseek-reasoner", (1_000, 0, 0, 10_000), 22_450_000, when=datetime(2026, 11, 20, 0, 30),
         id="deepseek reasoner standard hours"),
    # --- xAI, Groq, Perplexity -------------------------------------------------------------
    # grok-3 $3 / $0.75 cached / $15: 5,000 × 3,000 + 5,000 × 750 + 1,000 × 15,000
    # = 15,000,000 + 3,750,000 + 15,000,000
    case("xai", "grok-3", (10_000, 5_000, 0, 1_000), 33_750_000, id="xai grok 3 cached"),
    # llama-3.3-70b-versatile $0.59 / $0.79: 100,000 × 590 + 20,000 × 790 = 59,000,000 + 15,800,000
    case("groq", "llama-3.3-70b-versatile", (100_000, 0, 0, 20_000), 74_800_000, id="groq llama 3.3 70b"),
    # sonar $1 / $1 plus $12 per 1,000 requests = 12,000,000 a request: 1,000,000 + 500,000 + 12,000,000
    case("perplexity", "sonar", (1_000, 0, 0, 500), 13_500_000, id="perplexity sonar per request"),
    # the request fee alone
    case("perplexity", "sonar", (0, 0, 0, 0), 12_000_000, id="perplexity sonar zero tokens"),
]


@pytest.mark.parametrize("provider_raw, model_raw, tokens, when, batch, tier, expected", CASES)
def test_hand_computed_prices(provider_raw, model_raw, tokens, when, batch, tier, expected):
    provider = catalog.normalize_provider(provider_raw)
    model, info = catalog.resolve_model(provider, model_raw)
    assert info is not None, (provider, model_raw)
    assert OrgPrices([]).price(provider, model, when, tokens, batch, tier) == (expected, "catalog")


def test_the_table_is_broad():
    providers = {catalog.normalize_provider(p.values[0]) for p in CASES}
    assert len(CASES) >= 30
    assert {"openai", "anthropic", "google", "mistral", "deepseek", "x-ai", "groq"} <= providers


def test_unknown_model_has_no_price():
    assert OrgPrices([]).price("openai", "my-fine-tune", T, Tokens(1000, 0, 0, 10)) == (None, "")
    assert OrgPrices([]).price("mycorp", "llama-x", T, Tokens(1000, 0, 0, 10)) == (None, "")
    assert catalog_rates("mycorp", "llama-x", T) is None


def test_model_priced_by_something_else_than_tokens_is_unpriced():
    snapshot = get_snapshot()
    for provider in snapshot.providers:
        for model in provider.models:
            price = model.get_prices(T.replace(tzinfo=timezone.utc))
            if price.input_mtok is None and price.output_mtok is None:
                assert catalog_rates(provider.id, model.id, T) is None, (provider.id, model.id)
                return
    pytest.skip("every catalog model has token prices")


# --- the catalog is the oracle --------------------------------------------------------

ORACLE_TIMES = [datetime(2024, 6, 1, 12), datetime(2025, 6, 9, 23, 59), datetime(2025, 12, 2, 0, 30),
                datetime(2026, 3, 16, 16, 30), datetime(2026, 11, 20, 3, 15)]


def _token_models():
    for provider in get_snapshot().providers:
        for model in provider.models:
            yield provider, model


def test_every_catalog_model_resolves_to_itself_by_its_id():
    """A stored model name is the catalog's id, so it must lead back to the same
    model in any process (some ids do not match their own match rules)."""
    for provider, model in _token_models():
        name, info = catalog.resolve_model(provider.id, model.id)
        assert info is model, (provider.id, model.id, name)


def test_fast_path_equals_the_catalog_for_every_model():
    rnd = random.Random(20261126)
    checked = 0
    for provider, model in _token_models():
        for when in ORACLE_TIMES:
            if model.get_prices(when.replace(tzinfo=timezone.utc)).input_mtok is None:
                continue
            if model.get_prices(when.replace(tzinfo=timezone.utc)).output_mtok is None:
                continue
            when = when.replace(minute=rnd.randrange(60))
            total = rnd.choice([0, 1, 7, 999, 12_345, 199_999, 200_001, 1_234_567])
            cache_read = rnd.randint(0, total)
            cache_write = rnd.randint(0, total - cache_read) if rnd.random() < 0.5 else 0
            output = rnd.randint(0, 100_000)
            contexts = [(False, "", None), (True, "", {"processing": "batch"})]
            tiers = sorted({v.when["service_tier"] for v in model.price_variants or () if "service_tier" in v.when})
            if tiers:
                tier = rnd.choice(tiers)
                contexts.append((False, tier, {"service_tier": tier}))
            for batch, tier, context in contexts:
                usage = Usage(input_tokens=total, cache_read_tokens=cache_read, cache_write_tokens=cache_write,
                              output_tokens=output)
                expected = to_nanos(model.calc_price(usage, provider, genai_request_timestamp=when.replace(
                    tzinfo=timezone.utc), price_context=context).total_price)
                got, _ = OrgPrices([]).price(provider.id, model.id, when,
                                             Tokens(total, cache_read, cache_write, output), batch, tier)
                assert got == expected, (provider.id, model.id, when, batch, tier, total, cache_read, cache_write,
                                         output)
                checked += 1
    assert checked > 5_000


@pytest.mark.parametrize("provider_raw, model_raw", [
    ("openai", "gpt-4o-2024-11-20"), ("azure", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5-20250929"),
    ("google", "gemini-2.5-flash"), ("aws", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("deepseek", "deepseek-chat"), ("x-ai", "grok-4-0709"), ("mistral", "mistral-large-latest"),
])
def test_names_as_sent_price_as_genai_prices_does(provider_raw, model_raw):
    """genai-prices' own top-level lookup, from the names an SDK sends."""
    provider = catalog.normalize_provider(provider_raw)
    model, _ = catalog.resolve_model(provider, model_raw)
    for when in (datetime(2026, 11, 20, 3, 0), datetime(2026, 11, 20, 20, 0)):
        for batch in (False, True):
            usage = Usage(input_tokens=250_000, cache_read_tokens=50_000, output_tokens=3_000)
            expected = to_nanos(genai_calc_price(usage, model_raw, provider_id=provider,
                                                 genai_request_timestamp=when.replace(tzinfo=timezone.utc),
                                                 price_context={"processing": "batch"} if batch else None)
                                .total_price)
            assert OrgPrices([]).price(provider, model, when, Tokens(250_000, 50_000, 0, 3_000), batch)[0] == expected


def test_time_of_day_prices_are_cached_per_minute_not_per_day():
    day = datetime(2026, 11, 20)
    standard = catalog_rates("deepseek", "deepseek-chat", day.replace(hour=10))
    off_peak = catalog_rates("deepseek", "deepseek-chat", day.replace(hour=20))
    assert standard.input == Decimal("0.27") and off_peak.input == Decimal("0.135")


# --- units ------------------------------------------------------------------------------

def test_to_nanos_rounds_half_even_once():
    assert to_nanos(Decimal("0.0000000005")) == 0
    assert to_nanos(Decimal("0.0000000015")) == 2
    assert to_nanos(Decimal("0.0000000025")) == 2
    assert to_nanos(Decimal("0.00000000251")) == 3
    assert to_nanos(Decimal("12.5")) == 12_500_000_000


def test_usd_per_mtok_to_nanos_is_exact():
    assert usd_per_mtok_to_nanos(Decimal("2.5")) == 2_500_000_000
    assert usd_per_mtok_to_nanos(Decimal("0.000000001")) == 1
    assert usd_per_mtok_to_nanos(Decimal("0")) == 0


def test_rates_without_cache_prices_charge_cached_tokens_as_input():
    rates = Rates(input=Decimal(2), cache_read=None, cache_write=None, output=Decimal(8))
    # 1,000 × 2,000 (cached or not) + 100 × 8,000 = 2,000,000 + 800,000 nanos = $0.0028
    assert rates.cost_usd(Tokens(1_000, 600, 300, 100)) == Decimal("0.0028")


def test_describe_catalog_price():
    assert describe_catalog_price("openai", "gpt-4o").startswith("$2.5/input MTok, $10/output MTok")
    assert describe_catalog_price("mycorp", "llama-x") is None


# --- an organization's own prices ---------------------------------------------------------

def override(provider, model, effective_from, input, output, cache_read=None, cache_write=None):
    """A PriceOverride's shape, without the database (prices in USD per MTok)."""
    def nanos(usd):
        return None if usd is None else usd_per_mtok_to_nanos(Decimal(usd))

    return SimpleNamespace(provider=provider, model=model, effective_from=effective_from,
                           input_nanos_per_mtok=nanos(input), output_nanos_per_mtok=nanos(output),
                           cache_read_nanos_per_mtok=nanos(cache_read), cache_write_nanos_per_mtok=nanos(cache_write))


TOKENS = Tokens(10_000, 4_000, 0, 1_000)


def test_override_wins_from_its_date_on():
    prices = OrgPrices([override("openai", "gpt-4o", datetime(2026, 11, 1), "2", "8", cache_read="0.5")])
    # before: the catalog: 6,000 × 2,500 + 4,000 × 1,250 + 1,000 × 10,000
    assert prices.price("openai", "gpt-4o", datetime(2026, 10, 31, 23, 59, 59), TOKENS) == (30_000_000, "catalog")
    # from the instant on: 6,000 × 2,000 + 4,000 × 500 + 1,000 × 8,000 = 12,000,000 + 2,000,000 + 8,000,000
    assert prices.price("openai", "gpt-4o", datetime(2026, 11, 1), TOKENS) == (22_000_000, "override")
    assert prices.price("openai", "gpt-4o", T, TOKENS) == (22_000_000, "override")
    # other models are untouched
    assert prices.price("openai", "gpt-4o-mini", T, TOKENS)[1] == "catalog"


def test_two_overrides_on_different_dates():
    prices = OrgPrices([override("openai", "gpt-4o", datetime(2026, 9, 1), "1", "4"),
                        override("openai", "gpt-4o", datetime(2026, 6, 1), "3", "12")])
    assert prices.price("openai", "gpt-4o", datetime(2026, 5, 31), TOKENS) == (30_000_000, "catalog")
    # 10,000 × 3,000 + 1,000 × 12,000 (no cached price: cached tokens cost input)
    assert prices.price("openai", "gpt-4o", datetime(2026, 6, 1), TOKENS) == (42_000_000, "override")
    assert prices.price("openai", "gpt-4o", datetime(2026, 8, 31, 23), TOKENS) == (42_000_000, "override")
    # 10,000 × 1,000 + 1,000 × 4,000
    assert prices.price("openai", "gpt-4o", datetime(2026, 9, 1), TOKENS) == (14_000_000, "override")


def test_override_for_a_provider_the_catalog_lacks():
    prices = OrgPrices([override("mycorp", "llama-x", datetime(2026, 1, 1), "0.2", "0.6")])
    assert prices.price("mycorp", "llama-x", datetime(2025, 12, 31), TOKENS) == (None, "")
    # 10,000 × 200 + 1,000 × 600 = 2,000,000 + 600,000
    assert prices.price("mycorp", "llama-x", datetime(2026, 1, 2), TOKENS) == (2_600_000, "override")


def test_override_cache_prices_default_to_the_input_price():
    without = OrgPrices([override("anthropic", "claude-opus-4-1", datetime(2026, 1, 1), "10", "50")])
    with_cache = OrgPrices([override("anthropic", "claude-opus-4-1", datetime(2026, 1, 1), "10", "50",
                                     cache_read="1", cache_write="12.5")])
    tokens = Tokens(10_000, 2_000, 4_000, 1_000)
    # every input token at 10,000: 10,000 × 10,000 + 1,000 × 50,000 = 100,000,000 + 50,000,000
    assert without.price("anthropic", "claude-opus-4-1", T, tokens) == (150_000_000, "override")
    # 4,000 × 10,000 + 2,000 × 1,000 + 4,000 × 12,500 + 1,000 × 50,000 = 40M + 2M + 50M + 50M
    assert with_cache.price("anthropic", "claude-opus-4-1", T, tokens) == (142_000_000, "override")


def test_override_ignores_batch_and_tiers():
    """An organization's price is the price: no catalog batch discount or tier on top."""
    prices = OrgPrices([override("anthropic", "claude-sonnet-4-5", datetime(2026, 1, 1), "2", "10")])
    # 250,000 × 2,000 + 1,000 × 10,000 = 500,000,000 + 10,000,000
    assert prices.price("anthropic", "claude-sonnet-4-5", T, Tokens(250_000, 0, 0, 1_000), batch=True) == (
        510_000_000, "override")


def test_override_prices_below_a_nano_per_token_are_exact():
    prices = OrgPrices([override("mycorp", "tiny", datetime(2026, 1, 1), "0.000000001", "0.0001")])
    # input: 1e-15 USD a token × 1,000,000 = 1e-9 USD = 1 nano; output 1e-10 USD × 1,000,000 = 1e-4 USD
    # = 100,000 nanos
    assert prices.price("mycorp", "tiny", T, Tokens(1_000_000, 0, 0, 1_000_000)) == (100_001, "override")

"""The cost engine: the exact price of one call in nano-dollars, or None when
the model has no known price (never a silent $0).

Prices come from the `genai-prices` catalog (historical prices by the call's
own time, cache read and write prices, tiered long-context prices, batch and
service-tier variants), unless the organization set its own price for the
model from a date on (a PriceOverride), which then wins; else the platform's
price for it (a GlobalPriceOverride, set in the console for every
organization), which wins over the catalog.

The catalog costs about 80 µs a call, so it is consulted once per (provider,
model, price period) and its prices kept as a small `Rates` record; each event
then costs a few Decimal multiplications. A test checks the fast path against
`genai_prices.calc_price` for every model in the catalog.

Token semantics are those of genai-prices: `input_tokens` counts every prompt
token, including the ones read from or written to cache; a cache price the
model lacks means those tokens cost the input price.
"""
from __future__ import annotations

import threading
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal

from genai_prices import types as gp_types
from peewee import SQL

from costguardian import clock
from costguardian.prepared import Prepared
from costguardian.services.usage import catalog

NANOS_PER_USD = Decimal(1_000_000_000)
MILLION = Decimal(1_000_000)
_ONE = Decimal(1)


@dataclass(frozen=True)
class Tokens:
    input: int = 0  # every prompt token, cached ones included
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0


@dataclass(frozen=True)
class Rates:
    """USD per million tokens (Decimal, or TieredPrices), and USD per request."""

    input: object
    cache_read: object | None
    cache_write: object | None
    output: object | None
    per_request: Decimal | None = None

    def cost_usd(self, tokens: Tokens) -> Decimal:
        total_input = tokens.input
        uncached = tokens.input
        amount = Decimal(0)
        if self.cache_read is not None:
            uncached -= tokens.cache_read
            amount += tokens.cache_read * _rate(self.cache_read, total_input)
        if self.cache_write is not None:
            uncached -= tokens.cache_write
            amount += tokens.cache_write * _rate(self.cache_write, total_input)
        amount += uncached * _rate(self.input, total_input)
        if self.output is not None:
            amount += tokens.output * _rate(self.output, total_input)
        amount = amount / MILLION
        if self.per_request is not None:
            amount += self.per_request
        return amount


def _rate(price, total_input_tokens: int) -> Decimal:
    """A flat price, or the tier that the call's total input tokens reach
    (genai-prices' rule: the highest tier whose start is exceeded)."""
    if isinstance(price, gp_types.TieredPrices):
        for tier in reversed(price.tiers):
            if total_input_tokens > tier.start:
                return tier.price
        return price.base
    return price


def to_nanos(usd: Decimal) -> int:
    """Round once, half-even, to whole nano-dollars."""
    return int((usd * NANOS_PER_USD).quantize(_ONE, rounding=ROUND_HALF_EVEN))


# --- the catalog's prices, cached per price period ------------------------------

SUPPORTED_PRICE_KEYS = {"input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok", "requests_kcount"}

_catalog_rates: dict[tuple, Rates | None] = {}
_catalog_lock = threading.Lock()
_CACHE_LIMIT = 50_000


def _period_key(model: gp_types.ModelInfo, when: datetime) -> tuple:
    """Prices change by date (StartDateConstraint); a few models also by time
    of day (off-peak prices). The key is as coarse as the model allows."""
    conditional = model.prices if isinstance(model.prices, list) else []
    if any(isinstance(c.constraint, gp_types.TimeOfDateConstraint) for c in conditional) or any(
            isinstance(v.constraint, gp_types.TimeOfDateConstraint) for v in model.price_variants or ()):
        return (when.date(), when.hour, when.minute)
    return (when.date(),)


def _context(batch: bool, service_tier: str) -> dict | None:
    context = {}
    if batch:
        context["processing"] = "batch"
    if service_tier:
        context["service_tier"] = service_tier
    return context or None


def catalog_rates(provider: str, model: str, when: datetime, batch: bool = False,
                  service_tier: str = "") -> Rates | None:
    """The catalog's rates for a normalised (provider, model) at `when` (naive
    UTC), or None when the catalog has no price for it."""
    info = catalog.model_info(provider, model)
    if info is None:
        return None
    key = (provider, model, batch, service_tier) + _period_key(info, when)
    try:
        return _catalog_rates[key]
    except KeyError:
        pass
    context = _context(batch, service_tier)
    if context and not catalog.is_own_model(provider, info):
        context = None  # as genai-prices: a fallback provider's model (Azure's gpt-4o) has no variants
    rates = _rates_from_catalog(info, when.replace(tzinfo=timezone.utc), context)
    with _catalog_lock:
        if len(_catalog_rates) >= _CACHE_LIMIT:
            _catalog_rates.clear()
        _catalog_rates[key] = rates
    return rates


def _rates_from_catalog(info: gp_types.ModelInfo, when: datetime, context: dict | None) -> Rates | None:
    price = info.get_prices(when, context)
    if price.input_mtok is None and price.output_mtok is None:
        return None  # the model is priced by something other than tokens (audio hours, pages …)
    per_request = price.requests_kcount / 1000 if price.requests_kcount is not None else None
    return Rates(input=price.input_mtok if price.input_mtok is not None else Decimal(0),
                 cache_read=price.cache_read_mtok, cache_write=price.cache_write_mtok,
                 output=price.output_mtok, per_request=per_request)


# --- an organization's own prices, and the platform's ---------------------------

@dataclass(frozen=True)
class OverrideRates:
    effective_from: datetime
    rates: Rates


def _by_model(rows) -> tuple[dict, dict]:
    by_model: dict[tuple[str, str], list[OverrideRates]] = {}
    for row in sorted(rows, key=lambda r: r.effective_from):
        by_model.setdefault((row.provider, row.model), []).append(
            OverrideRates(row.effective_from, override_rates(row)))
    return by_model, {k: [o.effective_from for o in v] for k, v in by_model.items()}


def _in_effect(by_model: dict, starts: dict, provider: str, model: str, when: datetime) -> Rates | None:
    model_starts = starts.get((provider, model))
    if not model_starts:
        return None
    index = bisect_right(model_starts, when) - 1
    return by_model[(provider, model)][index].rates if index >= 0 else None


class OrgPrices:
    """Everything needed to price one organization's events: its overrides
    and the platform's (global) ones, loaded once (per ingest batch, gateway
    call or repricing run). Precedence per (provider, model): the
    organization's own override in effect at the call's time, else the
    global one in effect then, else the catalog."""

    def __init__(self, overrides, global_overrides=()):
        self._overrides, self._starts = _by_model(overrides)
        self._global, self._global_starts = _by_model(global_overrides)

    @classmethod
    def for_org(cls, org) -> "OrgPrices":
        from costguardian import settings_cache

        org_id = getattr(org, "id", org)
        return settings_cache.cached("prices", org_id, None, lambda: cls._load(org_id))

    @classmethod
    def _load(cls, org_id: int) -> "OrgPrices":
        own, platform = [], []
        for row in _OVERRIDES.execute(org_id):
            (own if row.organization is not None else platform).append(row)
        return cls(own, platform)

    def override_for(self, provider: str, model: str, when: datetime) -> Rates | None:
        return _in_effect(self._overrides, self._starts, provider, model, when)

    def global_override_for(self, provider: str, model: str, when: datetime) -> Rates | None:
        return _in_effect(self._global, self._global_starts, provider, model, when)

    def price(self, provider: str, model: str, when: datetime, tokens: Tokens, batch: bool = False,
              service_tier: str = "") -> tuple[int | None, str]:
        """(cost in nano-dollars or None, "override" | "global" | "catalog" | "")."""
        rates = self.override_for(provider, model, when)
        if rates is not None:
            return to_nanos(rates.cost_usd(tokens)), "override"
        rates = self.global_override_for(provider, model, when)
        if rates is not None:
            return to_nanos(rates.cost_usd(tokens)), "global"
        rates = catalog_rates(provider, model, when, batch, service_tier)
        if rates is not None:
            return to_nanos(rates.cost_usd(tokens)), "catalog"
        return None, ""


def override_rates(row) -> Rates:
    def per_mtok(nanos):
        return None if nanos is None else Decimal(nanos) / NANOS_PER_USD

    return Rates(input=per_mtok(row.input_nanos_per_mtok), cache_read=per_mtok(row.cache_read_nanos_per_mtok),
                 cache_write=per_mtok(row.cache_write_nanos_per_mtok), output=per_mtok(row.output_nanos_per_mtok))


def usd_per_mtok_to_nanos(value: Decimal) -> int:
    """A price typed as USD per million tokens, stored exactly as nanos per Mtok."""
    return int((value * NANOS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def describe_catalog_price(provider: str, model: str, when: date | None = None) -> str | None:
    """The catalog's price line for a model, for screens ("$2.5/input MTok, …")."""
    info = catalog.model_info(provider, model)
    if info is None:
        return None
    moment = datetime.combine(when or clock.now().date(), datetime.min.time(), timezone.utc)
    return str(info.get_prices(moment))


_PRICE_COLUMNS = ("provider", "model", "effective_from", "input_nanos_per_mtok", "cache_read_nanos_per_mtok",
                  "cache_write_nanos_per_mtok", "output_nanos_per_mtok")


def _overrides_of(org_id: int):
    """The organization's overrides and the platform's, in one statement (one
    round trip): `organization` is None on the platform's rows."""
    from costguardian.models import GlobalPriceOverride, PriceOverride  # models import this module

    own = PriceOverride.select(*(getattr(PriceOverride, name) for name in _PRICE_COLUMNS),
                               PriceOverride.organization.alias("organization")).where(
        PriceOverride.organization == org_id)
    platform = GlobalPriceOverride.select(*(getattr(GlobalPriceOverride, name) for name in _PRICE_COLUMNS),
                                          SQL("NULL").alias("organization"))
    return (own + platform).namedtuples()  # UNION ALL


_OVERRIDES = Prepared(_overrides_of)  # read by every ingest batch and gateway call: SQL built once

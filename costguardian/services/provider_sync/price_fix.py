"""The cost check's one-click fix: when a provider keeps billing a model at a
different price than ours (a price change the catalog has not caught up with),
an organization price override from the day the drift started, with the rates
in effect then scaled by billed ÷ priced. The override is an ordinary one
(services/usage/prices): validated, audit-logged, stored usage repriced."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal

from costguardian.services.actor import Actor
from costguardian.services.errors import ValidationError
from costguardian.services.provider_sync import connections, reconcile
from costguardian.services.usage import prices
from costguardian.services.usage.pricing import OrgPrices, Rates, catalog_rates

RATIO_PLACES = Decimal("0.0001")
PRICE_PLACES = Decimal("0.000000001")  # prices keep at most 9 decimals


@dataclass
class PriceFix:
    model: str
    first_day: date  # UTC, the first day of the drift still going on
    last_day: date
    ratio: Decimal  # billed ÷ our price over those days, 4 decimals
    source: str  # "catalog" | "override" | "global": whose rates are scaled
    current: dict  # price field -> USD per MTok (Decimal or None)
    proposed: dict

    @staticmethod
    def shown(price) -> str:
        """A price per MTok for the screen: at least cents ("2.50"), every decimal it has."""
        if price is None:
            return "—"
        return f"${price:.2f}" if price == price.quantize(Decimal("0.01")) else f"${price.normalize():f}"


def _flat(price) -> Decimal | None:
    if price is None:
        return None
    return getattr(price, "base", price)  # a tiered price: its base tier


def _rates_at(org_prices: OrgPrices, provider: str, model: str, when: datetime) -> tuple[Rates | None, str]:
    rates = org_prices.override_for(provider, model, when)
    if rates is not None:
        return rates, "override"
    rates = org_prices.global_override_for(provider, model, when)
    if rates is not None:
        return rates, "global"
    return catalog_rates(provider, model, when), "catalog"


def suggestions(org, conn, first_utc: date, last_utc: date) -> list[PriceFix]:
    """Per model whose latest checked day is flagged: the run of flagged days
    it ends, and the override that would close it."""
    by_model: dict[str, list] = {}
    for check in reconcile.cost_check(org, conn, first_utc, last_utc):
        by_model.setdefault(check.model, []).append(check)
    org_prices = OrgPrices.for_org(org)
    fixes = []
    for model, checks in sorted(by_model.items()):
        run = []
        for check in reversed(checks):  # days ascending in cost_check
            if not check.flagged or not check.ratio:
                break
            run.insert(0, check)
        if not run:
            continue
        billed, priced = sum(c.billed_nanos for c in run), sum(c.priced_nanos for c in run)
        ratio = (Decimal(billed) / priced).quantize(RATIO_PLACES)
        if ratio <= 0:
            continue
        rates, source = _rates_at(org_prices, conn.provider, model, datetime.combine(run[0].day, time(0)))
        if rates is None:
            continue
        current = {"input_price": _flat(rates.input), "cache_read_price": _flat(rates.cache_read),
                   "cache_write_price": _flat(rates.cache_write), "output_price": _flat(rates.output)}
        proposed = {name: None if value is None else (value * ratio).quantize(PRICE_PLACES).normalize()
                    for name, value in current.items()}
        if proposed["output_price"] is None:
            proposed["output_price"] = Decimal(0)  # an override needs one (embeddings have no output price)
        fixes.append(PriceFix(model, run[0].day, run[-1].day, ratio, source, current, proposed))
    return fixes


def start_day(org, fix: PriceFix) -> date:
    """The organization's local day whose midnight comes at or before the
    start of the first drifting UTC day, so the override covers all of it."""
    return prices.local_date(org, datetime.combine(fix.first_day, time(0), timezone.utc).replace(tzinfo=None))


def apply(org, actor: Actor, conn, model: str, first_utc: date, last_utc: date):
    """Create the suggested override for `model` (recomputed here, never taken
    from the form); ValidationError when there is nothing to fix."""
    fix = next((f for f in suggestions(org, conn, first_utc, last_utc) if f.model == model), None)
    if fix is None:
        raise ValidationError({"model": f"The cost check does not flag {model or 'this model'} in this range."})
    label = connections.LABELS.get(conn.provider, conn.provider)
    whose = {"catalog": "catalog", "override": "our override", "global": "platform"}[fix.source]
    note = (f"Cost check: {label} billed {fix.ratio}x our price for {fix.first_day.isoformat()}"
            f"–{fix.last_day.isoformat()} (UTC); {whose} rates scaled by {fix.ratio}.")
    return prices.create_override(org, actor, provider=conn.provider, model=model, effective_from=start_day(org, fix),
                                  note=note[:200], **{k: None if v is None else str(v)
                                                      for k, v in fix.proposed.items()})

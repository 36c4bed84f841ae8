"""Global price overrides: the platform's price for a model from a date on
(midnight UTC), for every organization that has no price of its own for it.
Precedence when an event is priced (services/usage/pricing.OrgPrices): the
organization's own override, then a global one, then the catalog.

Validated like an organization's overrides (services/usage/prices.py, whose
parsing and checks are reused), audit-logged, and every change reprices the
stored usage of the model in each organization that has any, in the
background, exactly as an organization's own override change does."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

from peewee import IntegrityError

from costguardian.extensions import db
from costguardian.models import GlobalPriceOverride, Organization, UsageRollup
from costguardian.services.actor import Actor
from costguardian.services.platform.guards import require_superadmin
from costguardian.services.errors import ValidationError
from costguardian.services.team import audit
from costguardian.services.usage import catalog
from costguardian.services.usage.prices import PRICE_COLUMNS, catalog_token_prices, usd_per_mtok, validated_price_input
from costguardian.services.usage.repricing import schedule_reprice


def _validated(provider, model, effective_from, prices: dict, note) -> dict:
    provider, model, columns, note = validated_price_input(provider, model, effective_from, prices, note,
                                                           model_limit=128)
    # The name events get (the catalog's id for a known model), so that the price applies to them;
    # organizations' own aliases map their names onto these same ids before pricing.
    return {"provider": provider, "model": catalog.resolve_model(provider, model)[0][:128],
            "effective_from": datetime.combine(effective_from, time.min), "note": note, **columns}


def _duplicate(fields: dict) -> ValidationError:
    return ValidationError({"effective_from": (
        f"{fields['provider']}/{fields['model']} already has a global price from "
        f"{fields['effective_from'].date().isoformat()}; edit that one instead.")})


def _check_unique(fields: dict, except_id: int | None = None) -> None:
    query = GlobalPriceOverride.select().where(GlobalPriceOverride.provider == fields["provider"],
                                               GlobalPriceOverride.model == fields["model"],
                                               GlobalPriceOverride.effective_from == fields["effective_from"])
    if except_id is not None:
        query = query.where(GlobalPriceOverride.id != except_id)
    if query.exists():
        raise _duplicate(fields)


def form_data(row: GlobalPriceOverride) -> dict:
    """A global override's values in the shape the form takes (USD per MTok, "" when unset)."""
    return {"provider": row.provider, "model": row.model, "effective_from": row.effective_from.date(),
            **{name: usd_per_mtok(getattr(row, column)) for name, column in PRICE_COLUMNS.items()}, "note": row.note}


def _described(row: GlobalPriceOverride) -> dict:
    values = form_data(row)
    return {**values, "effective_from": values["effective_from"].isoformat()}


def reprice_everywhere(provider: str, model: str) -> int:
    """Reprice (in the background) the stored usage of the model in every
    organization that has any; those with a price of their own keep it (the
    repricing applies the same precedence). Returns how many were scheduled."""
    with_usage = (UsageRollup.select(UsageRollup.organization).distinct()
                  .where(UsageRollup.provider == provider, UsageRollup.model == model))
    orgs = list(Organization.select(Organization.id).where(Organization.id.in_(with_usage)))
    for org in orgs:
        schedule_reprice(org, provider, model)
    return len(orgs)


def create(actor: Actor, *, provider: str, model: str, effective_from: date, input_price, output_price,
           cache_read_price=None, cache_write_price=None, note: str = "") -> GlobalPriceOverride:
    require_superadmin(actor)
    fields = _validated(provider, model, effective_from, {
        "input_price": input_price, "cache_read_price": cache_read_price,
        "cache_write_price": cache_write_price, "output_price": output_price}, note)
    _check_unique(fields)
    try:
        with db.atomic():
            row = GlobalPriceOverride.create(**fields)
    except IntegrityError:  # the same price was added between the check and the insert
        raise _duplicate(fields) from None
    audit.record(actor, "platform.global_price_created", target=row, **_described(row))
    reprice_everywhere(row.provider, row.model)
    return row


def update(row: GlobalPriceOverride, actor: Actor, *, provider: str, model: str, effective_from: date, input_price,
           output_price, cache_read_price=None, cache_write_price=None, note: str = "") -> GlobalPriceOverride:
    require_superadmin(actor)
    fields = _validated(provider, model, effective_from, {
        "input_price": input_price, "cache_read_price": cache_read_price,
        "cache_write_price": cache_write_price, "output_price": output_price}, note)
    before, after = _described(row), _described(GlobalPriceOverride(**fields))
    changes = {name: [before[name], after[name]] for name in after if before[name] != after[name]}
    if not changes:
        return row
    _check_unique(fields, except_id=row.id)
    old_model = (row.provider, row.model)
    for name, value in fields.items():
        setattr(row, name, value)
    try:
        with db.atomic():
            row.save()
    except IntegrityError:
        raise _duplicate(fields) from None
    audit.record(actor, "platform.global_price_updated", target=row, provider=row.provider, model=row.model,
                 changes=changes)
    for provider_model in dict.fromkeys([old_model, (row.provider, row.model)]):
        reprice_everywhere(*provider_model)
    return row


def delete(row: GlobalPriceOverride, actor: Actor) -> None:
    require_superadmin(actor)
    described = _described(row)
    row.delete_instance()
    audit.record(actor, "platform.global_price_deleted", target=row, **described)
    reprice_everywhere(row.provider, row.model)


def get(row_id) -> GlobalPriceOverride | None:
    return GlobalPriceOverride.get_or_none(GlobalPriceOverride.id == row_id)


@dataclass
class Row:
    """A global override as the configuration page shows it: its values as
    typed and the catalog's price today, for comparison."""

    override: GlobalPriceOverride
    values: dict
    catalog_price: str | None


def rows() -> list[Row]:
    query = GlobalPriceOverride.select().order_by(GlobalPriceOverride.provider, GlobalPriceOverride.model,
                                                  GlobalPriceOverride.effective_from)
    return [Row(o, form_data(o), catalog_token_prices(o.provider, o.model)) for o in query]

"""An organization's own prices (PriceOverride) and model names (ModelAlias).
Every change brings the usage already stored in line (services.usage.repricing)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from peewee import IntegrityError

from costguardian.extensions import db
from costguardian.models import ModelAlias, Organization, PriceOverride
from costguardian.services.team import audit
from costguardian.services.usage import catalog
from costguardian.services.actor import Actor
from costguardian.services.errors import ValidationError
from costguardian.services.usage.repricing import reattribute, schedule_reprice
from costguardian.services.usage.rollups import unpriced_models
from costguardian.services.usage.pricing import NANOS_PER_USD, describe_catalog_price, usd_per_mtok_to_nanos
from costguardian.timefmt import DATE_MESSAGE

MAX_PRICE = Decimal(10_000)  # USD per million tokens; far above any model's, far below overflowing a cost
MAX_DECIMALS = 9  # so that a price is a whole number of nano-dollars per million tokens
EARLIEST_DATE = date(2015, 1, 1)
LATEST_DATE = date(2100, 1, 1)
PRICE_FIELDS = ("input_price", "cache_read_price", "cache_write_price", "output_price")
PRICE_COLUMNS = {"input_price": "input_nanos_per_mtok", "cache_read_price": "cache_read_nanos_per_mtok",
           "cache_write_price": "cache_write_nanos_per_mtok", "output_price": "output_nanos_per_mtok"}


# --- input ----------------------------------------------------------------------

def parse_price(value, required: bool = True) -> Decimal | None:
    """A price typed as USD per million tokens ("2.5", "$0.15"), or ValueError
    with a message for the person who typed it. None when empty and optional."""
    if isinstance(value, str):
        value = value.strip().removeprefix("$").strip().replace(",", "")
    if value is None or value == "":
        if required:
            raise ValueError("Enter a price in USD per million tokens, e.g. 2.50.")
        return None
    if isinstance(value, float):
        raise ValueError("Give the price as a decimal string, not a float.")  # callers in code, never people
    try:
        price = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError("Not a number: use digits and a decimal point, e.g. 2.50.") from None
    if not price.is_finite():
        raise ValueError("Not a number: use digits and a decimal point, e.g. 2.50.")
    if price < 0:
        raise ValueError("A price cannot be negative.")
    if price > MAX_PRICE:
        raise ValueError(f"At most ${MAX_PRICE:,} per million tokens.")
    if price.normalize().as_tuple().exponent < -MAX_DECIMALS:
        raise ValueError(f"At most {MAX_DECIMALS} decimal places.")
    return price


def usd_per_mtok(nanos: int | None) -> str:
    """Nano-dollars per million tokens as the plain decimal people typed ("2.5")."""
    if nanos is None:
        return ""
    return format((Decimal(nanos) / NANOS_PER_USD).normalize(), "f")


def zone(org: Organization) -> ZoneInfo:
    return ZoneInfo(org.time_zone or "UTC")


def local_midnight_utc(org: Organization, day: date) -> datetime:
    """Midnight starting `day` in the organization's zone, as naive UTC."""
    return datetime.combine(day, time.min, zone(org)).astimezone(timezone.utc).replace(tzinfo=None)


def local_date(org: Organization, moment: datetime) -> date:
    return moment.replace(tzinfo=timezone.utc).astimezone(zone(org)).date()


def local_datetime(org: Organization, moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc).astimezone(zone(org))


def event_model_name(org: Organization, provider: str, raw_model: str) -> str:
    """The name events get for this model (an alias's model, else the catalog's
    id, else the cleaned name), so that a price applies to the same events."""
    raw = (raw_model or "").strip()
    alias = ModelAlias.in_org(org).where(ModelAlias.provider == provider, ModelAlias.alias == raw.lower()).first()
    return alias.model if alias is not None else catalog.resolve_model(provider, raw)[0]


def _name(value: str, field: str, limit: int, missing: str, errors: dict) -> str:
    if not value:
        errors[field] = missing
    elif len(value) > limit:
        errors[field] = f"At most {limit} characters."
    return value


def validated_price_input(provider, model, effective_from, prices: dict, note,
                          model_limit: int = 200) -> tuple[str, str, dict, str]:
    """The checks every price override shares (an organization's and a global
    one): (provider, model as typed, {price column: nanos per Mtok or None},
    note), or ValidationError with a message per field."""
    errors: dict[str, str] = {}
    provider = _name(catalog.normalize_provider(provider or ""), "provider", 64, "Enter the provider, e.g. openai.",
                     errors)
    model = _name((model or "").strip(), "model", model_limit, "Enter the model, e.g. gpt-4o.", errors)
    if not isinstance(effective_from, date) or isinstance(effective_from, datetime):
        errors["effective_from"] = DATE_MESSAGE
    elif not EARLIEST_DATE <= effective_from < LATEST_DATE:
        errors["effective_from"] = f"Choose a date between {EARLIEST_DATE.year} and {LATEST_DATE.year - 1}."
    parsed = {}
    for name in PRICE_FIELDS:
        try:
            parsed[name] = parse_price(prices.get(name), required=name in ("input_price", "output_price"))
        except ValueError as exc:
            errors[name] = str(exc)
    note = (note or "").strip()
    if len(note) > 200:
        errors["note"] = "At most 200 characters."
    if errors:
        raise ValidationError(errors)
    columns = {PRICE_COLUMNS[name]: None if price is None else usd_per_mtok_to_nanos(price)
               for name, price in parsed.items()}
    return provider, model, columns, note


def _validated_override(org, provider, model, effective_from, prices: dict, note) -> dict:
    provider, model, columns, note = validated_price_input(provider, model, effective_from, prices, note)
    return {"provider": provider, "model": event_model_name(org, provider, model),
            "effective_from": local_midnight_utc(org, effective_from), "note": note, **columns}


def _duplicate(org, fields: dict) -> ValidationError:
    return ValidationError({"effective_from": (
        f"{fields['provider']}/{fields['model']} already has a price from "
        f"{local_date(org, fields['effective_from']).isoformat()}; edit that one instead.")})


def _check_unique(org, fields: dict, except_id: int | None = None) -> None:
    query = PriceOverride.in_org(org).where(PriceOverride.provider == fields["provider"],
                                            PriceOverride.model == fields["model"],
                                            PriceOverride.effective_from == fields["effective_from"])
    if except_id is not None:
        query = query.where(PriceOverride.id != except_id)
    if query.exists():
        raise _duplicate(org, fields)


def _described(org, override: PriceOverride) -> dict:
    """An override's values for the audit log, as people typed them."""
    values = override_form_data(org, override)
    return {**values, "effective_from": values["effective_from"].isoformat()}


# --- overrides --------------------------------------------------------------------

def create_override(org: Organization, actor: Actor, *, provider: str, model: str, effective_from: date,
                    input_price, output_price, cache_read_price=None, cache_write_price=None,
                    note: str = "") -> PriceOverride:
    """The organization's own price for a model from a date on (midnight in its
    time zone). Stored usage of the model is repriced in the background."""
    fields = _validated_override(org, provider, model, effective_from, {
        "input_price": input_price, "cache_read_price": cache_read_price,
        "cache_write_price": cache_write_price, "output_price": output_price}, note)
    _check_unique(org, fields)
    try:
        with db.atomic():
            row = PriceOverride.create(organization=org, **fields)
    except IntegrityError:  # the same price was added between the check and the insert
        raise _duplicate(org, fields) from None
    audit.record(actor, "price_override.created", org=org, target=row, **_described(org, row))
    schedule_reprice(org, row.provider, row.model)
    return row


def update_override(override: PriceOverride, actor: Actor, *, provider: str, model: str, effective_from: date,
                    input_price, output_price, cache_read_price=None, cache_write_price=None,
                    note: str = "") -> PriceOverride:
    org = override.organization
    fields = _validated_override(org, provider, model, effective_from, {
        "input_price": input_price, "cache_read_price": cache_read_price,
        "cache_write_price": cache_write_price, "output_price": output_price}, note)
    before, after = _described(org, override), _described(org, PriceOverride(**fields))
    changes = {name: [before[name], after[name]] for name in after if before[name] != after[name]}
    if not changes:
        return override
    _check_unique(org, fields, except_id=override.id)
    old_model = (override.provider, override.model)
    for name, value in fields.items():
        setattr(override, name, value)
    try:
        with db.atomic():
            override.save()
    except IntegrityError:
        raise _duplicate(org, fields) from None
    audit.record(actor, "price_override.updated", org=org, target=override, provider=override.provider,
                 model=override.model, changes=changes)
    for provider_model in dict.fromkeys([old_model, (override.provider, override.model)]):
        schedule_reprice(org, *provider_model)
    return override


def delete_override(override: PriceOverride, actor: Actor) -> None:
    org = override.organization
    described = _described(org, override)
    override.delete_instance()
    audit.record(actor, "price_override.deleted", org=org, target=override, **described)
    schedule_reprice(org, override.provider, override.model)


def get_override(org: Organization, override_id) -> PriceOverride | None:
    """The organization's price override with this id; None for an unknown id or another tenant's."""
    return PriceOverride.get_in_org(org, override_id)


def overrides_of(org: Organization) -> list[PriceOverride]:
    return list(PriceOverride.in_org(org).order_by(PriceOverride.provider, PriceOverride.model,
                                                   PriceOverride.effective_from))


@dataclass
class OverrideRow:
    """An override as the prices page shows it: its values as typed (the
    form's fields) and the catalog's price today, for comparison."""

    override: PriceOverride
    values: dict
    catalog_price: str | None


def override_rows(org: Organization) -> list[OverrideRow]:
    return [OverrideRow(o, override_form_data(org, o), catalog_token_prices(o.provider, o.model))
            for o in overrides_of(org)]


def catalog_token_prices(provider: str, model: str) -> str | None:
    """The catalog's price line today, its token prices only (an override has no others)."""
    line = describe_catalog_price(provider, model)
    if line is None:
        return None
    return ", ".join(part for part in line.split(", ") if "MTok" in part) or line


def override_form_data(org: Organization, override: PriceOverride) -> dict:
    """An override's values in the shape the form takes (prices in USD per MTok, "" when unset)."""
    return {"provider": override.provider, "model": override.model,
            "effective_from": local_date(org, override.effective_from),
            **{name: usd_per_mtok(getattr(override, column)) for name, column in PRICE_COLUMNS.items()},
            "note": override.note}


# --- unpriced models -------------------------------------------------------------

@dataclass
class UnpricedModel:
    provider: str
    model: str
    requests: int
    first_seen: datetime  # local, the hour of the first unpriced call
    last_seen: datetime

    @property
    def first_date(self) -> date:
        return self.first_seen.date()


def unpriced(org: Organization) -> list[UnpricedModel]:
    return [UnpricedModel(r.provider, r.model, int(r.requests), local_datetime(org, r.first_hour),
                          local_datetime(org, r.last_hour)) for r in unpriced_models(org)]


# --- aliases ------------------------------------------------------------------------

def get_alias(org: Organization, alias_id) -> ModelAlias | None:
    """The organization's model alias with this id; None for an unknown id or another tenant's."""
    return ModelAlias.get_in_org(org, alias_id)


def aliases_of(org: Organization) -> list[ModelAlias]:
    return list(ModelAlias.in_org(org).order_by(ModelAlias.provider, ModelAlias.alias))


def create_alias(org: Organization, actor: Actor, *, provider: str, alias: str, model: str) -> ModelAlias:
    """A name the organization's calls use for a model. Usage already stored
    under that name moves to the model and is repriced as it."""
    errors: dict[str, str] = {}
    provider = _name(catalog.normalize_provider(provider or ""), "provider", 64, "Enter the provider, e.g. azure.",
                     errors)
    alias = _name((alias or "").strip().lower(), "alias", 200, "Enter the name your calls use, e.g. prod-4o.", errors)
    model = _name((model or "").strip(), "model", 200, "Enter the model it stands for, e.g. gpt-4o.", errors)
    if not errors:
        model = catalog.resolve_model(provider, model)[0]
        existing = {a.alias: a.model for a in ModelAlias.in_org(org).where(ModelAlias.provider == provider)}
        if alias in existing:
            errors["alias"] = f"'{alias}' is already an alias of {existing[alias]}."
        elif model in (alias, catalog.resolve_model(provider, alias)[0]):
            errors["model"] = f"'{alias}' already counts as {model}; an alias must stand for a different model."
        elif model in existing:
            errors["model"] = f"'{model}' is itself an alias (of {existing[model]}); use that model."
        elif alias in existing.values():
            errors["alias"] = f"Other aliases stand for '{alias}'; it cannot be an alias itself."
    from costguardian.services.usage import realign

    if not errors and realign.pending(org):  # its rewrite would miss events still in their old buckets
        errors["alias"] = ("The usage history is still moving to the new time zone's hours; "
                           "add the alias again in a few minutes.")
    if errors:
        raise ValidationError(errors)
    try:
        with db.atomic():
            row = ModelAlias.create(organization=org, provider=provider, alias=alias, model=model)
    except IntegrityError:
        raise ValidationError({"alias": f"'{alias}' is already an alias."}) from None
    moved = reattribute(org, provider, alias, model)
    audit.record(actor, "model_alias.created", org=org, target=row, provider=provider, alias=alias, model=model,
                 events_moved=moved)
    return row


def delete_alias(alias: ModelAlias, actor: Actor) -> None:
    """Forget the alias: calls that use the name from now on are recorded under
    it again; usage already moved to the model stays there."""
    org = alias.organization
    alias.delete_instance()
    audit.record(actor, "model_alias.deleted", org=org, target=alias, provider=alias.provider, alias=alias.alias,
                 model=alias.model)

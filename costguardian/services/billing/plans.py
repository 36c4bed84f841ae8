"""Plans as data: the default Free, Team and Business (written on first use),
a superadmin's edits (`flask billing plan-set`), and creating their Stripe
products, prices and meter (`flask billing stripe-setup`)."""
from __future__ import annotations

import re

from peewee import IntegrityError

from costguardian import clock
from costguardian.extensions import db
from costguardian.models import Plan
from costguardian.models.billing import FEATURES
from costguardian.money import NANOS_PER_USD
from costguardian.services.actor import Actor
from costguardian.services.errors import ValidationError
from costguardian.services.team import audit

_ALL_ON = dict.fromkeys(FEATURES, True)

# The one copy of the default plans. Prices are per seat and month (or year).
DEFAULT_PLANS: list[dict] = [
    dict(code="free", name="Free", position=0, is_free=True, seats_included=3, events_included=10_000,
         overage="show", retention_days=30, trial_days=0,
         features={**_ALL_ON, "provider_sync": False, "sso": False, "webhooks": False, "request_logging": False}),
    dict(code="team", name="Team", position=1, monthly_nanos=20 * NANOS_PER_USD, yearly_nanos=192 * NANOS_PER_USD,
         seats_included=5, extra_seats=True, events_included=1_000_000, overage="metered",
         overage_nanos_per_1000=2 * NANOS_PER_USD, retention_days=365, trial_days=14,
         features={**_ALL_ON, "sso": False}),
    dict(code="business", name="Business", position=2, monthly_nanos=50 * NANOS_PER_USD,
         yearly_nanos=480 * NANOS_PER_USD, seats_included=25, extra_seats=True, events_included=10_000_000,
         overage="metered", overage_nanos_per_1000=1 * NANOS_PER_USD, retention_days=730, trial_days=14,
         features=dict(_ALL_ON)),
]

INTERVALS = {"month": "Monthly", "year": "Yearly"}
CODE = re.compile(r"[a-z0-9_-]{1,32}")  # a plan's code (the API's document states the same pattern)
OVERAGE = {"metered": "billed per 1,000 events beyond the allowance", "show": "kept and shown as over the plan"}


def ensure_defaults() -> None:
    """Write the default plans that are missing (by code); never changes an
    existing plan. Safe to run concurrently."""
    if Plan.select().where(Plan.is_free == True).exists():  # noqa: E712
        return
    for values in DEFAULT_PLANS:
        try:
            with db.atomic():
                Plan.insert(**values).on_conflict_ignore().execute()
        except IntegrityError:
            pass


def listed(active_only: bool = False) -> list[Plan]:
    ensure_defaults()
    query = Plan.select().order_by(Plan.position, Plan.id)
    if active_only:
        query = query.where(Plan.is_active == True)  # noqa: E712
    return list(query)


def paid_choices() -> list[tuple[str, str]]:
    """(code, name) of the plans on sale that cost something, for plan pickers."""
    return [(p.code, p.name) for p in listed(active_only=True) if not p.is_free]


def free() -> Plan:
    ensure_defaults()
    return Plan.select().where(Plan.is_free == True).order_by(Plan.position, Plan.id).first()  # noqa: E712


def by_code(code: str) -> Plan | None:
    ensure_defaults()
    return Plan.get_or_none(Plan.code == code)


def paid(code: str) -> Plan:
    """A plan an organization may subscribe to, or a ValidationError on `plan`."""
    plan = by_code(code) if isinstance(code, str) and CODE.fullmatch(code) else None
    if plan is None or plan.is_free or not plan.is_active:
        names = ", ".join(p.code for p in listed(active_only=True) if not p.is_free)
        raise ValidationError({"plan": f"Choose one of the plans on sale: {names}."})
    return plan


# field -> (parse text into the value, what a valid value is)
def _whole(low: int, high: int):
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError
        return value
    return parse


def _dollars(text: str) -> int:
    from decimal import Decimal, InvalidOperation

    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError from None
    if not amount.is_finite() or amount < 0 or amount > 1_000_000:
        raise ValueError
    return int(amount * NANOS_PER_USD)


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _text(limit: int):
    def parse(text: str) -> str:
        if not text.strip() or len(text) > limit:
            raise ValueError
        return text.strip()
    return parse


def _price_id(text: str) -> str | None:
    if text in ("", "-"):
        return None
    if not text.startswith("price_") or len(text) > 64:
        raise ValueError
    return text


EDITABLE = {
    "name": (_text(60), "a name of at most 60 characters"),
    "position": (_whole(0, 1000), "a whole number from 0 to 1000"),
    "is_active": (_flag, "true or false"),
    "monthly_usd": (_dollars, "dollars per seat, like 20 or 19.50"),
    "yearly_usd": (_dollars, "dollars per seat, like 192"),
    "stripe_monthly_price": (_price_id, "a Stripe price id (price_…), or - for none"),
    "stripe_yearly_price": (_price_id, "a Stripe price id (price_…), or - for none"),
    "stripe_metered_price": (_price_id, "a Stripe price id (price_…), or - for none"),
    "stripe_metered_yearly_price": (_price_id, "a Stripe price id (price_…), or - for none"),
    "seats_included": (_whole(1, 100_000), "a whole number from 1 to 100,000"),
    "extra_seats": (_flag, "true or false"),
    "events_included": (_whole(0, 10**12), "a whole number of tracked events per billing period"),
    "overage": (lambda t: t if t in OVERAGE else int("x"), "metered or show"),
    "overage_usd_per_1000": (_dollars, "dollars per 1,000 events beyond the allowance"),
    "trial_days": (_whole(0, 730), "a whole number of days from 0 to 730"),
    "retention_days": (_whole(1, 36_500), "a whole number of days"),
    **{f"feature.{name}": (_flag, "true or false") for name in FEATURES},
}
_COLUMN = {"monthly_usd": "monthly_nanos", "yearly_usd": "yearly_nanos",
           "overage_usd_per_1000": "overage_nanos_per_1000"}


def update(code: str, changes: dict[str, str], actor: Actor) -> Plan:
    """Change a plan's fields from text values (the CLI's NAME=VALUE pairs);
    every bad value is reported, nothing is saved unless all are good."""
    plan = by_code(code)
    if plan is None:
        raise ValidationError({"code": f"No plan {code!r}; the plans are " + ", ".join(p.code for p in listed())})
    errors, parsed = {}, {}
    for name, text in changes.items():
        if name not in EDITABLE:
            errors[name] = "not a plan field; fields: " + ", ".join(EDITABLE)
            continue
        parse, expected = EDITABLE[name]
        try:
            parsed[name] = parse(text)
        except (ValueError, TypeError):
            errors[name] = f"expected {expected}"
    if errors:
        raise ValidationError(errors)
    features = dict(plan.features or {})
    for name, value in parsed.items():
        if name.startswith("feature."):
            features[name.split(".", 1)[1]] = value
        else:
            setattr(plan, _COLUMN.get(name, name), value)
    plan.features = features
    plan.updated_at = clock.now()
    plan.save()
    audit.record(actor, "billing.plan_updated", None, plan, code=plan.code, changes=sorted(changes))
    return plan


def setup_stripe(client, meter_event_name: str, actor: Actor) -> list[str]:
    """Create in Stripe what the plans need and lack: a product per paid plan,
    its monthly and yearly per-seat prices, the tracked-events meter and each
    metered plan's monthly and yearly overage prices (per event, as a decimal of
    cents; a subscription's prices share one interval). Found by
    lookup key first, so running it twice creates nothing twice. Returns what
    it did, one line each."""
    done: list[str] = []
    meter = next((m for m in client.v1.billing.meters.list(params={"limit": 100}).data
                  if m.event_name == meter_event_name and m.status == "active"), None)
    for plan in listed():
        if plan.is_free:
            continue
        product = None
        for interval, column, nanos in (("month", "stripe_monthly_price", plan.monthly_nanos),
                                        ("year", "stripe_yearly_price", plan.yearly_nanos)):
            if getattr(plan, column):
                continue
            lookup = f"cg_{plan.code}_{interval}ly"
            found = client.v1.prices.list(params={"lookup_keys": [lookup], "limit": 1}).data
            if found:
                price = found[0]
            else:
                product = product or client.v1.products.create(params={
                    "name": f"Cost Guardian {plan.name}", "metadata": {"plan": plan.code}})
                price = client.v1.prices.create(params={
                    "product": product.id, "currency": "usd", "unit_amount": nanos // 10_000_000,
                    "recurring": {"interval": interval, "usage_type": "licensed"}, "lookup_key": lookup,
                    "nickname": f"{plan.name} {INTERVALS[interval].lower()}", "metadata": {"plan": plan.code}})
                done.append(f"{plan.code}: created the {interval}ly price {price.id}")
            setattr(plan, column, price.id)
        for interval, column in (("month", "stripe_metered_price"), ("year", "stripe_metered_yearly_price")):
            if plan.overage != "metered" or getattr(plan, column):
                continue
            if meter is None:
                meter = client.v1.billing.meters.create(params={
                    "display_name": "Tracked events beyond the plan", "event_name": meter_event_name,
                    "default_aggregation": {"formula": "sum"},
                    "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
                    "value_settings": {"event_payload_key": "value"}})
                done.append(f"created the meter {meter.id} ({meter_event_name})")
            lookup = f"cg_{plan.code}_overage" + ("_yearly" if interval == "year" else "")
            found = client.v1.prices.list(params={"lookup_keys": [lookup], "limit": 1}).data
            if found:
                price = found[0]
            else:
                price = client.v1.prices.create(params={
                    "product_data": {"name": f"Cost Guardian {plan.name}: tracked events beyond the plan"},
                    "currency": "usd", "unit_amount_decimal": _cents_per_event(plan.overage_nanos_per_1000),
                    "lookup_key": lookup,
                    "recurring": {"interval": interval, "usage_type": "metered", "meter": meter.id},
                    "nickname": f"{plan.name} overage ({interval}ly)", "metadata": {"plan": plan.code}})
                done.append(f"{plan.code}: created the {interval}ly overage price {price.id}")
            setattr(plan, column, price.id)
        plan.updated_at = clock.now()
        plan.save()
    if done:
        audit.record(actor, "billing.stripe_setup", None, None, done=done)
    return done


def _cents_per_event(nanos_per_1000: int) -> str:
    """Cents per event as the decimal string Stripe's unit_amount_decimal takes
    (at most 12 decimal places): $2 per 1,000 events is "0.2"."""
    from decimal import Decimal

    value = Decimal(nanos_per_1000) / Decimal(10_000_000) / 1000
    return format(value.quantize(Decimal("1e-12")).normalize(), "f")

"""Billing for Cost Guardian itself (services/billing): the plans on sale,
each organization's account with Stripe, the Stripe events already applied,
the invoices Stripe issued and the tracked-event reports sent to its meter.

Money from Stripe arrives in cents; it is stored as integer nano-dollars like
every other amount (1 cent = 10,000,000 nanos)."""
from __future__ import annotations

from peewee import (BigIntegerField, BooleanField, CharField, DateField, DateTimeField, ForeignKeyField,
                    IntegerField, JSONField, TextField)

from costguardian import clock
from costguardian.models.base import BaseModel
from costguardian.models.org import Organization, TenantModel

NANOS_PER_CENT = 10_000_000

# Plan feature flags (Plan.features), in the order the billing page lists them.
FEATURES = {
    "gateway": "LLM gateway",
    "provider_sync": "Provider usage sync",
    "sso": "Single sign-on",
    "webhooks": "Webhooks",
    "request_logging": "Request logging",
}


class Plan(BaseModel):
    """A plan on sale: edited by a superadmin (`flask billing plan-set`), not by
    organizations. Prices are per seat; `seats_included` is what Free allows
    and what a paid subscription starts with (at least the members it has)."""

    code = CharField(max_length=32, unique=True)  # "free", "team", "business"
    name = CharField(max_length=60)
    position = IntegerField(default=0)  # order on the billing page
    is_free = BooleanField(default=False)  # the plan an organization without a paid subscription is on
    is_active = BooleanField(default=True)  # offered to new subscribers
    monthly_nanos = BigIntegerField(default=0)  # per seat, for display; Stripe's price is the truth
    yearly_nanos = BigIntegerField(default=0)
    stripe_monthly_price = CharField(max_length=64, null=True)
    stripe_yearly_price = CharField(max_length=64, null=True)
    seats_included = IntegerField(default=3)
    extra_seats = BooleanField(default=False)  # inviting beyond the seats may add seats (with proration)
    events_included = BigIntegerField(default=10_000)  # tracked events per month (a yearly period: 12 times it)
    # "metered": events beyond the allowance are billed per 1,000 (stripe_metered_price);
    # "show": they are kept and counted and the organization is shown as over its plan.
    overage = CharField(max_length=16, default="show")
    overage_nanos_per_1000 = BigIntegerField(default=0)
    stripe_metered_price = CharField(max_length=64, null=True)  # monthly; a subscription's prices share its interval
    stripe_metered_yearly_price = CharField(max_length=64, null=True)
    trial_days = IntegerField(default=0)
    retention_days = IntegerField(default=30)
    features = JSONField(default=dict)  # FEATURES key -> bool
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)

    def has(self, feature: str) -> bool:
        return bool((self.features or {}).get(feature))

    def price_for(self, interval: str) -> str | None:
        return self.stripe_yearly_price if interval == "year" else self.stripe_monthly_price

    def metered_price_for(self, interval: str) -> str | None:
        """The overage price of the same interval as the seats (Stripe bills a
        subscription's prices on one interval)."""
        if self.overage != "metered":
            return None
        return self.stripe_metered_yearly_price if interval == "year" else self.stripe_metered_price


class BillingAccount(TenantModel):
    """An organization's one billing row: its Stripe customer and the state of
    its subscription as Stripe last reported it (services.billing.sync writes
    it from a fresh read of the subscription, never from an event's snapshot,
    so events that arrive late or twice cannot roll it back). Unique per
    organization, so concurrent webhooks can never create a second
    subscription row."""

    organization = ForeignKeyField(Organization, on_delete="CASCADE", unique=True)
    stripe_customer_id = CharField(max_length=64, null=True, unique=True)
    plan = ForeignKeyField(Plan, null=True, on_delete="SET NULL", backref="+")  # the subscribed plan (None: Free)
    interval = CharField(max_length=8, default="month")
    stripe_subscription_id = CharField(max_length=64, null=True, unique=True)
    seat_item_id = CharField(max_length=64, null=True)  # the subscription item whose quantity is the seats
    metered_item_id = CharField(max_length=64, null=True)
    status = CharField(max_length=24, default="")  # Stripe's subscription status; "" without one
    seats = IntegerField(default=0)  # the subscription's quantity
    period_start = DateTimeField(null=True)
    period_end = DateTimeField(null=True)
    trial_end = DateTimeField(null=True)
    cancel_at_period_end = BooleanField(default=False)
    cancel_at = DateTimeField(null=True)
    ended_at = DateTimeField(null=True)
    past_due_since = DateTimeField(null=True)  # when payment started failing (grace period counts from it)
    payment_method = CharField(max_length=80, default="")  # "Visa •••• 4242, expires 12/2034"
    billing_email = CharField(max_length=254, default="")
    checkout_session_id = CharField(max_length=80, null=True)  # the latest Checkout started from the billing page
    synced_at = DateTimeField(null=True)  # the last read of the subscription from Stripe
    # Tracked events this billing period, as the hourly check last counted them,
    # and which warnings (80, 100) were sent for which period (ISO start date).
    events_counted = BigIntegerField(default=0)
    events_counted_at = DateTimeField(null=True)
    events_warned = CharField(max_length=40, default="")  # "2026-12-01:80"
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)


class StripeEvent(BaseModel):
    """A Stripe event already applied: its row is written in the transaction
    that applies it, so a second delivery (or a racing one) finds it and does
    nothing."""

    event_id = CharField(max_length=80, unique=True)
    type = CharField(max_length=80)
    organization = ForeignKeyField(Organization, null=True, on_delete="SET NULL", backref="+")
    stripe_created = DateTimeField()
    received_at = DateTimeField(default=clock.now)


class Invoice(TenantModel):
    """An invoice Stripe issued to the organization, as last read from Stripe."""

    stripe_invoice_id = CharField(max_length=80, unique=True)
    number = CharField(max_length=64, default="")
    status = CharField(max_length=24)  # draft, open, paid, uncollectible, void
    billing_reason = CharField(max_length=40, default="")
    currency = CharField(max_length=3, default="usd")
    total_nanos = BigIntegerField(default=0)
    amount_due_nanos = BigIntegerField(default=0)
    amount_paid_nanos = BigIntegerField(default=0)
    amount_remaining_nanos = BigIntegerField(default=0)
    issued_at = DateTimeField()  # Stripe's `created`
    period_start = DateTimeField(null=True)
    period_end = DateTimeField(null=True)
    hosted_invoice_url = TextField(default="")
    invoice_pdf = TextField(default="")
    updated_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "issued_at"), False),)


class MeterReport(TenantModel):
    """Tracked events beyond the plan's allowance reported to Stripe's meter
    for one UTC day. `identifier` is what Stripe deduplicates on, so a report
    retried after a lost answer is counted once; `revision` grows when events
    that arrived late are reported as a correction with a new identifier."""

    day = DateField()
    revision = IntegerField(default=0)
    identifier = CharField(max_length=80, unique=True)
    value = BigIntegerField()
    status = CharField(max_length=16, default="pending")  # pending, sent, failed
    attempts = IntegerField(default=0)
    last_error = TextField(default="")
    sent_at = DateTimeField(null=True)
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "day", "revision"), True), (("status",), False))

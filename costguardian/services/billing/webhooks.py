"""Stripe's webhooks, the source of truth for subscriptions and invoices.

Each event is verified with the stripe library (signature and timestamp
tolerance), then applied exactly once: its id is inserted into StripeEvent in
the same transaction as its effect, under the billing account's row lock, so
a repeated delivery or two racing ones find the row and change nothing. The
effect is always a fresh read of the objects from Stripe (sync), never the
event's snapshot, so an event that arrives after a newer one cannot roll the
subscription back."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from peewee import IntegrityError

from flask import current_app

from costguardian import clock
from costguardian.db import locked
from costguardian.extensions import db
from costguardian.models import BillingAccount, StripeEvent
from costguardian.money import usd_amount
from costguardian.models.billing import NANOS_PER_CENT
from costguardian.services import billing
from costguardian.services.actor import Actor
from costguardian.services.billing import sync
from costguardian.services.team import audit
from costguardian.timefmt import format_time

log = logging.getLogger(__name__)

HANDLED = (
    "checkout.session.completed",
    "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "invoice.paid", "invoice.payment_failed", "invoice.finalized",
    "customer.updated",
)


class BadSignature(Exception):
    """The payload is not a Stripe event signed with our secret within the tolerance."""


@dataclass
class Outcome:
    status: str  # applied, duplicate, ignored
    event_id: str
    type: str


def verify(payload: bytes, signature: str | None):
    import stripe

    config = current_app.config
    try:
        return stripe.Webhook.construct_event(payload, signature or "", str(config["STRIPE_WEBHOOK_SECRET"]),
                                              tolerance=int(config.get("STRIPE_WEBHOOK_TOLERANCE", 300)))
    except (ValueError, stripe.SignatureVerificationError) as exc:
        raise BadSignature(str(exc)) from exc


def _customer_of(event) -> str | None:
    obj = event.data.object
    if event.type.startswith("customer.") and not event.type.startswith("customer.subscription."):
        return sync.pick(obj, "id")
    customer = sync.pick(obj, "customer")
    return customer if isinstance(customer, str) or customer is None else sync.pick(customer, "id")


def receive(payload: bytes, signature: str | None) -> Outcome:
    """Verify and apply one delivery. Raises BadSignature (answer 400) or a
    Stripe/network error (answer 500, so Stripe retries; nothing was stored)."""
    event = verify(payload, signature)
    outcome = Outcome("applied", event.id, event.type)
    if StripeEvent.select().where(StripeEvent.event_id == event.id).exists():
        outcome.status = "duplicate"
        return outcome
    customer = _customer_of(event)
    account = BillingAccount.get_or_none(BillingAccount.stripe_customer_id == customer) if customer else None
    if event.type not in HANDLED or account is None:
        _remember(event, None)
        outcome.status = "ignored"
        return outcome
    client = billing.client()
    # Read Stripe first, outside any transaction (network time holds no lock).
    read_at = clock.now()
    subs = list(client.v1.subscriptions.list(params={"customer": customer, "status": "all", "limit": 20}).data)
    stripe_customer = client.v1.customers.retrieve(customer)
    method_id = sync.pick(stripe_customer, "invoice_settings", "default_payment_method")
    method = client.v1.payment_methods.retrieve(method_id) if method_id else None
    invoice = None
    if event.type.startswith("invoice."):
        invoice = client.v1.invoices.retrieve(event.data.object.id)
    with locked(account):
        if not _remember(event, account.organization_id):
            outcome.status = "duplicate"
            return outcome
        before = BillingAccount.get_by_id(account.id)
        account = sync.store(before, sync._current(subs), stripe_customer, method, read_at=read_at)
        if invoice is not None and invoice.status != "draft":
            sync.store_invoice(account.organization, invoice)
        audit.record(Actor.system(), f"billing.{event.type}", account.organization, account, event=event.id,
                     status=account.status, plan=account.plan.code if account.plan else None)
        _tell(event, before, account, invoice)
    return outcome


def _remember(event, org_id) -> bool:
    """Insert the event's row; False when it is already there (a concurrent
    delivery won)."""
    try:
        with db.atomic():
            StripeEvent.create(event_id=event.id, type=event.type[:80], organization=org_id,
                               stripe_created=sync.when(event.created))
        return True
    except IntegrityError:
        return False


def _tell(event, before: BillingAccount, account: BillingAccount, invoice) -> None:
    """Notify the owners and billing members where a person must act."""
    from costguardian.services.notifications import notify as notifications

    org = account.organization
    plan = account.plan.name if account.plan else "the plan"
    if event.type == "invoice.payment_failed" and invoice is not None and invoice.status == "open":
        reason = (sync.pick(event.data.object, "last_finalization_error", "message")
                  or "the card was declined or could not be charged")
        notifications.notify(org, "billing.payment_failed", {
            "amount_usd": usd_amount(int(invoice.amount_remaining or invoice.amount_due or 0) * NANOS_PER_CENT),
            "reason": reason, "invoice": invoice.number or invoice.id},
            once=f"billing.payment_failed:{invoice.id}:{invoice.attempt_count or 0}")
    elif event.type == "customer.subscription.trial_will_end" and account.status == "trialing" \
            and event.data.object.id == account.stripe_subscription_id and account.trial_end:
        notifications.notify(org, "billing.trial_ending", {
            "plan": plan, "trial_end": format_time(account.trial_end, org, "day"),
            "has_card": bool(account.payment_method)}, once=f"billing.trial_ending:{account.stripe_subscription_id}")
    elif event.type == "customer.subscription.deleted" and account.status == "canceled" \
            and event.data.object.id == account.stripe_subscription_id:
        ended = account.ended_at or sync.when(event.created)
        notifications.notify(org, "billing.subscription_canceled", {
            "plan": plan, "ended": format_time(ended, org, "day")},
            once=f"billing.subscription_canceled:{account.stripe_subscription_id}")

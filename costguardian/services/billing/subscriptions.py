"""Subscribing and changing: the organization's Stripe customer (created once),
Checkout for a first subscription, the Customer Portal, and plan, interval or
seat changes with the proration Stripe computes, previewed before confirming."""
from __future__ import annotations

from dataclasses import dataclass

from costguardian import clock
from costguardian.db import locked
from costguardian.models import BillingAccount, Organization, Plan
from costguardian.models.billing import NANOS_PER_CENT
from costguardian.services import billing
from costguardian.services.actor import Actor
from costguardian.services.billing import accounts, plans, sync
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.services.team import audit

MAX_SEATS = 10_000


def _stripe_call(fn):
    """Run a Stripe call; its failure becomes BillingUnavailable with a message for people."""
    import stripe

    try:
        return fn()
    except stripe.StripeError as exc:
        raise billing.BillingUnavailable(billing.stripe_message(exc)) from exc


def ensure_customer(org: Organization, actor: Actor, client=None) -> BillingAccount:
    """The organization's Stripe customer, created once. Two owners clicking
    "Upgrade" together send the same idempotency key, so Stripe answers both
    with one customer; the first to take the account's row lock stores it
    (no Stripe call is made while the lock is held)."""
    account = accounts.account_for(org)
    if account.stripe_customer_id:
        return account
    client = client or billing.client()
    email = _first_owner_email(org)  # the same for every caller, so concurrent creates replay one answer
    customer = _stripe_call(lambda: client.v1.customers.create(
        params={"name": org.name, "email": email, "metadata": {"organization_id": str(org.id),
                                                                "organization_slug": org.slug}},
        options={"idempotency_key": f"cg-customer-{org.id}-{account.id}"}))
    with locked(account):
        account = BillingAccount.get_by_id(account.id)
        if account.stripe_customer_id:
            return account
        account.stripe_customer_id = customer.id
        account.billing_email = email
        account.updated_at = clock.now()
        account.save()
    audit.record(actor, "billing.customer_created", org, account, customer=customer.id)
    return account


def _first_owner_email(org: Organization) -> str:
    from costguardian import permissions
    from costguardian.models import Membership, User

    owner = (User.select(User.email).join(Membership)
             .where(Membership.organization == org, Membership.role == permissions.OWNER)
             .order_by(Membership.created_at, Membership.id).first())
    return owner.email if owner is not None else ""


def _seats(value, org: Organization, plan: Plan) -> int:
    try:
        seats = int(value)
    except (TypeError, ValueError):
        raise ValidationError({"seats": "A whole number of seats."}) from None
    used = accounts.seats_used(org)
    if not 1 <= seats <= MAX_SEATS:
        raise ValidationError({"seats": f"From 1 to {MAX_SEATS:,} seats."})
    if seats < used:
        raise ValidationError({"seats": f"{org.name} has {used} members and pending invitations; "
                                        f"choose at least {used} seats or remove people first."})
    return seats


def _interval(value) -> str:
    if value not in plans.INTERVALS:
        raise ValidationError({"interval": "month or year."})
    return value


def default_seats(org: Organization, plan: Plan) -> int:
    return max(plan.seats_included, accounts.seats_used(org))


def start_checkout(org: Organization, actor: Actor, plan_code: str, interval: str, seats, success_url: str,
                   cancel_url: str) -> str:
    """A Stripe Checkout session for a first subscription; returns its URL."""
    billing.require_enabled()
    plan = plans.paid(plan_code)
    interval = _interval(interval)
    seats = _seats(seats if seats not in (None, "") else default_seats(org, plan), org, plan)
    price = plan.price_for(interval)
    if not price:
        raise ValidationError({"plan": f"{plan.name} has no {interval}ly price yet; the operator runs "
                                       "`flask billing stripe-setup`."})
    current = accounts.account_for(org)
    if current.status in sync.LIVE and current.plan_id:
        raise RuleViolation(f"{org.name} already subscribes to {current.plan.name}; change the plan instead.")
    client = billing.client()
    account = ensure_customer(org, actor, client)
    _close_previous_checkout(account, client)
    items = [{"price": price, "quantity": seats}]
    if plan.metered_price_for(interval):
        items.append({"price": plan.metered_price_for(interval)})
    metadata = {"organization_id": str(org.id), "plan": plan.code}
    subscription_data: dict = {"metadata": metadata}
    if plan.trial_days and not account.stripe_subscription_id:
        subscription_data["trial_period_days"] = plan.trial_days
    session = _stripe_call(lambda: client.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": account.stripe_customer_id, "client_reference_id": str(org.id),
        "line_items": items, "success_url": success_url, "cancel_url": cancel_url, "metadata": metadata,
        "subscription_data": subscription_data}))
    BillingAccount.update(checkout_session_id=session.id, updated_at=clock.now()).where(
        BillingAccount.id == account.id).execute()
    audit.record(actor, "billing.checkout_started", org, account, plan=plan.code, interval=interval, seats=seats)
    return session.url


def _close_previous_checkout(account: BillingAccount, client) -> None:
    """One open Checkout per organization: the one started before is expired
    (a second tab or a double click would otherwise let two subscriptions be
    paid). Refuses when Stripe already holds a subscription (its webhook is
    on the way) or the earlier Checkout was just completed. Sets
    `account.stripe_subscription_id` from Stripe when the customer had one, so
    the trial goes to a first subscription only."""
    import stripe

    subs = _stripe_call(lambda: client.v1.subscriptions.list(
        params={"customer": account.stripe_customer_id, "status": "all", "limit": 10}).data)
    if any(s.status in sync.LIVE for s in subs):
        raise RuleViolation("This organization already has a subscription at Stripe; it shows here as soon as "
                            "Stripe confirms it. Change it instead of starting another.")
    if subs and not account.stripe_subscription_id:
        account.stripe_subscription_id = subs[0].id  # an ended one: no second trial
    if not account.checkout_session_id:
        return
    try:
        client.v1.checkout.sessions.expire(account.checkout_session_id)
    except stripe.InvalidRequestError:  # not open any more: expired already, or completed
        previous = _stripe_call(lambda: client.v1.checkout.sessions.retrieve(account.checkout_session_id))
        if previous.status == "complete":
            raise RuleViolation("The Checkout started earlier was just completed; the plan starts as soon as "
                                "Stripe confirms it.") from None
    except stripe.StripeError as exc:
        raise billing.BillingUnavailable(billing.stripe_message(exc)) from exc


def portal_url(org: Organization, actor: Actor, return_url: str) -> str:
    """A Customer Portal session (payment methods, tax ids, address, cancel)."""
    billing.require_enabled()
    client = billing.client()
    account = ensure_customer(org, actor, client)
    session = _stripe_call(lambda: client.v1.billing_portal.sessions.create(
        params={"customer": account.stripe_customer_id, "return_url": return_url}))
    audit.record(actor, "billing.portal_opened", org, account)
    return session.url


@dataclass
class Change:
    plan: Plan
    interval: str
    seats: int
    items: list[dict]
    proration: str  # Stripe's proration_behavior


@dataclass
class Preview:
    change: Change
    due_now_nanos: int  # what is charged now (invoiced_now), else what the change adds to the next invoice
    next_invoice_nanos: int | None  # the next renewal invoice with the change (None when invoiced now)
    lines: list[tuple[str, int]]  # (description, nanos)
    proration_date: int
    invoiced_now: bool


def _subscribed(org: Organization) -> BillingAccount:
    account = accounts.account_for(org)
    if not account.stripe_subscription_id or account.status not in sync.LIVE:
        raise RuleViolation(f"{org.name} has no subscription to change; subscribe through Checkout first.")
    return account


def plan_change(org: Organization, plan_code: str | None, interval: str | None, seats) -> Change:
    """What a change means in Stripe's terms, after checking the values."""
    billing.require_enabled()
    account = _subscribed(org)
    plan = plans.paid(plan_code) if plan_code else account.plan
    if plan is None:
        raise ValidationError({"plan": "Choose a plan."})
    interval = _interval(interval) if interval else account.interval
    seats = _seats(seats, org, plan) if seats not in (None, "") else account.seats
    price = plan.price_for(interval)
    if not price:
        raise ValidationError({"plan": f"{plan.name} has no {interval}ly price yet."})
    if (plan.id, interval, seats) == (account.plan_id, account.interval, account.seats):
        raise ValidationError({"": "This is the current plan, interval and number of seats."})
    items: list[dict] = [{"id": account.seat_item_id, "price": price, "quantity": seats}]
    want_metered = plan.metered_price_for(interval)  # the overage price of the new interval
    if account.metered_item_id and not want_metered:
        items.append({"id": account.metered_item_id, "deleted": True})
    elif want_metered and not account.metered_item_id:
        items.append({"price": want_metered})
    elif want_metered and account.metered_item_id and (plan.id, interval) != (account.plan_id, account.interval):
        items += [{"id": account.metered_item_id, "deleted": True}, {"price": want_metered}]
    # A new billing interval starts a new period, invoiced now; the rest prorate
    # onto the next invoice, except that more seats or a dearer plan are charged at once.
    upgrade = seats > account.seats or (account.plan is not None and plan.monthly_nanos > account.plan.monthly_nanos)
    proration = "always_invoice" if interval != account.interval or upgrade else "create_prorations"
    return Change(plan=plan, interval=interval, seats=seats, items=items, proration=proration)


def preview(org: Organization, change: Change) -> Preview:
    """Stripe's own proration for the change, computed now and not applied."""
    account = _subscribed(org)
    client = billing.client()
    moment = int(clock.now_aware().timestamp())
    invoice = _stripe_call(lambda: client.v1.invoices.create_preview(params={
        "customer": account.stripe_customer_id, "subscription": account.stripe_subscription_id,
        "subscription_details": {"items": change.items, "proration_behavior": change.proration,
                                 "proration_date": moment}}))
    lines = [(line.description or "", int(line.amount) * NANOS_PER_CENT) for line in invoice.lines.data]
    invoiced_now = change.proration == "always_invoice"
    total = int(invoice.amount_due) * NANOS_PER_CENT
    if invoiced_now:  # the previewed invoice is the one charged now
        return Preview(change=change, due_now_nanos=total, next_invoice_nanos=None, lines=lines,
                       proration_date=moment, invoiced_now=True)
    prorations = sum(amount for (_, amount), line in zip(lines, invoice.lines.data)
                     if sync.pick(line, "parent", "subscription_item_details", "proration"))
    return Preview(change=change, due_now_nanos=prorations, next_invoice_nanos=total, lines=lines,
                   proration_date=moment, invoiced_now=False)


def apply(org: Organization, actor: Actor, change: Change, proration_date: int | None = None) -> BillingAccount:
    """Make the change in Stripe (with the previewed proration date, so the
    amount charged is the amount shown) and store the result."""
    account = _subscribed(org)
    client = billing.client()
    params: dict = {"items": change.items, "proration_behavior": change.proration,
                    "metadata": {"organization_id": str(org.id), "plan": change.plan.code}}
    if proration_date:
        params["proration_date"] = proration_date
    before = (account.plan.code if account.plan else None, account.interval, account.seats)
    read_at = clock.now()
    sub = _stripe_call(lambda: client.v1.subscriptions.update(account.stripe_subscription_id, params=params))
    account = sync.store(account, sub, read_at=read_at)
    audit.record(actor, "billing.subscription_changed", org, account, before=list(before),
                 after=[change.plan.code, change.interval, change.seats], proration=change.proration)
    return account


def set_cancel_at_period_end(org: Organization, actor: Actor, cancel: bool) -> BillingAccount:
    """Cancel at the end of the period (the plan stays until then), or undo it."""
    billing.require_enabled()
    account = _subscribed(org)
    client = billing.client()
    read_at = clock.now()
    sub = _stripe_call(lambda: client.v1.subscriptions.update(
        account.stripe_subscription_id, params={"cancel_at_period_end": cancel}))
    account = sync.store(account, sub, read_at=read_at)
    audit.record(actor, "billing.cancellation_set" if cancel else "billing.reactivated", org, account,
                 period_end=account.period_end.isoformat() if account.period_end else None)
    return account

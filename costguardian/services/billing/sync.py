"""The billing account as Stripe has it now. Everything here reads the
objects fresh from Stripe (never an event's snapshot) and writes them under
the account's row lock, so a late, repeated or racing webhook writes the same
current state again instead of rolling it back, and two processes never
create two subscription rows."""
from __future__ import annotations

from datetime import datetime, timezone

from costguardian import clock
from costguardian.db import locked
from costguardian.models import BillingAccount, Invoice, Plan
from costguardian.models.billing import NANOS_PER_CENT

LIVE = ("trialing", "active", "past_due", "unpaid", "incomplete", "paused")


def pick(obj, *path):
    """obj[path[0]][path[1]]… of a Stripe object (or dict), None where a key
    is missing or null (StripeObject has no .get())."""
    for key in path:
        if obj is None:
            return None
        try:
            obj = obj[key]
        except (KeyError, TypeError, IndexError):
            return None
    return obj


def when(stamp) -> datetime | None:
    """A Stripe Unix timestamp as a naive UTC datetime."""
    if stamp in (None, 0, ""):
        return None
    return datetime.fromtimestamp(int(stamp), timezone.utc).replace(tzinfo=None)


def _plan_of(sub) -> tuple[Plan | None, str, object | None, object | None]:
    """(plan, interval, seat item, metered item) of a Stripe subscription, by its prices."""
    seat_item = metered_item = None
    plan, interval = None, "month"
    for item in sub["items"].data:
        price = item.price
        if pick(price, "recurring", "usage_type") == "metered":
            metered_item = item
            continue
        found = Plan.get_or_none((Plan.stripe_monthly_price == price.id) | (Plan.stripe_yearly_price == price.id))
        if found is not None or seat_item is None:
            seat_item = item
            if found is not None:
                plan, interval = found, ("year" if found.stripe_yearly_price == price.id else "month")
    if plan is None and pick(sub, "metadata", "plan"):
        plan = Plan.get_or_none(Plan.code == sub.metadata["plan"])
        if seat_item is not None and pick(seat_item, "price", "recurring", "interval") == "year":
            interval = "year"
    return plan, interval, seat_item, metered_item


def _current(subs: list):
    """Of a customer's subscriptions, the one that decides access: the newest
    live one, else the newest."""
    live = [s for s in subs if s.status in LIVE]
    pool = live or subs
    return max(pool, key=lambda s: (s.created, s.id)) if pool else None


def refresh(account: BillingAccount, client=None) -> BillingAccount:
    """Read the customer's subscriptions and payment method from Stripe and
    store the current state. Network first, then one short locked write."""
    from costguardian.services import billing

    if not account.stripe_customer_id:
        return account
    client = client or billing.client()
    read_at = clock.now()
    subs = list(client.v1.subscriptions.list(params={"customer": account.stripe_customer_id, "status": "all",
                                                      "limit": 20}).data)
    customer = client.v1.customers.retrieve(account.stripe_customer_id)
    method_id = pick(customer, "invoice_settings", "default_payment_method")
    method = client.v1.payment_methods.retrieve(method_id) if method_id else None
    return store(account, _current(subs), customer, method, read_at=read_at)


def store(account: BillingAccount, sub, customer=None, method=None, *, read_at=None) -> BillingAccount:
    """Write a freshly read subscription (and customer, payment method) to the
    account, under its row lock; returns the account as stored. `read_at` is
    when the read from Stripe began: a read that began before the one already
    stored (a slow webhook overtaken by a quicker one) writes nothing, so the
    stored state never goes back in time. `synced_at` keeps that moment."""
    now = clock.now()
    read_at = read_at or now
    with locked(account):
        account = BillingAccount.get_by_id(account.id)
        if account.synced_at is not None and read_at < account.synced_at:
            return account
        if sub is not None and account.status == "comped" and sub.status not in LIVE:
            sub = None  # a platform grant (accounts.set_manual_plan) stands until a live subscription replaces it
        if sub is not None:
            plan, interval, seat_item, metered_item = _plan_of(sub)
            account.stripe_subscription_id = sub.id
            account.status = sub.status
            account.plan = plan
            account.interval = interval
            account.seat_item_id = seat_item.id if seat_item is not None else None
            account.metered_item_id = metered_item.id if metered_item is not None else None
            account.seats = int(seat_item.quantity or 0) if seat_item is not None else 0
            if seat_item is not None:
                account.period_start = when(seat_item.current_period_start)
                account.period_end = when(seat_item.current_period_end)
            account.trial_end = when(sub.trial_end)
            account.cancel_at_period_end = bool(sub.cancel_at_period_end)
            account.cancel_at = when(sub.cancel_at)
            account.ended_at = when(sub.ended_at)
            if sub.status in ("past_due", "unpaid"):
                account.past_due_since = account.past_due_since or now
            else:
                account.past_due_since = None
        if customer is not None:
            account.billing_email = (customer.email or "")[:254]
        if method is not None:
            card = pick(method, "card")
            account.payment_method = (f"{str(pick(card, 'brand') or 'card').title()} •••• {pick(card, 'last4') or ''}, "
                                      f"expires {int(pick(card, 'exp_month') or 0):02d}/{pick(card, 'exp_year') or ''}"
                                      )[:80] if card is not None else "A payment method"
        elif customer is not None:
            account.payment_method = ""
        account.synced_at = read_at
        account.updated_at = now
        account.save()
    return account


def store_invoice(org, invoice) -> Invoice:
    """Insert or update the local copy of a Stripe invoice read just now."""
    period = invoice.lines.data[0].period if invoice.lines and invoice.lines.data else None
    values = dict(
        number=invoice.number or "", status=invoice.status or "draft", billing_reason=invoice.billing_reason or "",
        currency=(invoice.currency or "usd")[:3], total_nanos=int(invoice.total or 0) * NANOS_PER_CENT,
        amount_due_nanos=int(invoice.amount_due or 0) * NANOS_PER_CENT,
        amount_paid_nanos=int(invoice.amount_paid or 0) * NANOS_PER_CENT,
        amount_remaining_nanos=int(invoice.amount_remaining or 0) * NANOS_PER_CENT,
        issued_at=when(invoice.created) or clock.now(),
        period_start=when(period.start) if period else None, period_end=when(period.end) if period else None,
        hosted_invoice_url=invoice.hosted_invoice_url or "", invoice_pdf=invoice.invoice_pdf or "",
        updated_at=clock.now())
    (Invoice.insert(organization=org, stripe_invoice_id=invoice.id, **values)
     .on_conflict(conflict_target=[Invoice.stripe_invoice_id], update=values).execute())
    return Invoice.get(Invoice.stripe_invoice_id == invoice.id)


def refresh_invoices(org, account: BillingAccount, client=None, limit: int = 24) -> int:
    """Copy the customer's latest invoices from Stripe; returns how many."""
    from costguardian.services import billing

    if not account.stripe_customer_id:
        return 0
    client = client or billing.client()
    found = client.v1.invoices.list(params={"customer": account.stripe_customer_id, "limit": limit}).data
    for invoice in found:
        if invoice.status != "draft":
            store_invoice(org, invoice)
    return len(found)


def sync_all(client=None) -> tuple[int, int]:
    """The nightly repair: re-read every customer's subscription, payment
    method and invoices from Stripe, so a webhook that never arrived changes
    nothing for long. Returns (accounts read, accounts that failed)."""
    import logging

    import stripe

    from costguardian.services import billing

    if not billing.enabled():
        return 0, 0
    client = client or billing.client()
    done = failed = 0
    for account in BillingAccount.select().where(BillingAccount.stripe_customer_id.is_null(False)):
        try:
            refresh(account, client)
            refresh_invoices(account.organization, account, client)
            done += 1
        except stripe.StripeError:
            logging.getLogger(__name__).exception("billing sync of organization %s failed", account.organization_id)
            failed += 1
    return done, failed

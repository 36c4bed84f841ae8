"""One-off invoices (e.g. an overage true-up): pending items of the
organization's Stripe customer, plus any given here, invoiced and finalized
now; and the invoice history as cached from Stripe."""
from __future__ import annotations

from decimal import Decimal

from costguardian.models import Invoice, Organization
from costguardian.models.billing import NANOS_PER_CENT
from costguardian.services import billing
from costguardian.services.actor import Actor
from costguardian.services.billing import accounts, sync
from costguardian.services.billing.subscriptions import _stripe_call
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.services.team import audit

MAX_ITEMS = 20
MAX_ITEM_NANOS = 1_000_000 * 10**9  # $1,000,000 per item


def _delete_items(client, item_ids: list[str]) -> None:
    """Best effort: the items this request added, so a failed request leaves
    nothing pending (a failure here is logged; the items stay visible in Stripe)."""
    import logging

    import stripe

    for item_id in item_ids:
        try:
            client.v1.invoice_items.delete(item_id)
        except stripe.StripeError:
            logging.getLogger(__name__).exception("could not delete invoice item %s after a failed invoice", item_id)


def history(org: Organization, limit: int = 24) -> list[Invoice]:
    return list(Invoice.in_org(org).order_by(Invoice.issued_at.desc(), Invoice.id.desc()).limit(limit))


def _cents(nanos: int, field: str) -> int:
    if nanos <= 0 or nanos > MAX_ITEM_NANOS:
        raise ValidationError({field: "An amount more than $0 and at most $1,000,000."})
    if nanos % NANOS_PER_CENT:
        raise ValidationError({field: "Whole cents only, like \"12.50\"."})
    return nanos // NANOS_PER_CENT


def create_one_off(org: Organization, actor: Actor, items: list[tuple[str, int]] | None = None,
                   idempotency_key: str | None = None) -> Invoice:
    """Invoice the customer's pending items (and `items`: description, nanos)
    now: created, finalized and stored. Nothing pending → RuleViolation.
    Items added here are deleted again when the invoice cannot be made, so a
    failure leaves nothing behind for the next renewal to charge. With an
    `idempotency_key` (the API caller's Idempotency-Key header), each Stripe
    call carries a key derived from it, so a retried request replays instead of
    invoicing twice."""
    billing.require_enabled()
    account = accounts.account_for(org)
    if not account.stripe_customer_id:
        raise RuleViolation(f"{org.name} has no Stripe customer yet; subscribe first.")
    items = items or []
    if len(items) > MAX_ITEMS:
        raise ValidationError({"items": f"At most {MAX_ITEMS} items."})
    amounts = [_cents(nanos, f"items[{i}].amount_usd") for i, (_, nanos) in enumerate(items)]
    client = billing.client()

    def options(step: str) -> dict:
        return {"idempotency_key": f"cg-invoice-{org.id}-{idempotency_key}-{step}"} if idempotency_key else {}

    added = []
    try:
        for index, ((description, _), cents) in enumerate(zip(items, amounts)):
            added.append(_stripe_call(lambda: client.v1.invoice_items.create(params={
                "customer": account.stripe_customer_id, "amount": cents, "currency": "usd",
                "description": description[:500]}, options=options(f"item-{index}"))).id)
        # Items sent now are there to invoice (on a replayed request Stripe answers with
        # the earlier invoice); without items, there must be pending ones.
        pending = added or _stripe_call(lambda: client.v1.invoice_items.list(params={
            "customer": account.stripe_customer_id, "pending": True, "limit": 1}).data)
        if not pending:
            raise RuleViolation("Nothing to invoice: the customer has no pending items. Send items to invoice.")
        draft = _stripe_call(lambda: client.v1.invoices.create(params={
            "customer": account.stripe_customer_id, "pending_invoice_items_behavior": "include",
            "auto_advance": False, "metadata": {"organization_id": str(org.id)}}, options=options("invoice")))
    except billing.BillingUnavailable:
        _delete_items(client, added)
        raise
    final = _stripe_call(lambda: client.v1.invoices.finalize_invoice(draft.id, options=options("finalize")))
    invoice = sync.store_invoice(org, final)
    audit.record(actor, "billing.invoice_created", org, invoice, number=invoice.number,
                 total_usd=str(Decimal(invoice.total_nanos) / 10**9))
    return invoice

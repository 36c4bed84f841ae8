"""Billing for Cost Guardian itself, through Stripe (docs/BILLING.md).

- plans: plans as data, their Stripe prices
- accounts: an organization's billing account, what its subscription status
  means for access (the one table of docs/BILLING.md), seats and tracked events
- subscriptions: Checkout, the Customer Portal, plan/seat changes with a preview
- sync: the subscription, invoices and payment method as read from Stripe
- webhooks: Stripe's events, each applied once
- meter: tracked events beyond the allowance, reported to Stripe's meter
- limits: the plan's limits where the product enforces them

With BILLING_ENABLED off nothing here runs and no limit applies.
"""
from __future__ import annotations

from flask import current_app

from costguardian.services.errors import ServiceError


class BillingUnavailable(ServiceError):
    """Stripe could not be reached or refused the request; nothing changed here."""


class BillingDisabled(ServiceError):
    """Billing is off on this installation."""


def enabled() -> bool:
    return bool(current_app.config.get("BILLING_ENABLED"))


def require_enabled() -> None:
    if not enabled():
        raise BillingDisabled("Billing is off on this installation: every feature is available without a plan.")


def client():
    """The official Stripe library's client, configured from the settings
    (STRIPE_API_BASE points it elsewhere, e.g. at the tests' local fake).
    Network errors and 5xx are retried twice with the same idempotency key."""
    import stripe

    config = current_app.config
    base = config.get("STRIPE_API_BASE")
    return stripe.StripeClient(
        str(config["STRIPE_SECRET_KEY"]), base_addresses={"api": base} if base else None,
        max_network_retries=2, http_client=stripe.RequestsClient(timeout=(5, 20)))


def stripe_message(exc: Exception) -> str:
    """What to tell a person about a failed Stripe call (never the key)."""
    import stripe

    if isinstance(exc, stripe.CardError):
        return exc.user_message or "The card was declined."
    if isinstance(exc, stripe.APIConnectionError):
        return "Stripe could not be reached; nothing was changed. Try again in a minute."
    if isinstance(exc, stripe.AuthenticationError):
        return "The Stripe key of this installation is not valid; tell the operator."
    if isinstance(exc, stripe.StripeError):
        return (exc.user_message or "Stripe refused the request") + "."
    return "Stripe could not be reached; nothing was changed."


def banner(org) -> str:
    """The one line owners and billing members see on every page: the
    subscription's state when it needs them (accounts.ACCESS), else the
    tracked events at 80% or more of the plan's allowance (as the periodic
    check last counted them)."""
    from costguardian.services.billing import accounts, limits

    account = accounts.account_for(org)
    access = accounts.access(org, account)
    if access.message:
        return access.message
    return limits.allowance_message(org, account, access)

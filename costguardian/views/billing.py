"""The billing page (owner and billing roles): plan, seats, tracked events,
next invoice, payment method and invoices; Checkout to subscribe, the Stripe
Customer Portal, plan/seat changes previewed before confirming, cancelling at
the period's end. Stripe's webhook endpoint lives here too (public: its
signature is the authorization). With BILLING_ENABLED off every route is 404."""
from __future__ import annotations

import functools
import logging
from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, g, jsonify, request, url_for

from costguardian.authz import current_actor, require_permission
from costguardian.extensions import csrf, htmx, limiter
from costguardian.forms import apply_errors
from costguardian.forms.billing import ChangeForm, PlanForm
from costguardian.models import Invoice
from costguardian.models.billing import FEATURES
from costguardian.rendering import external_url, redirect_to, render, toast
from costguardian.services import billing
from costguardian.services.billing import accounts, plans, subscriptions, sync, webhooks
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.timefmt import format_time

log = logging.getLogger(__name__)

bp = Blueprint("billing", __name__, url_prefix="/billing")

PAGE = "billing/index.html"
CHANGE = "partials/billing/_change.html"
STATUS = "partials/billing/_activation.html"


def enabled_only(view):
    """Billing screens exist only when billing is on (a self-hoster never sees them)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not billing.enabled():
            abort(404)
        return view(*args, **kwargs)

    return wrapped


# Checkout and the portal are Stripe's pages: the billing page's forms redirect
# there, and Chromium applies the page's CSP form-action to the redirect too.
STRIPE_PAGES = ("https://checkout.stripe.com", "https://billing.stripe.com")


@bp.after_request
def _allow_stripe_redirects(response):
    from urllib.parse import urlsplit

    from costguardian.web import CONTENT_SECURITY_POLICY

    origins = list(STRIPE_PAGES)
    base = current_app.config.get("STRIPE_API_BASE")
    if base:  # another Stripe (the tests' fake) serves its pages at its own origin
        parts = urlsplit(base)
        origins.append(f"{parts.scheme}://{parts.netloc}")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'", "form-action 'self' " + " ".join(origins))
    return response


def summary(org) -> dict:
    """What the billing page shows, read from the database (and Stripe's
    upcoming invoice, when there is a subscription)."""
    account = accounts.account_for(org)
    access = accounts.access(org, account)
    start, end = accounts.period(account)
    events = accounts.events_between(org, start, end)
    allowance = accounts.allowance(access, account)
    upcoming, upcoming_error = None, ""
    if account.stripe_subscription_id and account.status in sync.LIVE:
        upcoming, upcoming_error = _upcoming(account)
    return {
        "account": account, "access": access, "period_start": start, "period_end": end,
        "period_last": end - timedelta(seconds=1),  # the end is exclusive: "1 – 31 Dec", not "1 Dec – 1 Jan"
        "events": events, "allowance": allowance,
        "events_percent": min(100, round(100 * events / allowance)) if allowance else 100,
        "over_plan": events > allowance,
        "seats_used": accounts.seats_used(org), "seats_allowed": accounts.seats_allowed(org, account),
        "plans": plans.listed(active_only=True), "FEATURES": FEATURES,
        "invoices": list(Invoice.in_org(org).order_by(Invoice.issued_at.desc(), Invoice.id.desc()).limit(24)),
        "upcoming": upcoming, "upcoming_error": upcoming_error, "INTERVALS": plans.INTERVALS,
    }


def _upcoming(account):
    """(amount in nanos, date) of the next invoice as Stripe previews it."""
    import stripe

    from costguardian.models.billing import NANOS_PER_CENT

    try:
        invoice = billing.client().v1.invoices.create_preview(params={
            "customer": account.stripe_customer_id, "subscription": account.stripe_subscription_id})
    except stripe.InvalidRequestError as exc:
        if exc.code == "invoice_upcoming_none":
            return None, ""
        return None, billing.stripe_message(exc)
    except stripe.StripeError as exc:
        return None, billing.stripe_message(exc)
    return {"amount_nanos": int(invoice.amount_due) * NANOS_PER_CENT,
            "date": sync.when(invoice.next_payment_attempt or invoice.period_end or invoice.created)}, ""


def _page(status: int = 200, checkout_form=None, change_form=None, preview=None, partial: str = PAGE):
    org = g.org
    context = summary(org)
    account = context["account"]
    if checkout_form is None:
        checkout_form = PlanForm(plans.paid_choices(), formdata=None)
        team = next((p for p in context["plans"] if not p.is_free), None)
        if team is not None:
            checkout_form.plan.data = team.code
            checkout_form.seats.data = subscriptions.default_seats(org, team)
    if change_form is None:
        change_form = ChangeForm(plans.paid_choices(), formdata=None)
        change_form.plan.data = account.plan.code if account.plan else None
        change_form.interval.data = account.interval
        change_form.seats.data = account.seats or context["seats_used"]
        seats = request.args.get("seats", "")
        if seats.isascii() and seats.isdigit() and len(seats) <= 5:  # "add seats" links from the invitations page
            change_form.seats.data = int(seats)
    return render(PAGE, partial, status=status, checkout_form=checkout_form, change_form=change_form,
                  preview=preview, **context)


@bp.get("/")
@enabled_only
@require_permission("billing:manage")
def index():
    return _page()


@bp.post("/checkout")
@enabled_only
@require_permission("billing:manage")
def checkout():
    form = PlanForm(plans.paid_choices())
    if form.validate():
        try:
            url = subscriptions.start_checkout(
                g.org, current_actor(), form.plan.data, form.interval.data, form.seats.data,
                success_url=external_url("billing.success") + "?session_id={CHECKOUT_SESSION_ID}",
                cancel_url=external_url("billing.index"))
        except ValidationError as exc:
            apply_errors(form, exc)
        except (RuleViolation, billing.BillingUnavailable) as exc:
            form.form_errors.append(exc.message)
        else:
            return redirect_to(url)
    return _page(422, checkout_form=form)


@bp.get("/success")
@enabled_only
@require_permission("billing:manage")
def success():
    return render("billing/success.html", STATUS, **_activation())


@bp.get("/success/status")
@enabled_only
@require_permission("billing:manage")
def success_status():
    return render("billing/success.html", STATUS, **_activation())


def _activation() -> dict:
    """Whether the subscription Checkout started has arrived by webhook."""
    account = accounts.account_for(g.org)
    session_id = request.args.get("session_id", "")[:80]
    active = bool(account.plan_id) and account.status in ("trialing", "active")
    return {"account": account, "active": active, "session_id": session_id}


@bp.post("/portal")
@enabled_only
@require_permission("billing:manage")
def portal():
    try:
        url = subscriptions.portal_url(g.org, current_actor(), external_url("billing.index"))
    except billing.BillingUnavailable as exc:
        return toast(_page(503), exc.message, "error")
    return redirect_to(url)


def _change_form() -> tuple[ChangeForm, subscriptions.Change | None]:
    form = ChangeForm(plans.paid_choices())
    change = None
    if form.validate():
        try:
            change = subscriptions.plan_change(g.org, form.plan.data, form.interval.data, form.seats.data)
        except ValidationError as exc:
            apply_errors(form, exc)
        except RuleViolation as exc:
            form.form_errors.append(exc.message)
    return form, change


@bp.post("/change/preview")
@enabled_only
@require_permission("billing:manage")
def change_preview():
    form, change = _change_form()
    if change is None:
        return _page(422, change_form=form, partial=CHANGE)
    try:
        preview = subscriptions.preview(g.org, change)
    except (RuleViolation, billing.BillingUnavailable) as exc:
        form.form_errors.append(exc.message)
        return _page(422, change_form=form, partial=CHANGE)
    form.proration_date.data = str(preview.proration_date)
    return _page(change_form=form, preview=preview, partial=CHANGE)


@bp.post("/change")
@enabled_only
@require_permission("billing:manage")
def change():
    form, change = _change_form()
    if change is None:
        return _page(422, change_form=form, partial=CHANGE)
    moment = form.proration_date.data
    try:
        moment = str(moment or "")
        subscriptions.apply(g.org, current_actor(), change,
                            int(moment) if moment.isascii() and moment.isdigit() and len(moment) <= 12 else None)
    except (RuleViolation, billing.BillingUnavailable) as exc:
        form.form_errors.append(exc.message)
        return _page(422, change_form=form, partial=CHANGE)
    return _done(f"Changed to {change.plan.name}, {plans.INTERVALS[change.interval].lower()}, {change.seats} seats.")


@bp.post("/cancel")
@enabled_only
@require_permission("billing:manage")
def cancel():
    return _set_cancel(True)


@bp.post("/reactivate")
@enabled_only
@require_permission("billing:manage")
def reactivate():
    return _set_cancel(False)


def _set_cancel(cancel: bool):
    try:
        account = subscriptions.set_cancel_at_period_end(g.org, current_actor(), cancel)
    except (RuleViolation, billing.BillingUnavailable) as exc:
        return toast(_page(409), exc.message, "error")
    end = format_time(account.period_end, g.org, "day") or "the end of the period"
    message = (f"The subscription ends on {end}; {account.plan.name if account.plan else 'the plan'} stays until then."
               if cancel else "The subscription continues; nothing ends.")
    return _done(message)


def _done(message: str):
    """Back to the billing page with `message`: a toast for htmx, a flash for a plain form."""
    if htmx:
        return toast(redirect_to(url_for("billing.index")), message)
    flash(message, "success")
    return redirect_to(url_for("billing.index"))


@bp.post("/stripe/webhook")
@csrf.exempt
@limiter.exempt
def stripe_webhook():
    """Stripe's events (public: the signature is the authorization)."""
    if not billing.enabled():
        abort(404)
    try:
        outcome = webhooks.receive(request.get_data(cache=False), request.headers.get("Stripe-Signature"))
    except webhooks.BadSignature:
        return jsonify(error="The signature does not match this endpoint's secret, or is too old."), 400
    except Exception:
        log.exception("Stripe webhook could not be applied; Stripe will retry it")
        return jsonify(error="Not applied now; retry later."), 500
    return jsonify(received=True, status=outcome.status, id=outcome.event_id)

"""The billing JSON API (docs/API.md "Billing"): the subscription (read,
start through Checkout, change with a proration preview, cancel at period
end), one-off invoices and the invoice history. Scope `admin`, and the key's
creator must hold `billing:manage` now (owner or billing). With billing off
every operation is a 404."""
from __future__ import annotations

import functools
import re
from decimal import Decimal

from flask import g, jsonify, request

from costguardian import permissions
from costguardian.models import Invoice
from costguardian.services import billing
from costguardian.services.actor import Actor
from costguardian.services.billing import accounts, invoices, plans, subscriptions
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.services.team import orgs
from costguardian.services.usage.ingest import BatchError, usd_string
from costguardian.openapi import CENTS_PATTERN, IDEMPOTENCY_KEY_PATTERN
from costguardian.views.api import api_key_required, bp, int_arg, problem, text_error

CENTS = re.compile(CENTS_PATTERN)
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN[1:-1])
URL = re.compile(r"https?://[!-~]{1,2000}")  # the document's pattern: printable ASCII
INTERVALS = tuple(plans.INTERVALS)


def _actor() -> Actor:
    return Actor(user=None, ip=request.remote_addr or "", user_agent=request.headers.get("User-Agent", "")[:512],
                 api_key=g.api_key)


def _billing_api(view):
    """Billing on, and the key's creator may manage billing now."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not billing.enabled():
            return problem(404, "billing-disabled", "Billing is off on this installation: every feature is "
                                                     "available without a plan.")
        acting = orgs.acting_member(g.org, _actor())
        if acting is not None and not permissions.role_can(acting[1] or "", "billing:manage"):
            return problem(403, "not-permitted", "This API key's creator cannot manage billing (owners and "
                                                 "billing members can).")
        return view(*args, **kwargs)

    return wrapped


def _date(value) -> str | None:
    return value.isoformat() + "Z" if value else None


def subscription_json(org) -> dict:
    account = accounts.account_for(org)
    access = accounts.access(org, account)
    start, end = accounts.period(account)
    return {
        "plan": account.plan.code if account.plan_id and account.status else None,
        "status": account.status or None, "interval": account.interval if account.status else None,
        "seats": account.seats or None, "seats_used": accounts.seats_used(org),
        "seats_allowed": accounts.seats_allowed(org, account),
        "access_plan": access.plan.code, "period_start": _date(start), "period_end": _date(end),
        "trial_end": _date(account.trial_end), "cancel_at_period_end": bool(account.cancel_at_period_end),
        "payment_method": account.payment_method or None,
        "events_this_period": accounts.events_between(org, start, end),
        "events_included": accounts.allowance(access, account), "banner": access.message or None,
    }


def invoice_json(invoice: Invoice) -> dict:
    return {"id": invoice.stripe_invoice_id, "number": invoice.number or None, "status": invoice.status,
            "date": _date(invoice.issued_at), "total_usd": usd_string(invoice.total_nanos),
            "amount_paid_usd": usd_string(invoice.amount_paid_nanos),
            "amount_due_usd": usd_string(invoice.amount_due_nanos),
            "hosted_invoice_url": invoice.hosted_invoice_url or None, "invoice_pdf": invoice.invoice_pdf or None}


def _body(allowed: dict) -> tuple[dict, dict]:
    """The JSON object body and its type errors ({} when fine)."""
    from costguardian.views.api import _json_body

    body = _json_body()
    if not isinstance(body, dict):
        raise BatchError("invalid-request", "Send a JSON object.", {"": "Expected a JSON object."})
    errors = {}
    for name, value in body.items():
        if name not in allowed:
            errors[name] = "Unknown field."
            continue
        check, message = allowed[name]
        if value is not None and not check(value):
            errors[name] = message
    return body, errors


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_PLAN = (lambda v: isinstance(v, str) and bool(plans.CODE.fullmatch(v)), "A plan's code, like \"team\".")
_INTERVAL = (lambda v: v in INTERVALS, "month or year.")
_SEATS = (lambda v: _is_int(v) and 1 <= v <= subscriptions.MAX_SEATS,
          f"A whole number of seats from 1 to {subscriptions.MAX_SEATS:,}.")
_URL = (lambda v: isinstance(v, str) and bool(URL.fullmatch(v)), "An absolute http(s) URL.")
_BOOL = (lambda v: isinstance(v, bool), "true or false.")
CREATE = {"plan": _PLAN, "interval": _INTERVAL, "seats": _SEATS, "success_url": _URL, "cancel_url": _URL}
UPDATE = {"plan": _PLAN, "interval": _INTERVAL, "seats": _SEATS, "cancel_at_period_end": _BOOL, "preview": _BOOL,
          "proration_date": (lambda v: _is_int(v) and 0 < v < 2**40, "A Unix time, as the preview answered it.")}
INVOICE = {"items": (lambda v: isinstance(v, list) and 1 <= len(v) <= invoices.MAX_ITEMS,
                     f"A list of 1 to {invoices.MAX_ITEMS} items {{description, amount_usd}}.")}


def _invalid(errors: dict):
    return problem(422, "invalid-request", "Some fields are not valid; see 'errors'.", errors=errors)


def _refusal(exc: Exception):
    if isinstance(exc, ValidationError):
        return _invalid(exc.errors)
    if isinstance(exc, billing.BillingUnavailable):
        return problem(503, "stripe-unavailable", exc.message)
    return problem(409, "rule-violation", exc.message)


def _body_problem(exc: BatchError):
    status = 415 if exc.problem == "unsupported-media-type" else 422
    return problem(status, exc.problem, exc.detail, **({"errors": exc.errors} if exc.errors else {}))


@bp.get("/v1/billing/subscription")
@api_key_required("admin")
@_billing_api
def billing_subscription():
    return jsonify(subscription_json(g.org))


@bp.post("/v1/billing/subscription")
@api_key_required("admin")
@_billing_api
def billing_subscribe():
    from costguardian.rendering import external_url

    try:
        body, errors = _body(CREATE)
    except BatchError as exc:
        return _body_problem(exc)
    if "plan" not in body and "plan" not in errors:
        errors["plan"] = "Name the plan, like \"team\"."
    if errors:
        return _invalid(errors)
    success = external_url("billing.success") + "?session_id={CHECKOUT_SESSION_ID}"
    try:
        url = subscriptions.start_checkout(
            g.org, _actor(), body["plan"], body.get("interval") or "month", body.get("seats"),
            success_url=body.get("success_url") or success,
            cancel_url=body.get("cancel_url") or external_url("billing.index"))
    except (ValidationError, RuleViolation, billing.BillingUnavailable) as exc:
        return _refusal(exc)
    account = accounts.account_for(g.org)
    response = jsonify({"checkout_url": url, "session_id": account.checkout_session_id})
    response.status_code = 201
    return response


@bp.put("/v1/billing/subscription")
@api_key_required("admin")
@_billing_api
def billing_change():
    try:
        body, errors = _body(UPDATE)
    except BatchError as exc:
        return _body_problem(exc)
    if errors:
        return _invalid(errors)
    changing = any(body.get(name) is not None for name in ("plan", "interval", "seats"))
    cancel = body.get("cancel_at_period_end")
    if not changing and cancel is None:
        return _invalid({"": "Send plan, interval or seats to change, or cancel_at_period_end."})
    if changing and cancel is not None:
        return _invalid({"cancel_at_period_end": "Change the plan and the cancellation in separate requests."})
    if cancel is not None and body.get("preview"):
        return _invalid({"preview": "A cancellation has no preview: the plan stays until the period ends."})
    try:
        if cancel is not None:
            subscriptions.set_cancel_at_period_end(g.org, _actor(), cancel)
            return jsonify({"subscription": subscription_json(g.org)})
        change = subscriptions.plan_change(g.org, body.get("plan"), body.get("interval"), body.get("seats"))
        if body.get("preview"):
            preview = subscriptions.preview(g.org, change)
            return jsonify({"preview": {
                "plan": change.plan.code, "interval": change.interval, "seats": change.seats,
                "due_now_usd": usd_string(preview.due_now_nanos), "invoiced_now": preview.invoiced_now,
                "next_invoice_usd": usd_string(preview.next_invoice_nanos) if preview.next_invoice_nanos is not None
                else None,
                "proration_date": preview.proration_date,
                "lines": [{"description": d, "amount_usd": usd_string(a)} for d, a in preview.lines]}})
        subscriptions.apply(g.org, _actor(), change, body.get("proration_date"))
    except (ValidationError, RuleViolation, billing.BillingUnavailable) as exc:
        return _refusal(exc)
    return jsonify({"subscription": subscription_json(g.org)})


def _items(raw: list, errors: dict) -> list[tuple[str, int]]:
    items = []
    for index, item in enumerate(raw):
        where = f"items[{index}]"
        if not isinstance(item, dict) or set(item) - {"description", "amount_usd"}:
            errors[where] = "An object {description, amount_usd}."
            continue
        message = text_error(item.get("description"), 500, required=True)
        if message:
            errors[f"{where}.description"] = message
        amount = item.get("amount_usd")
        if not isinstance(amount, str) or not CENTS.fullmatch(amount):
            errors[f"{where}.amount_usd"] = "Dollars in whole cents, as a string like \"12.50\"."
            continue
        nanos = int(Decimal(amount) * 10**9)
        if not message:
            items.append((item["description"].strip(), nanos))
    return items


@bp.post("/v1/billing/invoice")
@api_key_required("admin")
@_billing_api
def billing_invoice():
    try:
        body, errors = _body(INVOICE)
    except BatchError as exc:
        return _body_problem(exc)
    items = _items(body.get("items") or [], errors) if not errors else []
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        errors["Idempotency-Key"] = "1 to 100 letters, digits and . _ : - (the header)."
    if errors:
        return _invalid(errors)
    try:
        invoice = invoices.create_one_off(g.org, _actor(), items, idempotency_key=key)
    except (ValidationError, RuleViolation, billing.BillingUnavailable) as exc:
        return _refusal(exc)
    response = jsonify(invoice_json(invoice))
    response.status_code = 201
    return response


@bp.get("/v1/billing/history")
@api_key_required("admin")
@_billing_api
def billing_history():
    errors: dict = {}
    limit = int_arg("limit", 24, 1, 100, errors)
    if errors:
        return _invalid(errors)
    return jsonify({"invoices": [invoice_json(i) for i in invoices.history(g.org, limit)]})

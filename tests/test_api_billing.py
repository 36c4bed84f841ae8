"""The billing JSON API against the fake Stripe: who may call it, starting a
subscription through Checkout, previewing and applying a change, cancelling
at the period's end, one-off invoices and the history."""
from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

from costguardian.models import AuditLog, BillingAccount, Invoice
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.usage.ingest import usd_string
from tests.billing_support import T0, billing_on, live, owner, pay, traveller  # noqa: F401
from tests.support import add_member

PROBLEM = "application/problem+json"


@pytest.fixture
def api(app):
    client = app.test_client()

    def call(method, path, key, body=None, **query):
        return client.open(path, method=method, headers={"Authorization": f"Bearer {key}"},
                           data=json.dumps(body) if body is not None else None, content_type="application/json",
                           query_string=query)

    return call


def _key(org, user, scopes=("admin",)):
    keys._last_written.clear()
    return keys.create_key(org, Actor(user=user), "billing", list(scopes)).plaintext


def _subscribed(api, key, seats=3):
    made = api("POST", "/api/v1/billing/subscription", key, {"plan": "team", "seats": seats})
    assert made.status_code == 201, made.json
    assert pay(made.json["checkout_url"]).status_code == 303
    return made.json


def test_who_may_call_it(api, owner, billing_on, make_user, app):
    client, user, org = owner
    assert api("GET", "/api/v1/billing/subscription", _key(org, user)).status_code == 200
    reader = api("GET", "/api/v1/billing/subscription", _key(org, user, ("read",)))
    assert reader.status_code == 403 and reader.mimetype == PROBLEM
    admin = make_user("adam@acme.com")
    add_member(org, admin, "admin")
    refused = api("GET", "/api/v1/billing/history", _key(org, admin))
    assert refused.status_code == 403 and "cannot manage billing" in refused.json["detail"]
    billing_member = make_user("bill@acme.com")
    add_member(org, billing_member, "billing")
    assert api("GET", "/api/v1/billing/history", _key(org, billing_member)).status_code == 200
    app.config["BILLING_ENABLED"] = False
    off = api("GET", "/api/v1/billing/subscription", _key(org, user))
    assert off.status_code == 404 and off.json["type"].endswith("/billing-disabled")


def test_subscribe_through_checkout_then_read_the_subscription(api, owner, live):
    client, user, org = owner
    key = _key(org, user)
    free = api("GET", "/api/v1/billing/subscription", key).json
    assert (free["plan"], free["status"], free["access_plan"], free["seats_allowed"]) == (None, None, "free", 3)
    made = _subscribed(api, key)
    assert made["checkout_url"].startswith(f"{live.url}/pay/checkout/") and made["session_id"].startswith("cs_test_")
    state = api("GET", "/api/v1/billing/subscription", key).json
    assert (state["plan"], state["status"], state["seats"], state["interval"]) == ("team", "trialing", 3, "month")
    assert state["payment_method"] == "Visa •••• 4242, expires 12/2034" and state["trial_end"].startswith("2026-03-24")
    again = api("POST", "/api/v1/billing/subscription", key, {"plan": "business"})
    assert again.status_code == 409 and "already subscribes to Team" in again.json["detail"]


def test_a_change_is_previewed_then_applied(api, owner, live, traveller):
    client, user, org = owner
    key = _key(org, user)
    _subscribed(api, key, seats=2)
    preview = api("PUT", "/api/v1/billing/subscription", key, {"seats": 4, "preview": True})
    assert preview.status_code == 200, preview.json
    shown = preview.json["preview"]
    assert (shown["plan"], shown["seats"], shown["invoiced_now"]) == ("team", 4, True)
    assert shown["lines"] and shown["proration_date"] > 0
    assert BillingAccount.in_org(org).get().seats == 2  # nothing changed
    applied = api("PUT", "/api/v1/billing/subscription", key, {"seats": 4, "proration_date": shown["proration_date"]})
    assert applied.status_code == 200 and applied.json["subscription"]["seats"] == 4
    stripe = live.client()
    sub = stripe.v1.subscriptions.retrieve(BillingAccount.in_org(org).get().stripe_subscription_id)
    assert sub["items"].data[0].quantity == 4
    cancel = api("PUT", "/api/v1/billing/subscription", key, {"cancel_at_period_end": True})
    assert cancel.json["subscription"]["cancel_at_period_end"] is True
    assert stripe.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is True
    undo = api("PUT", "/api/v1/billing/subscription", key, {"cancel_at_period_end": False})
    assert undo.json["subscription"]["cancel_at_period_end"] is False


def test_bad_bodies_are_422_with_field_errors(api, owner, live):
    client, user, org = owner
    key = _key(org, user)
    bad = api("POST", "/api/v1/billing/subscription", key, {"plan": "gold", "seats": 0, "colour": "red"})
    assert bad.status_code == 422 and set(bad.json["errors"]) == {"seats", "colour"}
    unknown = api("POST", "/api/v1/billing/subscription", key, {"plan": "gold"})
    assert unknown.status_code == 422 and "plans on sale" in unknown.json["errors"]["plan"]
    assert api("POST", "/api/v1/billing/subscription", key, {}).json["errors"] == {
        "plan": "Name the plan, like \"team\"."}
    assert api("POST", "/api/v1/billing/subscription", key, {"plan": "team", "success_url": "javascript:x"}
               ).json["errors"] == {"success_url": "An absolute http(s) URL."}
    none = api("PUT", "/api/v1/billing/subscription", key, {"seats": 3})
    assert none.status_code == 409 and "no subscription" in none.json["detail"]
    assert api("PUT", "/api/v1/billing/subscription", key, {}).status_code == 422
    assert BillingAccount.in_org(org).first() is None or BillingAccount.in_org(org).get().stripe_customer_id is None


def test_one_off_invoices_and_the_history(api, owner, live):
    client, user, org = owner
    key = _key(org, user)
    nothing = api("POST", "/api/v1/billing/invoice", key, {})
    assert nothing.status_code == 409 and "subscribe first" in nothing.json["detail"]
    _subscribed(api, key)
    assert api("POST", "/api/v1/billing/invoice", key, {}).status_code == 409  # nothing pending
    bad = api("POST", "/api/v1/billing/invoice", key, {"items": [{"description": "", "amount_usd": "1.001"}]})
    assert bad.status_code == 422 and "items[0].description" in bad.json["errors"]
    cents = api("POST", "/api/v1/billing/invoice", key, {"items": [{"description": "x", "amount_usd": "1.001"}]})
    assert cents.status_code == 422 and "whole cents" in cents.json["errors"]["items[0].amount_usd"]
    made = api("POST", "/api/v1/billing/invoice", key, {"items": [
        {"description": "Overage true-up, February", "amount_usd": "42.50"},
        {"description": "Setup", "amount_usd": "10"}]})
    assert made.status_code == 201, made.json
    invoice = made.json
    assert invoice["number"] and invoice["total_usd"] == "52.5" and invoice["status"] in ("open", "paid")
    assert invoice["hosted_invoice_url"].startswith(live.url)
    stored = Invoice.get(Invoice.stripe_invoice_id == invoice["id"])
    assert stored.total_nanos == 52_500_000_000
    history = api("GET", "/api/v1/billing/history", key).json["invoices"]
    assert [i["id"] for i in history][0] == invoice["id"] and len(history) == 2
    assert api("GET", "/api/v1/billing/history", key, limit=1).json["invoices"][0]["id"] == invoice["id"]
    assert api("GET", "/api/v1/billing/history", key, limit=0).status_code == 422


def test_billing_off_every_operation_is_404(api, owner, billing_on, app):
    client, user, org = owner
    key = _key(org, user)
    app.config["BILLING_ENABLED"] = False
    asked = len(billing_on.requests)
    for method, path, body in (("GET", "/api/v1/billing/subscription", None),
                               ("POST", "/api/v1/billing/subscription", {"plan": "team"}),
                               ("PUT", "/api/v1/billing/subscription", {"seats": 4}),
                               ("POST", "/api/v1/billing/invoice", {}),
                               ("GET", "/api/v1/billing/history", None)):
        off = api(method, path, key, body)
        assert off.status_code == 404 and off.mimetype == PROBLEM, (method, path)
        assert off.json["type"].endswith("/billing-disabled") and "Billing is off" in off.json["detail"]
    assert len(billing_on.requests) == asked  # Stripe is never called


def test_a_paid_period_preview_is_what_the_change_charges(api, owner, live, traveller):
    client, user, org = owner
    key = _key(org, user)
    _subscribed(api, key, seats=2)
    later = T0 + timedelta(days=20)  # after the trial: a paid period
    live.advance(later)
    traveller.move_to(later)
    sub_id = BillingAccount.in_org(org).get().stripe_subscription_id
    stripe = live.client()
    preview = api("PUT", "/api/v1/billing/subscription", key, {"seats": 4, "preview": True}).json["preview"]
    assert preview["invoiced_now"] is True and Decimal(preview["due_now_usd"]) > 0
    assert sum(Decimal(line["amount_usd"]) for line in preview["lines"]) == Decimal(preview["due_now_usd"])
    assert preview["next_invoice_usd"] is None  # invoiced now: the preview is that invoice
    assert stripe.v1.subscriptions.retrieve(sub_id)["items"].data[0].quantity == 2  # nothing changed in Stripe
    assert BillingAccount.in_org(org).get().seats == 2
    invoices_before = Invoice.in_org(org).count()
    traveller.shift(timedelta(minutes=3))  # confirming a little later still charges the previewed amount
    applied = api("PUT", "/api/v1/billing/subscription", key, {"seats": 4, "proration_date": preview["proration_date"]})
    assert applied.status_code == 200 and applied.json["subscription"]["seats"] == 4
    charged = Invoice.in_org(org).order_by(Invoice.issued_at.desc(), Invoice.id.desc()).first()
    assert Invoice.in_org(org).count() == invoices_before + 1 and charged.billing_reason == "subscription_update"
    assert usd_string(charged.total_nanos) == preview["due_now_usd"]


def test_a_cancellation_cannot_be_previewed_or_mixed_with_a_change(api, owner, live):
    client, user, org = owner
    key = _key(org, user)
    _subscribed(api, key)
    mixed = api("PUT", "/api/v1/billing/subscription", key, {"cancel_at_period_end": True, "preview": True})
    assert mixed.status_code == 422 and "preview" in mixed.json["errors"]
    both = api("PUT", "/api/v1/billing/subscription", key, {"cancel_at_period_end": True, "seats": 4})
    assert both.status_code == 422 and "cancel_at_period_end" in both.json["errors"]
    sub = live.client().v1.subscriptions.retrieve(BillingAccount.in_org(org).get().stripe_subscription_id)
    assert sub.cancel_at_period_end is False and sub["items"].data[0].quantity == 3
    same = api("PUT", "/api/v1/billing/subscription", key, {"seats": 3})
    assert same.status_code == 422 and "current plan" in same.json["errors"][""]


def test_bodies_that_are_not_json_objects(api, owner, live, app):
    client, user, org = owner
    key = _key(org, user)
    form = app.test_client().post("/api/v1/billing/subscription", data="plan=team",
                                  headers={"Authorization": f"Bearer {key}"},
                                  content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415 and form.mimetype == PROBLEM
    listed = api("POST", "/api/v1/billing/subscription", key, ["team"])
    assert listed.status_code == 422 and listed.mimetype == PROBLEM
    types = api("PUT", "/api/v1/billing/subscription", key, {"seats": "4", "preview": "yes", "interval": "week"})
    assert types.status_code == 422 and set(types.json["errors"]) == {"seats", "preview", "interval"}
    assert api("GET", "/api/v1/billing/history", key, limit="ten").status_code == 422


def test_invoice_amounts_and_a_stripe_outage(api, owner, live):
    client, user, org = owner
    key = _key(org, user)
    _subscribed(api, key)
    zero = api("POST", "/api/v1/billing/invoice", key, {"items": [{"description": "Nothing", "amount_usd": "0"}]})
    assert zero.status_code == 422 and "items[0].amount_usd" in zero.json["errors"]
    number = api("POST", "/api/v1/billing/invoice", key, {"items": [{"description": "x", "amount_usd": 12}]})
    assert number.status_code == 422 and "items[0].amount_usd" in number.json["errors"]
    extra = api("POST", "/api/v1/billing/invoice", key, {"items": [{"description": "x", "amount_usd": "1", "q": 2}]})
    assert extra.status_code == 422 and "items[0]" in extra.json["errors"]
    assert api("POST", "/api/v1/billing/invoice", key, {"items": []}).status_code == 422
    before = Invoice.in_org(org).count()
    live.fail_next(400, "parameter_invalid", should_retry=False)
    down = api("POST", "/api/v1/billing/invoice", key, {"items": [{"description": "True-up", "amount_usd": "5"}]})
    assert down.status_code == 503 and down.json["type"].endswith("/stripe-unavailable")
    assert Invoice.in_org(org).count() == before
    made = api("POST", "/api/v1/billing/invoice", key, {"items": [{"description": "True-up", "amount_usd": "5"}]})
    assert made.status_code == 201 and made.json["total_usd"] == "5" and made.json["status"] in ("open", "paid")
    stored = Invoice.get(Invoice.stripe_invoice_id == made.json["id"])
    assert live.get(stored.stripe_invoice_id)["status"] != "draft"
    assert AuditLog.select().where(AuditLog.action == "billing.invoice_created").count() == 1


def test_a_retried_invoice_request_with_an_idempotency_key_invoices_once(api, owner, live, app):
    client, user, org = owner
    key = _key(org, user)
    _subscribed(api, key)
    body = {"items": [{"description": "Overage true-up", "amount_usd": "7.25"}]}
    http = app.test_client()

    def send():
        return http.post("/api/v1/billing/invoice", data=json.dumps(body), content_type="application/json",
                         headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "true-up-2026-03"})

    first, again = send(), send()
    assert first.status_code == again.status_code == 201 and first.json["id"] == again.json["id"]
    items = [o for o in live.state.objects.values() if o.get("object") == "invoiceitem"]
    assert len(items) == 1 and Invoice.select().where(Invoice.stripe_invoice_id == first.json["id"]).count() == 1


def test_items_added_by_a_failed_invoice_are_deleted(owner, live):
    from costguardian.services import billing
    from costguardian.services.billing import invoices

    client, user, org = owner
    stripe = billing.client()
    customer = stripe.v1.customers.create(params={"email": "x@acme.com"})
    item = stripe.v1.invoice_items.create(params={"customer": customer.id, "amount": 500, "currency": "usd"})
    invoices._delete_items(stripe, [item.id])
    assert item.id not in live.state.objects
    assert not stripe.v1.invoice_items.list(params={"customer": customer.id, "pending": True}).data

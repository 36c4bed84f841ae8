"""Billing through Stripe, end to end against the local fake Stripe: Checkout
activates the plan when the signed webhook lands; webhooks are applied once,
in any order, and forged or stale ones change nothing; a failed payment goes
through its grace period to Free limits and back; cancelling keeps the plan
until the period ends; the nightly sync repairs a lost webhook; billing off
hides every screen and lifts every limit."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta

import requests

from costguardian import clock
from costguardian.money import format_usd
from costguardian.models import AuditLog, BillingAccount, Invoice, Notification, StripeEvent
from costguardian.services.billing import accounts, sync
from tests.billing_support import T0, billing_on, live, owner, pay, subscribe, traveller  # noqa: F401
from tests.fakes.stripe_billing import CARD_FAILS_LATER, CARD_OK


def _account(org) -> BillingAccount:
    return BillingAccount.in_org(org).get()


def test_billing_off_hides_every_screen_and_lifts_limits(owner_client, app):
    client, user, org = owner_client
    assert not app.config["BILLING_ENABLED"]
    for path in ("/billing/", "/billing/success"):
        assert client.get(path).status_code == 404
    assert client.post("/billing/checkout", {"plan": "team"}).status_code == 404
    assert client.http.post("/billing/stripe/webhook", data=b"{}").status_code == 404
    page = client.get("/").get_data(as_text=True)
    assert "/billing/" not in page
    emails = "\n".join(f"person{i}@acme.com" for i in range(8))  # beyond Free's 3 seats: no limit
    answer = client.post("/invitations/", {"emails": emails, "role": "member"})
    assert answer.status_code == 200 and answer.get_data(as_text=True).count("invite-result-invited") == 8


def test_upgrade_through_checkout_activates_when_the_webhook_lands(owner, live):
    client, user, org = owner
    page = client.get("/billing/").get_data(as_text=True)
    assert 'data-testid="plan-team"' in page and "1 used of 3" in page and "Upgrade with Stripe Checkout" in page

    answer = client.post("/billing/checkout", {"plan": "team", "interval": "month", "seats": "5"})
    assert answer.status_code == 302
    url = answer.headers["Location"]
    assert url.startswith(f"{live.url}/pay/checkout/cs_test_")
    session_id = url.rsplit("/", 1)[1]
    waiting = client.get(f"/billing/success?session_id={session_id}").get_data(as_text=True)
    assert "Activating…" in waiting and "every 2s" in waiting

    paid = pay(url)
    assert paid.status_code == 303
    assert paid.headers["Location"].endswith(f"/billing/success?session_id={session_id}")
    assert [d.status for d in live.deliveries] == [200] * len(live.deliveries) and live.deliveries

    account = _account(org)
    assert (account.plan.code, account.status, account.seats, account.interval) == ("team", "trialing", 5, "month")
    # 14 days from the moment Stripe started the subscription; the clock ticks from T0 (a busy machine takes seconds)
    trial_from = account.trial_end - timedelta(days=14)
    assert T0.replace(tzinfo=None, microsecond=0) <= trial_from <= clock.now().replace(tzinfo=None)
    assert account.payment_method == "Visa •••• 4242, expires 12/2034"
    done = client.get(f"/billing/success/status?session_id={session_id}", htmx=True).get_data(as_text=True)
    assert "Acme is now on Team" in done and "every 2s" not in done
    page = client.get("/billing/").get_data(as_text=True)
    assert "trial until 2026-03-24" in page and "5 used of 5" not in page and "1 used of 5" in page
    assert "Change plan, billing or seats" in page and "Upgrade with Stripe Checkout" not in page
    [invoice] = Invoice.in_org(org)
    assert invoice.status == "paid" and invoice.total_nanos == 0 and invoice.hosted_invoice_url.startswith(live.url)
    actions = {a.action for a in AuditLog.select().where(AuditLog.organization == org)}
    assert {"billing.customer_created", "billing.checkout_started", "billing.checkout.session.completed",
            "billing.customer.subscription.created", "billing.invoice.paid"} <= actions
    # One customer for the organization, reused by a second Checkout attempt.
    assert len([c for c in live.state.objects.values() if c.get("object") == "customer"]) == 1


def test_a_repeated_delivery_changes_nothing(owner, live):
    client, user, org = owner
    subscribe(client)
    events, audits = StripeEvent.select().count(), AuditLog.select().count()
    [completed] = live.event_ids("checkout.session.completed")
    live.resend(completed)
    assert live.deliveries[-1].status == 200 and json.loads(live.deliveries[-1].body)["status"] == "duplicate"
    assert (StripeEvent.select().count(), AuditLog.select().count()) == (events, audits)


def test_racing_deliveries_of_created_and_updated_make_one_subscription_row(owner, live):
    client, user, org = owner
    live.auto_deliver = False
    subscribe(client)
    stripe = live.client()
    sub_id = _account_or_none(org)
    assert sub_id is None  # nothing delivered yet
    [sub] = stripe.v1.subscriptions.list(params={"customer": _account(org).stripe_customer_id}).data
    stripe.v1.subscriptions.update(sub.id, params={"metadata": {"note": "racing"}})
    ids = live.event_ids("customer.subscription.created") + live.event_ids("customer.subscription.updated")
    threads = [threading.Thread(target=live.send, args=(event_id,)) for event_id in ids * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert BillingAccount.in_org(org).count() == 1
    account = _account(org)
    assert account.stripe_subscription_id == sub.id and account.status == "trialing"
    assert StripeEvent.select().where(StripeEvent.event_id.in_(ids)).count() == len(ids)


def _account_or_none(org):
    account = BillingAccount.in_org(org).first()
    return account.stripe_subscription_id if account else None


def test_an_older_event_arriving_late_does_not_roll_the_subscription_back(owner, live):
    client, user, org = owner
    subscribe(client)
    live.auto_deliver = False
    stripe = live.client()
    account = _account(org)
    stripe.v1.subscriptions.update(account.stripe_subscription_id, params={"cancel_at_period_end": True})
    stripe.v1.subscriptions.cancel(account.stripe_subscription_id)
    [updated] = live.event_ids("customer.subscription.updated")
    [deleted] = live.event_ids("customer.subscription.deleted")
    live.send(deleted)
    assert _account(org).status == "canceled"
    live.send(updated)  # older: its snapshot says "trialing, cancels at period end"
    account = _account(org)
    assert account.status == "canceled" and accounts.access(org, account).plan.is_free
    [notice] = Notification.select().where(Notification.organization == org,
                                           Notification.event_type == "billing.subscription_canceled")
    assert "Team subscription has ended" in notice.title


def _signed(payload: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def test_forged_and_stale_signatures_are_refused_and_change_nothing(owner, live):
    client, user, org = owner
    live.auto_deliver = False
    subscribe(client)
    [event_id] = live.event_ids("checkout.session.completed")
    payload = json.dumps(next(e for e in live.state.events if e["id"] == event_id)).encode()
    hook = live.webhook_url
    now = int(time.time())
    for signature in (_signed(payload, "whsec_not_ours", now), _signed(payload, live.webhook_secret, now - 301),
                      "", "t=1,v1=00"):
        answer = requests.post(hook, data=payload, headers={"Stripe-Signature": signature,
                                                            "Content-Type": "application/json"})
        assert answer.status_code == 400, signature
    assert StripeEvent.select().count() == 0 and _account(org).status == ""
    tampered = payload.replace(b'"complete"', b'"expired"')
    answer = requests.post(hook, data=tampered, headers={"Stripe-Signature": _signed(payload, live.webhook_secret,
                                                                                       now)})
    assert answer.status_code == 400
    good = requests.post(hook, data=payload, headers={"Stripe-Signature": _signed(payload, live.webhook_secret, now)})
    assert good.status_code == 200 and _account(org).status == "trialing"


def test_a_failed_payment_keeps_the_plan_through_the_grace_period_then_free_limits_and_back(
        owner, live, traveller, app):
    client, user, org = owner
    stripe = live.client()
    subscribe(client, seats=4)
    account = _account(org)
    portal = stripe.v1.billing_portal.sessions.create(params={"customer": account.stripe_customer_id,
                                                              "return_url": "http://x/billing"})
    assert requests.post(f"{portal.url}/card", data={"cardNumber": CARD_FAILS_LATER, "cardExpiry": "01/30"}
                         ).status_code == 200
    renewal = T0 + timedelta(days=14, hours=1)  # the trial ends; the first charge fails
    traveller.move_to(renewal)
    live.advance(renewal)
    account = _account(org)
    assert account.status == "past_due" and account.past_due_since is not None
    access = accounts.access(org, account)
    assert access.plan.code == "team" and access.grace_until is not None and not access.fallen_back
    page = client.get("/billing/").get_data(as_text=True)
    assert "The last payment failed. Update the payment method before" in page
    assert 'data-testid="billing-banner"' in page
    [failed] = Notification.select().where(Notification.organization == org,
                                           Notification.event_type == "billing.payment_failed")
    assert "$80.00" in failed.title

    traveller.move_to(renewal + timedelta(days=15))
    access = accounts.access(org, _account(org))
    assert access.fallen_back and access.plan.is_free and "Free limits apply" in access.message
    assert client.get("/").get_data(as_text=True).count("Free limits apply") == 1
    assert accounts.seats_allowed(org) == 3

    requests.post(f"{portal.url}/card", data={"cardNumber": CARD_OK})
    live.now = renewal + timedelta(days=15)
    assert live.pay_open_invoices(account.stripe_customer_id)
    account = _account(org)
    assert account.status == "active" and account.past_due_since is None
    access = accounts.access(org, account)
    assert access.plan.code == "team" and not access.message
    assert "billing-banner" not in client.get("/billing/").get_data(as_text=True)


def test_cancel_at_period_end_keeps_the_plan_and_reactivating_undoes_it(owner, live):
    client, user, org = owner
    subscribe(client)
    answer = client.post("/billing/cancel")
    assert answer.status_code == 302
    account = _account(org)
    assert account.cancel_at_period_end and accounts.access(org, account).plan.code == "team"
    page = client.get("/billing/").get_data(as_text=True)
    assert "None: the subscription ends on 2026-03-24 and Team stays until then." in page
    assert "Keep the subscription" in page
    client.post("/billing/reactivate")
    assert not _account(org).cancel_at_period_end
    assert "Cancel at the end of the period" in client.get("/billing/").get_data(as_text=True)


def test_the_nightly_sync_repairs_a_webhook_that_never_arrived(owner, live):
    client, user, org = owner
    live.auto_deliver = False  # Stripe's deliveries are lost
    subscribe(client)
    assert _account(org).status == ""
    assert sync.sync_all() == (1, 0)
    account = _account(org)
    assert (account.plan.code, account.status, account.seats) == ("team", "trialing", 5)
    assert Invoice.in_org(org).count() == 1


def test_viewers_admins_and_members_cannot_reach_billing(app, make_user, owner, billing_on):
    from tests.support import Client, add_member

    client, owner_user, org = owner
    for role in ("admin", "member", "viewer"):
        user = make_user(f"{role}@acme.com")
        add_member(org, user, role)
        other = Client(app)
        other.sign_in(user.email)
        assert other.get("/billing/").status_code == 403
        assert other.post("/billing/checkout", {"plan": "team", "seats": "3"}).status_code == 403
        assert "/billing/" not in other.get("/").get_data(as_text=True)
    billing = make_user("billing@acme.com")
    add_member(org, billing, "billing")
    member = Client(app)
    member.sign_in(billing.email)
    assert member.get("/billing/").status_code == 200


def test_bad_checkout_input_is_a_422_with_field_messages(owner, billing_on):
    client, user, org = owner
    for data, message in (({"plan": "gold", "interval": "month", "seats": "3"}, "Choose one of the plans on sale"),
                          ({"plan": "team", "interval": "weekly", "seats": "3"}, "Not a valid choice"),
                          ({"plan": "team", "interval": "month", "seats": "-2"}, "whole number of seats"),
                          ({"plan": "team", "interval": "month", "seats": "lots"}, "whole number of seats")):
        answer = client.post("/billing/checkout", data)
        assert answer.status_code == 422, data
        assert message in answer.get_data(as_text=True), data
    assert _account(org).stripe_customer_id is None  # nothing was created at Stripe


def test_the_seat_limit_refuses_invitations_beyond_the_plan(owner, billing_on):
    client, user, org = owner
    answer = client.post("/invitations/", {"emails": "a@acme.com\nb@acme.com", "role": "member"})
    assert answer.status_code == 200  # 1 member + 2 invitations = Free's 3 seats
    answer = client.post("/invitations/", {"emails": "c@acme.com", "role": "member"})
    assert answer.status_code == 422
    text = answer.get_data(as_text=True)
    assert "includes 3 seats; 3 are taken" in text and "Upgrade to invite more people" in text
    assert "/billing/?seats=4#change" in text
    from costguardian.models import Invitation

    assert Invitation.in_org(org).count() == 2


def test_trial_ending_and_card_changes_reach_the_right_people(owner, live, traveller):
    client, user, org = owner
    subscribe(client)
    account = _account(org)
    stripe = live.client()
    portal = stripe.v1.billing_portal.sessions.create(params={"customer": account.stripe_customer_id,
                                                              "return_url": "http://x/billing"})
    requests.post(f"{portal.url}/card", data={"cardNumber": "5555555555554444", "cardExpiry": "03/31"})
    assert _account(org).payment_method == "Mastercard •••• 4444, expires 03/2031"  # customer.updated
    moment = T0 + timedelta(days=11, hours=1)
    live.advance(moment)  # the fake sends what happens between its clock and `moment`
    traveller.move_to(moment)
    assert [(d.type, d.status) for d in live.deliveries][-1] == ("customer.subscription.trial_will_end", 200), \
        live.deliveries[-1]
    [notice] = Notification.select().where(Notification.organization == org,
                                           Notification.event_type == "billing.trial_ending")
    assert notice.title == "The Team trial ends on 2026-03-24"
    assert "The card on file will then be charged" in notice.body
    assert notice.user_id == user.id


def test_an_interval_change_is_previewed_then_invoiced_at_once(owner, live, traveller):
    client, user, org = owner
    subscribe(client, seats=2)
    traveller.move_to(T0 + timedelta(days=20))  # after the trial: a paid period
    live.advance(T0 + timedelta(days=20))
    assert _account(org).status == "active"
    preview = client.post("/billing/change/preview", {"plan": "business", "interval": "year", "seats": "3"},
                          htmx=True)
    text = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Charged now, prorated by Stripe" in text
    assert "Confirm: Business, yearly, 3 seats" in text and "$1,440.00" in text  # 3 × $480
    assert _account(org).plan.code == "team"  # a preview changes nothing
    moment = text.split('name="proration_date" value="')[1].split('"')[0]
    done = client.post("/billing/change", {"plan": "business", "interval": "year", "seats": "3",
                                           "proration_date": moment})
    assert done.status_code == 302
    account = _account(org)
    assert (account.plan.code, account.interval, account.seats) == ("business", "year", 3)
    latest = Invoice.in_org(org).order_by(Invoice.issued_at.desc(), Invoice.id.desc()).first()
    assert latest.billing_reason == "subscription_update" and latest.status == "paid"
    shown = text.split('data-testid="due-now">')[1].split("<")[0]
    assert shown == format_usd(latest.total_nanos)  # "charged now" is what was charged
    assert "Changed to Business, yearly, 3 seats." in client.get("/billing/").get_data(as_text=True)
    again = client.post("/billing/change/preview", {"plan": "business", "interval": "year", "seats": "3"}, htmx=True)
    assert again.status_code == 422 and "This is the current plan" in again.get_data(as_text=True)
    fewer = client.post("/billing/change/preview", {"plan": "business", "interval": "year", "seats": "0"}, htmx=True)
    assert fewer.status_code == 422 and "whole number of seats from 1" in fewer.get_data(as_text=True)


def test_two_upgrades_at_once_make_one_stripe_customer(owner, billing_on):
    from costguardian.services.billing import subscriptions
    from tests.support import SYSTEM

    client, user, org = owner
    results = []

    def start():
        from costguardian.db import connected
        from costguardian.extensions import db

        with client.app.app_context(), connected(db):
            results.append(subscriptions.ensure_customer(org, SYSTEM).stripe_customer_id)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 4
    customers = [o for o in billing_on.state.objects.values() if o.get("object") == "customer"]
    assert [c["id"] for c in customers] == results[:1]


def test_a_read_that_began_before_the_stored_one_writes_nothing(owner, live, traveller):
    """A slow webhook read the subscription (trialing), a quicker one read it
    later (cancelling) and stored first: the slow one must not roll it back."""
    from costguardian import clock

    client, user, org = owner
    subscribe(client)
    account = _account(org)
    stripe = live.client()
    older_read_at = clock.now()
    older = stripe.v1.subscriptions.retrieve(account.stripe_subscription_id)
    traveller.shift(5)
    newer = stripe.v1.subscriptions.update(account.stripe_subscription_id, params={"cancel_at_period_end": True})
    sync.store(account, newer, read_at=clock.now())
    assert _account(org).cancel_at_period_end
    sync.store(_account(org), older, read_at=older_read_at)  # arrives last
    assert _account(org).cancel_at_period_end  # still the newer state


def test_a_yearly_subscription_uses_yearly_prices_and_a_yearly_allowance(owner, live):
    from costguardian.services.billing import plans

    client, user, org = owner
    subscribe(client, interval="year", seats=5)  # the fake refuses prices of mixed intervals, as Stripe does
    account = _account(org)
    team = plans.by_code("team")
    assert (account.interval, account.plan.code) == ("year", "team") and account.metered_item_id
    sub = live.client().v1.subscriptions.retrieve(account.stripe_subscription_id)
    assert sorted(item.price.id for item in sub["items"].data) == sorted([team.stripe_yearly_price,
                                                                           team.stripe_metered_yearly_price])
    access = accounts.access(org, account)
    assert accounts.allowance(access, account) == 12 * team.events_included
    assert "of 12,000,000 included" in client.get("/billing/").get_data(as_text=True)

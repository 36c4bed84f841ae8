"""The fake Stripe API speaks Stripe's wire format: the official stripe library,
unchanged and pointed at it, creates objects, reads its errors, retries it,
replays idempotent requests; its hosted Checkout and portal pages work as
plain forms; its webhooks verify with stripe.Webhook.construct_event."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest
import requests
import stripe

from tests.fakes.stripe_billing import CARD_DECLINED, CARD_FAILS_LATER, CARD_OK

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def fake(stripe_api, webhook_receiver):
    stripe_api.now = T0
    stripe_api.webhook_url = webhook_receiver.url("/billing/stripe/webhook")
    return stripe_api


@pytest.fixture
def client(fake):
    return fake.client()


def plan(client, amount=2000, interval="month", lookup_key="team_monthly", name="Team"):
    product = client.v1.products.create(params={"name": name})
    return client.v1.prices.create(params={
        "product": product.id, "unit_amount": amount, "currency": "usd", "nickname": f"{name} {interval}",
        "recurring": {"interval": interval, "usage_type": "licensed"}, "lookup_key": lookup_key})


def checkout(client, customer, price, quantity=1, trial_days=None):
    params = {"mode": "subscription", "customer": customer.id, "client_reference_id": "org-7",
              "line_items": [{"price": price.id, "quantity": quantity}],
              "success_url": "http://app.test/billing/success?session_id={CHECKOUT_SESSION_ID}",
              "cancel_url": "http://app.test/billing", "metadata": {"organization_id": "7"},
              "subscription_data": {"metadata": {"organization_id": "7"}}}
    if trial_days:
        params["subscription_data"]["trial_period_days"] = trial_days
    return client.v1.checkout.sessions.create(params=params)


def pay(session, card=CARD_OK, email="owner@example.com"):
    return requests.post(session.url, data={"email": email, "cardNumber": card, "cardExpiry": "12 / 34",
                                            "cardCvc": "123", "billingName": "Ada Owner"}, allow_redirects=False)


def subscribe(client, quantity=1, trial_days=None, amount=2000):
    customer = client.v1.customers.create(params={"email": "owner@example.com", "name": "Acme",
                                                  "metadata": {"organization_id": "7"}})
    price = plan(client, amount=amount)
    session = checkout(client, customer, price, quantity, trial_days)
    assert pay(session).status_code == 303
    sub_id = client.v1.checkout.sessions.retrieve(session.id).subscription
    return customer, price, client.v1.subscriptions.retrieve(sub_id)


def received(receiver, fake) -> list[stripe.Event]:
    """Every webhook the receiver got, verified the way the app verifies them."""
    return [stripe.Webhook.construct_event(r.body.decode(), r.headers["Stripe-Signature"], fake.webhook_secret,
                                           tolerance=300) for r in receiver.received]


def types(receiver, fake) -> list[str]:
    return [e.type for e in received(receiver, fake)]


def prorated(amount: int, remaining: int, period: int) -> int:
    return int((Decimal(amount) * remaining / period).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_objects_are_created_in_stripe_shapes(client):
    customer = client.v1.customers.create(params={"email": "owner@example.com", "name": "Acme",
                                                  "metadata": {"organization_id": "7"}})
    assert re.fullmatch(r"cus_\w{14}", customer.id) and customer.object == "customer"
    assert customer.metadata["organization_id"] == "7" and customer.invoice_settings.default_payment_method is None
    price = plan(client)
    assert price.id.startswith("price_") and price.recurring.interval == "month" and price.unit_amount == 2000
    assert client.v1.prices.list(params={"lookup_keys": ["team_monthly"]}).data[0].id == price.id
    assert client.v1.prices.retrieve(price.id).product.startswith("prod_")
    with pytest.raises(stripe.InvalidRequestError) as taken:
        plan(client)  # the lookup key is taken
    assert taken.value.param == "lookup_key"
    meter = client.v1.billing.meters.create(params={
        "display_name": "Tracked events", "event_name": "tracked_events", "default_aggregation": {"formula": "sum"},
        "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
        "value_settings": {"event_payload_key": "value"}})
    assert meter.id.startswith("mtr_") and meter.object == "billing.meter" and meter.status == "active"
    assert [m.id for m in client.v1.billing.meters.list().data] == [meter.id]
    updated = client.v1.customers.update(customer.id, params={"name": "Acme Ltd", "metadata": {"organization_id": ""}})
    assert updated.name == "Acme Ltd" and "organization_id" not in updated.metadata


def test_checkout_pays_redirects_and_sends_signed_webhooks_in_order(fake, client, webhook_receiver):
    customer = client.v1.customers.create(params={"email": "owner@example.com"})
    price = plan(client)
    session = checkout(client, customer, price, quantity=3)
    assert session.url == f"{fake.url}/pay/checkout/{session.id}" and session.id.startswith("cs_test_")
    assert (session.status, session.payment_status, session.amount_total) == ("open", "unpaid", 6000)

    shown = requests.get(session.url)
    assert shown.status_code == 200
    assert "Team" in shown.text and "$60.00" in shown.text and 'class=quantity>3<' in shown.text
    assert 'href=\'http://app.test/billing\'' in shown.text  # the cancel link

    paid = pay(session)
    assert paid.status_code == 303
    assert paid.headers["Location"] == f"http://app.test/billing/success?session_id={session.id}"

    events = received(webhook_receiver, fake)
    assert [e.type for e in events] == ["customer.subscription.created", "invoice.finalized", "invoice.paid",
                                        "checkout.session.completed"]
    assert all(e.id.startswith("evt_") and e.api_version == stripe.api_version and not e.livemode for e in events)
    assert [(d.type, d.status) for d in fake.deliveries] == [(e.type, 200) for e in events]
    completed = events[-1].data.object
    assert (completed.status, completed.payment_status, completed.client_reference_id) == (
        "complete", "paid", "org-7")
    assert completed.metadata["organization_id"] == "7" and completed.customer == customer.id

    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["subscription"]})
    sub = done.subscription
    assert sub.object == "subscription" and sub.status == "active" and sub.metadata["organization_id"] == "7"
    [item] = sub["items"].data
    assert (item.price.id, item.quantity) == (price.id, 3)
    assert item.current_period_start == int(T0.timestamp())
    assert item.current_period_end == int(datetime(2026, 4, 10, 12, tzinfo=timezone.utc).timestamp())
    assert "current_period_end" not in sub  # lives on the items in this API version

    [invoice] = client.v1.invoices.list(params={"customer": customer.id}).data
    assert (invoice.status, invoice.amount_paid, invoice.billing_reason) == ("paid", 6000, "subscription_create")
    assert invoice.parent.subscription_details.subscription == sub.id and sub.latest_invoice == invoice.id
    assert requests.get(invoice.hosted_invoice_url).status_code == 200
    assert requests.get(invoice.invoice_pdf).content.startswith(b"%PDF")

    card = client.v1.customers.retrieve(customer.id, params={"expand": ["invoice_settings.default_payment_method"]})
    pm = card.invoice_settings.default_payment_method
    assert (pm.type, pm.card.brand, pm.card.last4, pm.card.exp_month, pm.card.exp_year) == (
        "card", "visa", "4242", 12, 2034)
    assert [m.id for m in client.v1.payment_methods.list(params={"customer": customer.id, "type": "card"}).data] \
        == [pm.id]
    assert requests.get(session.url).status_code == 410  # a completed session cannot be paid twice


def test_a_forged_signature_does_not_verify(fake, client, webhook_receiver):
    subscribe(client)
    first = webhook_receiver.received[0]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(first.body.decode(), first.headers["Stripe-Signature"], "whsec_other")


def test_a_declined_card_shows_an_error_and_creates_nothing(fake, client, webhook_receiver):
    customer = client.v1.customers.create(params={"email": "owner@example.com"})
    session = checkout(client, customer, plan(client))
    declined = pay(session, card=CARD_DECLINED)
    assert declined.status_code == 402 and "Your card was declined." in declined.text
    assert 'role=alert' in declined.text
    assert client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"}).data == []
    assert client.v1.payment_methods.list(params={"customer": customer.id, "type": "card"}).data == []
    assert fake.events == [] and webhook_receiver.received == []
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert pay(session, card="4242 4242 4242 4241").status_code == 402  # not a card number at all
    assert pay(session).status_code == 303


def test_a_trial_starts_free_warns_and_renews(fake, client, webhook_receiver):
    customer, price, sub = subscribe(client, quantity=2, trial_days=14)
    assert sub.status == "trialing" and sub.trial_end == int((T0 + timedelta(days=14)).timestamp())
    assert sub["items"].data[0].current_period_end == sub.trial_end
    [first] = client.v1.invoices.list(params={"customer": customer.id}).data
    assert (first.status, first.amount_due, first.lines.data[0].amount) == ("paid", 0, 0)
    session_done = received(webhook_receiver, fake)[-1].data.object
    assert session_done.payment_status == "no_payment_required"
    webhook_receiver.received.clear()

    fake.advance(T0 + timedelta(days=12))
    assert types(webhook_receiver, fake) == ["customer.subscription.trial_will_end"]
    fake.advance(T0 + timedelta(days=15))
    assert types(webhook_receiver, fake)[1:] == ["invoice.finalized", "invoice.paid", "customer.subscription.updated"]
    renewed = client.v1.subscriptions.retrieve(sub.id)
    assert renewed.status == "active" and renewed["items"].data[0].current_period_start == sub.trial_end
    latest = client.v1.invoices.retrieve(renewed.latest_invoice)
    assert (latest.status, latest.amount_paid, latest.billing_reason) == ("paid", 4000, "subscription_cycle")
    update = received(webhook_receiver, fake)[-1]
    assert update.data.previous_attributes["status"] == "trialing"
    assert fake.now == T0 + timedelta(days=15)


def test_create_preview_prorates_a_mid_period_change(fake, client):
    customer, price, sub = subscribe(client, quantity=2)
    item = sub["items"].data[0]
    bigger = plan(client, amount=5000, lookup_key="business_monthly", name="Business")
    fake.now = T0 + timedelta(days=10, hours=5)
    moment = int(fake.now.timestamp())
    preview = client.v1.invoices.create_preview(params={
        "customer": customer.id, "subscription": sub.id,
        "subscription_details": {"items": [{"id": item.id, "price": bigger.id, "quantity": 3}],
                                 "proration_behavior": "create_prorations", "proration_date": moment}})
    period = item.current_period_end - item.current_period_start
    remaining = item.current_period_end - moment
    unused, rest = -prorated(2 * 2000, remaining, period), prorated(3 * 5000, remaining, period)
    lines = preview.lines.data
    assert [line.amount for line in lines] == [unused, rest, 15000]
    assert [line.parent.subscription_item_details.proration for line in lines] == [True, True, False]
    assert lines[0].description.startswith("Unused time on 2 × Team")
    assert lines[2].period.start == item.current_period_end
    assert preview.amount_due == unused + rest + 15000 and preview.amount_due == preview.total
    assert preview.parent.subscription_details.subscription_proration_date == moment
    assert client.v1.invoices.list(params={"customer": customer.id}).data[0].billing_reason == "subscription_create"
    assert len(client.v1.invoices.list(params={"customer": customer.id}).data) == 1  # a preview is not stored


def test_a_change_with_always_invoice_is_invoiced_and_paid_now(fake, client, webhook_receiver):
    customer, price, sub = subscribe(client, quantity=2)
    item = sub["items"].data[0]
    fake.now = T0 + timedelta(days=15)
    webhook_receiver.received.clear()
    updated = client.v1.subscriptions.update(sub.id, params={
        "items": [{"id": item.id, "quantity": 5}], "proration_behavior": "always_invoice"})
    assert updated["items"].data[0].quantity == 5
    assert types(webhook_receiver, fake) == ["customer.subscription.updated", "invoice.finalized", "invoice.paid"]
    invoice = client.v1.invoices.retrieve(updated.latest_invoice)
    period = item.current_period_end - item.current_period_start
    remaining = item.current_period_end - int(fake.now.timestamp())
    expected = prorated(5 * 2000, remaining, period) - prorated(2 * 2000, remaining, period)
    assert (invoice.status, invoice.amount_paid, invoice.billing_reason) == ("paid", expected, "subscription_update")


def test_prorations_wait_for_the_next_invoice(fake, client):
    customer, price, sub = subscribe(client, quantity=1)
    item = sub["items"].data[0]
    fake.now = T0 + timedelta(days=15)
    client.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "quantity": 2}]})
    assert len(client.v1.invoices.list(params={"customer": customer.id}).data) == 1
    fake.advance(T0 + timedelta(days=32))
    renewal = client.v1.invoices.list(params={"customer": customer.id, "limit": 1}).data[0]
    amounts = [line.amount for line in renewal.lines.data]
    assert amounts[0] == 4000 and len(amounts) == 3 and amounts[1] < 0 < amounts[2]
    assert renewal.amount_paid == sum(amounts)


def test_renewal_with_a_failing_card_goes_past_due_and_back(fake, client, webhook_receiver):
    customer, price, sub = subscribe(client, quantity=1)
    portal = client.v1.billing_portal.sessions.create(params={"customer": customer.id,
                                                              "return_url": "http://app.test/billing"})
    assert portal.url == f"{fake.url}/pay/portal/{portal.id}" and portal.id.startswith("bps_")
    changed = requests.post(f"{portal.url}/card", data={"cardNumber": CARD_FAILS_LATER, "cardExpiry": "01/30"})
    assert changed.status_code == 200 and "Visa •••• 0341" in changed.text
    assert types(webhook_receiver, fake)[-1] == "customer.updated"
    webhook_receiver.received.clear()

    fake.advance(T0 + timedelta(days=31, hours=1))
    assert types(webhook_receiver, fake) == ["invoice.finalized", "invoice.payment_failed",
                                             "customer.subscription.updated"]
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    failed = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (failed.status, failed.attempt_count, failed.amount_remaining) == ("open", 1, 2000)
    assert client.v1.customers.retrieve(customer.id).delinquent is True

    requests.post(f"{portal.url}/card", data={"cardNumber": CARD_OK})
    webhook_receiver.received.clear()
    assert fake.pay_open_invoices(customer.id) == [failed.id]
    assert types(webhook_receiver, fake) == ["invoice.paid", "customer.subscription.updated"]
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_the_portal_cancels_at_period_end_and_reactivates(fake, client, webhook_receiver):
    customer, price, sub = subscribe(client)
    portal = client.v1.billing_portal.sessions.create(params={"customer": customer.id,
                                                              "return_url": "http://app.test/billing"})
    shown = requests.get(portal.url)
    assert "Renews on April 10, 2026" in shown.text and "href='http://app.test/billing'" in shown.text
    webhook_receiver.received.clear()

    cancelled = requests.post(f"{portal.url}/cancel", data={"subscription": sub.id})
    assert "Cancels on April 10, 2026" in cancelled.text
    [event] = received(webhook_receiver, fake)
    assert event.type == "customer.subscription.updated"
    assert event.data.object.cancel_at_period_end is True and event.data.previous_attributes.cancel_at_period_end \
        is False
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at == sub["items"].data[0].current_period_end
    with pytest.raises(stripe.InvalidRequestError) as none:
        client.v1.invoices.create_preview(params={"customer": customer.id, "subscription": sub.id})
    assert none.value.code == "invoice_upcoming_none"

    renewed = requests.post(f"{portal.url}/reactivate", data={"subscription": sub.id})
    assert "Renews on April 10, 2026" in renewed.text
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is False

    requests.post(f"{portal.url}/cancel", data={"subscription": sub.id})
    webhook_receiver.received.clear()
    fake.advance(T0 + timedelta(days=40))
    assert types(webhook_receiver, fake) == ["customer.subscription.deleted"]
    ended = client.v1.subscriptions.retrieve(sub.id)
    assert ended.status == "canceled" and ended.ended_at == sub["items"].data[0].current_period_end
    assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []
    assert [s.id for s in client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"}).data] \
        == [sub.id]


def test_deleting_a_subscription_cancels_it_now(fake, client, webhook_receiver):
    customer, price, sub = subscribe(client)
    webhook_receiver.received.clear()
    fake.now = T0 + timedelta(days=3)
    ended = client.v1.subscriptions.cancel(sub.id)
    assert (ended.status, ended.ended_at, ended.canceled_at) == ("canceled", int(fake.now.timestamp()),
                                                                 int(fake.now.timestamp()))
    [event] = received(webhook_receiver, fake)
    assert event.type == "customer.subscription.deleted" and event.request.id.startswith("req_")


def test_meter_events_are_deduplicated_and_summed(fake, client):
    customer = client.v1.customers.create(params={"email": "owner@example.com"})
    meter = client.v1.billing.meters.create(params={
        "display_name": "Tracked events", "event_name": "tracked_events", "default_aggregation": {"formula": "sum"},
        "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
        "value_settings": {"event_payload_key": "value"}})
    day = int(datetime(2026, 3, 9, tzinfo=timezone.utc).timestamp())

    def report(value, identifier, stamp):
        return client.v1.billing.meter_events.create(params={
            "event_name": "tracked_events", "payload": {"stripe_customer_id": customer.id, "value": str(value)},
            "timestamp": stamp, "identifier": identifier})

    event = report(1200, "org-7-2026-03-08", day - 3600)
    assert (event.object, event.identifier, event.payload["value"]) == ("billing.meter_event", "org-7-2026-03-08",
                                                                        "1200")
    report(300, "org-7-2026-03-09", day + 3600)
    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        report(1200, "org-7-2026-03-08", day - 3600)
    assert duplicate.value.http_status == 400
    assert "already exists with identifier org-7-2026-03-08" in duplicate.value.user_message
    assert duplicate.value.headers["Stripe-Should-Retry"] == "false"
    with pytest.raises(stripe.InvalidRequestError) as old:
        report(1, "too-old", int((T0 - timedelta(days=36)).timestamp()))
    assert old.value.param == "timestamp"
    with pytest.raises(stripe.InvalidRequestError):
        report(1, "too-new", int((T0 + timedelta(minutes=6)).timestamp()))

    summaries = client.v1.billing.meters.event_summaries.list(meter.id, params={
        "customer": customer.id, "start_time": day - 86400, "end_time": day + 86400})
    [summary] = summaries.data
    assert (summary.object, summary.aggregated_value, summary.meter) == ("billing.meter_event_summary", 1500,
                                                                         meter.id)
    daily = client.v1.billing.meters.event_summaries.list(meter.id, params={
        "customer": customer.id, "start_time": day - 86400, "end_time": day + 86400,
        "value_grouping_window": "day"})
    assert [(s.start_time, s.aggregated_value) for s in daily.data] == [(day, 300), (day - 86400, 1200)]


def test_an_idempotency_key_replays_the_first_answer(fake, client):
    first = client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "org-7-c"})
    again = client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "org-7-c"})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len([o for o in fake.state.objects.values() if o["object"] == "customer"]) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={"email": "b@example.com"}, options={"idempotency_key": "org-7-c"})


def test_an_unknown_id_is_resource_missing(client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.subscriptions.retrieve("sub_doesnotexist")
    assert (caught.value.http_status, caught.value.code, caught.value.param) == (404, "resource_missing", "id")
    assert caught.value.json_body["error"]["type"] == "invalid_request_error"
    assert "No such subscription: 'sub_doesnotexist'" in caught.value.user_message


def test_a_wrong_key_is_an_authentication_error(fake):
    with pytest.raises(stripe.AuthenticationError):
        fake.client(api_key="sk_test_wrong0000000000001234").v1.customers.list()


def test_a_500_is_retried_by_the_library_with_the_same_idempotency_key(fake, client):
    fake.fail_next(500)
    customer = client.v1.customers.create(params={"email": "retry@example.com"})
    posts = [r for r in fake.requests if r.path == "/v1/customers"]
    assert len(posts) == 2
    assert posts[0].header("Idempotency-Key") == posts[1].header("Idempotency-Key")
    assert client.v1.customers.retrieve(customer.id).email == "retry@example.com"
    fake.fail_next(429)
    with pytest.raises(stripe.RateLimitError):
        client.v1.customers.list()
    fake.fail_next(429, "lock_timeout", should_retry=True)
    assert client.v1.customers.list().data[0].id == customer.id


def test_events_can_be_sent_again_and_out_of_order(fake, client, webhook_receiver):
    fake.auto_deliver = False
    subscribe(client)
    assert webhook_receiver.received == [] and len(fake.events) == 4
    created, finalized, paid, completed = fake.event_ids()
    fake.send_events([completed, created, created])
    assert types(webhook_receiver, fake) == ["checkout.session.completed", "customer.subscription.created",
                                             "customer.subscription.created"]
    webhook_receiver.fail_first = 1
    assert fake.resend(paid).status == 500
    assert fake.resend(paid).status == 200
    bodies = [json.loads(r.body) for r in webhook_receiver.received]
    assert bodies[1]["id"] == bodies[2]["id"] == created and bodies[1]["object"] == "event"
    assert [(d.event_id, d.status) for d in fake.deliveries][-2:] == [(paid, 500), (paid, 200)]


def test_a_one_off_invoice_includes_pending_items(fake, client, webhook_receiver):
    customer, price, sub = subscribe(client)
    item = client.v1.invoice_items.create(params={"customer": customer.id, "amount": 1234, "currency": "usd",
                                                  "description": "Overage true-up"})
    assert item.id.startswith("ii_") and item.invoice is None
    draft = client.v1.invoices.create(params={"customer": customer.id, "pending_invoice_items_behavior": "include",
                                              "auto_advance": False, "collection_method": "charge_automatically",
                                              "metadata": {"organization_id": "7"}})
    assert (draft.status, draft.number, draft.amount_due) == ("draft", None, 1234)
    webhook_receiver.received.clear()
    final = client.v1.invoices.finalize_invoice(draft.id)
    assert final.status == "open" and final.number.endswith("-0002") and final.hosted_invoice_url
    assert types(webhook_receiver, fake) == ["invoice.finalized"]
    assert fake.pay_open_invoices(customer.id) == [draft.id]
    page = client.v1.invoices.list(params={"customer": customer.id, "limit": 1})
    assert page.has_more is True and page.data[0].id == draft.id
    rest = client.v1.invoices.list(params={"customer": customer.id, "starting_after": draft.id})
    assert [i.billing_reason for i in rest.data] == ["subscription_create"]


def test_a_new_billing_interval_starts_now_and_is_invoiced_at_once(fake, client, webhook_receiver):
    customer, monthly, sub = subscribe(client, quantity=1)
    item = sub["items"].data[0]
    yearly = plan(client, amount=20000, interval="year", lookup_key="team_yearly")
    fake.now = T0 + timedelta(days=10)
    preview = client.v1.invoices.create_preview(params={
        "customer": customer.id, "subscription": sub.id,
        "subscription_details": {"items": [{"id": item.id, "price": yearly.id}]}})
    period = item.current_period_end - item.current_period_start
    credit = -prorated(2000, item.current_period_end - int(fake.now.timestamp()), period)
    assert [line.amount for line in preview.lines.data] == [credit, 20000]
    updated = client.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "price": yearly.id}]})
    moved = updated["items"].data[0]
    assert moved.current_period_start == int(fake.now.timestamp())
    assert moved.current_period_end == int(datetime(2027, 3, 20, 12, tzinfo=timezone.utc).timestamp())
    invoice = client.v1.invoices.retrieve(updated.latest_invoice)
    assert (invoice.status, invoice.amount_paid) == ("paid", 20000 + credit)


def test_metered_usage_is_billed_in_arrears_at_renewal(fake, client):
    customer = client.v1.customers.create(params={"email": "owner@example.com"})
    meter = client.v1.billing.meters.create(params={
        "display_name": "Tracked events", "event_name": "tracked_events", "default_aggregation": {"formula": "sum"},
        "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
        "value_settings": {"event_payload_key": "value"}})
    base = plan(client)
    product = client.v1.products.create(params={"name": "Overage"})
    metered = client.v1.prices.create(params={
        "product": product.id, "unit_amount": 5, "currency": "usd",
        "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}})
    session = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": customer.id, "success_url": "http://app.test/ok",
        "line_items": [{"price": base.id, "quantity": 1}, {"price": metered.id}]})
    assert pay(session).status_code == 303
    fake.now = T0 + timedelta(days=5)
    client.v1.billing.meter_events.create(params={
        "event_name": "tracked_events", "payload": {"stripe_customer_id": customer.id, "value": "40"},
        "identifier": "org-7-day-5"})
    fake.advance(T0 + timedelta(days=32))
    renewal = client.v1.invoices.list(params={"customer": customer.id, "limit": 1}).data[0]
    assert [(line.quantity, line.amount) for line in renewal.lines.data] == [(1, 2000), (40, 200)]
    assert renewal.amount_paid == 2200


def test_a_subscription_started_at_a_fractional_second_still_renews(stripe_api, webhook_receiver):
    """The fake's clock has Stripe's whole-second resolution: a period anchored
    at 12:00:00.5 once never moved past its own truncated end (advance looped)."""
    import time_machine

    stripe_api.webhook_url = webhook_receiver.url("/billing/stripe/webhook")
    with time_machine.travel(T0 + timedelta(milliseconds=500), tick=False):
        client = stripe_api.client()
        customer, price, sub = subscribe(client)
        assert sub["items"].data[0].current_period_start == int(T0.timestamp())
        stripe_api.advance(T0 + timedelta(days=32))
    renewed = client.v1.subscriptions.retrieve(sub.id)
    assert renewed["items"].data[0].current_period_start == int(datetime(2026, 4, 10, 12, tzinfo=timezone.utc)
                                                                .timestamp())

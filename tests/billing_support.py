"""Billing tests' shared set-up: billing switched on against the local fake
Stripe (tests/fakes/stripe_api.py), the plans' Stripe prices created through
the real setup command, the app served on a real port so the fake's signed
webhooks reach it, and the process clock pinned (the fake reads the same one)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import requests
import time_machine

from tests.fakes.stripe_billing import CARD_OK
from tests.support import SYSTEM, serving

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
SETTINGS = ("BILLING_ENABLED", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "CG_BASE_URL")


@pytest.fixture
def traveller():
    """The clock at T0, ticking; `traveller.move_to(moment)` moves the app
    and the fake together (the fake reads the process clock until told otherwise)."""
    with time_machine.travel(T0, tick=True) as moving:
        yield moving


@pytest.fixture
def billing_on(app, app_ctx, stripe_api, traveller):
    """Billing on, pointed at the fake; the default plans with Stripe prices."""
    from costguardian.services.billing import plans

    saved = {name: app.config.get(name) for name in SETTINGS}
    app.config.update(BILLING_ENABLED=True, STRIPE_SECRET_KEY=stripe_api.api_key,
                      STRIPE_WEBHOOK_SECRET=stripe_api.webhook_secret, STRIPE_API_BASE=stripe_api.url)
    plans.setup_stripe(stripe_api.client(), app.config["STRIPE_METER_EVENT_NAME"], SYSTEM)
    try:
        yield stripe_api
    finally:
        app.config.update(saved)
        from costguardian.services.billing import limits

        limits._GATEWAY_ANSWERS.clear()  # organization ids are reused by the next test


@pytest.fixture
def live(app, billing_on):
    """The app on a real port, receiving the fake's webhooks; returns the fake."""
    with serving(app, "billing-live-server") as url:
        billing_on.webhook_url = f"{url}/billing/stripe/webhook"
        app.config["CG_BASE_URL"] = url
        yield billing_on


def pay(checkout_url: str, card: str = CARD_OK, email: str = "owner@acme.com") -> requests.Response:
    """Fill in and submit the fake's hosted Checkout page."""
    return requests.post(checkout_url, data={"email": email, "cardNumber": card, "cardExpiry": "12 / 34",
                                             "cardCvc": "123", "billingName": "Olga Owner"}, allow_redirects=False)


def subscribe(client, plan: str = "team", interval: str = "month", seats: int = 5, card: str = CARD_OK) -> str:
    """Upgrade through the billing page and the hosted Checkout; returns the Checkout URL."""
    answer = client.post("/billing/checkout", data={"plan": plan, "interval": interval, "seats": str(seats)})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:2000]
    url = answer.headers["Location"]
    paid = pay(url, card)
    assert paid.status_code == 303, paid.text[:500]
    return url


@pytest.fixture
def owner(traveller, owner_client):
    """owner_client, signed in after the clock moved to T0 (a session from
    the future would not be valid)."""
    return owner_client

"""The billing engine of the fake Stripe API (tests/fakes/stripe_api.py):
objects in memory in Stripe's shapes for API version 2026-10-28.endive,
subscriptions and their renewals on the fake's clock, invoices and their
payments, proration, and events delivered to a webhook endpoint signed the
way Stripe signs them. The HTTP side lives in stripe_api.py, the hosted pages
in stripe_pages.py; this mixin expects `lock` and `url` from there.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
import string
import time
from calendar import monthrange
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import requests

API_VERSION = "2026-10-28.endive"
ALNUM = string.ascii_letters + string.digits
TRIAL_WARNING = timedelta(days=3)  # customer.subscription.trial_will_end comes this long before a trial ends
RETRY_AFTER = timedelta(days=3)  # next_payment_attempt of a failed invoice

# Test cards (https://docs.stripe.com/testing): what a charge on each does.
CARD_OK, CARD_DECLINED, CARD_FAILS_LATER = "4242424242424242", "4000000000000002", "4000000000000341"
DECLINES = {CARD_DECLINED: "generic_decline", "4000000000009995": "insufficient_funds",
            "4000000000009987": "lost_card", "4000000000009979": "stolen_card", "4000000000000069": "expired_card"}


class StripeError(Exception):
    """An API error, answered as {"error": {...}} with its HTTP status."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, should_retry: bool | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param
        self.should_retry, self.extra = should_retry, extra

    def body(self) -> dict:
        error = {"message": self.message, "type": self.kind, **self.extra}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        return {"error": error}


def missing(kind: str, ident: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{ident}'", code="resource_missing", param=param)


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(random.choices(ALNUM, k=length))


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


def at(stamp: int) -> datetime:
    return datetime.fromtimestamp(stamp, timezone.utc)


def shift(anchor: datetime, interval: str, count: int, n: int) -> datetime:
    """The anchor moved by n billing intervals, months clamped to their last day as Stripe does."""
    if interval == "day":
        return anchor + timedelta(days=count * n)
    if interval == "week":
        return anchor + timedelta(weeks=count * n)
    months = count * n * (12 if interval == "year" else 1)
    year, month = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + year, month + 1
    return anchor.replace(year=year, month=month, day=min(anchor.day, monthrange(year, month)[1]))


def cents(value: Decimal) -> int:
    """Rounded to whole cents, half away from zero."""
    sign = -1 if value < 0 else 1
    return sign * int(abs(value).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def money(amount: int) -> str:
    return f"{'-' if amount < 0 else ''}${abs(amount) / 100:,.2f}"


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in number]
    total = sum(digits[-1::-2]) + sum(sum(divmod(2 * d, 10)) for d in digits[-2::-2])
    return len(number) >= 12 and total % 10 == 0


def card_brand(number: str) -> str:
    if number.startswith(("34", "37")):
        return "amex"
    if number.startswith(("51", "52", "53", "54", "55", "2")):
        return "mastercard"
    return "visa" if number.startswith("4") else "unknown"


@dataclass
class Delivery:
    event_id: str
    type: str
    status: int | None  # the endpoint's answer; None when it could not be reached
    body: str = ""
    error: str | None = None


@dataclass
class BillingState:
    objects: dict[str, dict] = field(default_factory=dict)  # every object by id, in creation order
    events: list[dict] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    meter_events: list[dict] = field(default_factory=list)
    cards: dict[str, str] = field(default_factory=dict)  # payment method id -> "ok" | "fails"
    anchors: dict[str, datetime] = field(default_factory=dict)  # subscription id -> billing cycle anchor
    trial_warned: set[str] = field(default_factory=set)
    checkout: dict[str, dict] = field(default_factory=dict)  # session id -> its subscription_data
    outbox: list[str] = field(default_factory=list)  # event ids created under the lock, not yet delivered
    request: dict | None = None  # the API request being handled (an event's `request`)


class Billing:
    """State and behaviour; the subclass supplies `lock`, `url` and calls `_reset_billing()`."""

    webhook_url: str | None
    webhook_secret: str
    auto_deliver: bool

    def _reset_billing(self) -> None:
        self.state = BillingState()
        self._now: datetime | None = None

    # --- the clock ---------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """Whole seconds, like every Stripe timestamp: a period anchored at a
        fractional moment would never move past its own stored (truncated) end."""
        return (self._now or datetime.now(timezone.utc)).replace(microsecond=0)

    @now.setter
    def now(self, value: datetime | None) -> None:
        self._now = value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)

    # --- objects -----------------------------------------------------------------

    @property
    def events(self) -> list[dict]:
        return self.state.events

    @property
    def deliveries(self) -> list[Delivery]:
        return self.state.deliveries

    def get(self, ident: str) -> dict | None:
        """The stored object with this id (live, not a copy)."""
        return self.state.objects.get(ident)

    def _store(self, obj: dict) -> dict:
        self.state.objects[obj["id"]] = obj
        return obj

    def _all(self, kind: str) -> list[dict]:
        """Objects of one `object` type, newest first (Stripe's list order)."""
        return [o for o in reversed(self.state.objects.values()) if o.get("object") == kind]

    def _find(self, kind: str, ident: str, name: str | None = None, param: str = "id") -> dict:
        obj = self.state.objects.get(ident or "")
        if obj is None or obj.get("object") != kind:
            raise missing(name or kind.split(".")[-1].replace("_", " "), ident, param)
        return obj

    # --- events and webhooks -----------------------------------------------------------

    def _event(self, kind: str, obj: dict, previous: dict | None = None) -> dict:
        event = {"id": new_id("evt_"), "object": "event", "api_version": API_VERSION, "context": None,
                 "created": ts(self.now), "data": {"object": copy.deepcopy(obj)}, "livemode": False,
                 "pending_webhooks": 1 if self.webhook_url else 0,
                 "request": dict(self.state.request or {"id": None, "idempotency_key": None}), "type": kind}
        if previous is not None:
            event["data"]["previous_attributes"] = previous
        self.state.events.append(event)
        self.state.outbox.append(event["id"])
        return event

    def _take_outbox(self) -> list[str]:
        taken, self.state.outbox = self.state.outbox, []
        return taken if self.auto_deliver else []

    def _deliver(self, event_ids: list[str]) -> list[Delivery]:
        """POST the events to the endpoint, in order, outside the lock (the app may call back)."""
        return [self._post_event(ident) for ident in event_ids] if self.webhook_url else []

    def signature(self, payload: str, timestamp: int | None = None) -> str:
        stamp = int(time.time()) if timestamp is None else timestamp  # real time: the app checks tolerance
        digest = hmac.new(self.webhook_secret.encode(), f"{stamp}.{payload}".encode(), hashlib.sha256).hexdigest()
        return f"t={stamp},v1={digest}"

    def _post_event(self, event_id: str) -> Delivery:
        with self.lock:
            event = next((e for e in self.state.events if e["id"] == event_id), None)
            url = self.webhook_url
        if event is None:
            raise KeyError(f"no event {event_id}")
        payload = json.dumps(event, indent=2)  # Stripe sends pretty-printed JSON
        headers = {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": self.signature(payload),
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
        try:
            answer = requests.post(url, data=payload.encode(), headers=headers, timeout=30)
            delivery = Delivery(event_id, event["type"], answer.status_code, answer.text[:2000])
        except requests.RequestException as exc:
            delivery = Delivery(event_id, event["type"], None, error=str(exc))
        with self.lock:
            self.state.deliveries.append(delivery)
            if delivery.status is not None and 200 <= delivery.status < 300:
                event["pending_webhooks"] = 0
        return delivery

    def send(self, event_id: str) -> Delivery:
        """Deliver one event (again) now, whether or not it was delivered before."""
        if not self.webhook_url:
            raise RuntimeError("set webhook_url first")
        return self._post_event(event_id)

    resend = send

    def send_events(self, event_ids: list[str]) -> list[Delivery]:
        """Deliver these events in this order (out of order, twice …)."""
        return [self.send(ident) for ident in event_ids]

    def event_ids(self, kind: str | None = None) -> list[str]:
        return [e["id"] for e in self.state.events if kind is None or e["type"] == kind]

    # --- customers and cards ---------------------------------------------------------------

    def _new_customer(self, email: str | None = None, name: str | None = None, metadata: dict | None = None,
                      **fields) -> dict:
        prefix = "".join(random.choices(string.ascii_uppercase + string.digits, k=8))
        return self._store({
            "id": new_id("cus_", 14), "object": "customer", "address": None, "balance": 0, "business_name": None,
            "created": ts(self.now), "currency": None, "customer_account": None, "default_source": None,
            "delinquent": False, "description": None, "discount": None, "email": email, "individual_name": None,
            "invoice_prefix": prefix, "invoice_settings": {"custom_fields": None, "default_payment_method": None,
                                                           "footer": None, "rendering_options": None},
            "livemode": False, "metadata": dict(metadata or {}), "name": name, "next_invoice_sequence": 1,
            "phone": None, "preferred_locales": [], "shipping": None, "tax_exempt": "none", "test_clock": None,
            **fields})

    def _new_card(self, customer: dict, number: str, exp_month: int = 12, exp_year: int = 2034,
                  name: str | None = None, email: str | None = None) -> dict:
        number = "".join(ch for ch in number if ch.isdigit())
        brand = card_brand(number)
        pm = self._store({
            "id": new_id("pm_"), "object": "payment_method", "allow_redisplay": "always",
            "billing_details": {"address": {"city": None, "country": None, "line1": None, "line2": None,
                                            "postal_code": None, "state": None},
                                "email": email, "name": name, "phone": None, "tax_id": None},
            "card": {"brand": brand, "checks": {"address_line1_check": None, "address_postal_code_check": None,
                                                "cvc_check": "pass"},
                     "country": "US", "display_brand": brand, "exp_month": exp_month, "exp_year": exp_year,
                     "fingerprint": hashlib.sha256(number.encode()).hexdigest()[:16], "funding": "credit",
                     "generated_from": None, "last4": number[-4:],
                     "networks": {"available": [brand], "preferred": None},
                     "regulated_status": "unregulated", "three_d_secure_usage": {"supported": True}, "wallet": None},
            "created": ts(self.now), "customer": customer["id"], "customer_account": None, "livemode": False,
            "metadata": {}, "type": "card"})
        self.state.cards[pm["id"]] = "fails" if number == CARD_FAILS_LATER else "ok"
        return pm

    def _set_default_card(self, customer: dict, pm: dict) -> None:
        before = copy.deepcopy(customer["invoice_settings"])
        customer["invoice_settings"]["default_payment_method"] = pm["id"]
        self._event("customer.updated", customer, {"invoice_settings": before})

    def attach_card(self, customer_id: str, number: str = CARD_OK) -> dict:
        """Test control: attach a card and make it the customer's default (customer.updated)."""
        with self.lock:
            customer = self._find("customer", customer_id)
            pm = self._new_card(customer, number)
            self._set_default_card(customer, pm)
            pending = self._take_outbox()
        self._deliver(pending)
        return copy.deepcopy(pm)

    def _charge(self, customer: dict, amount: int) -> bool:
        if amount <= 0:
            return True
        pm = customer["invoice_settings"]["default_payment_method"]
        return pm is not None and self.state.cards.get(pm) == "ok"

    # --- prices and lines -------------------------------------------------------------------

    def _unit(self, price: dict) -> Decimal:
        if price.get("unit_amount_decimal") is not None:
            return Decimal(str(price["unit_amount_decimal"]))
        return Decimal(price.get("unit_amount") or 0)

    def _product_name(self, price: dict) -> str:
        product = self.state.objects.get(price["product"]) or {}
        return product.get("name") or price.get("nickname") or price["id"]

    def _price_text(self, price: dict) -> str:
        recurring = price.get("recurring") or {}
        unit = money(cents(self._unit(price))) if price.get("unit_amount") is not None else f"{self._unit(price)}¢"
        if recurring.get("usage_type") == "metered":
            return f"at {unit} / unit"
        every = recurring.get("interval", "month")
        count = recurring.get("interval_count", 1)
        return f"at {unit} / {every}" if count == 1 else f"at {unit} / every {count} {every}s"

    def _line(self, *, amount: int, description: str, start: int, end: int, price: dict | None = None,
              quantity: int | None = 1, sub: dict | None = None, item: dict | None = None,
              proration: bool = False, invoice_item: str | None = None) -> dict:
        if item is not None:
            parent = {"type": "subscription_item_details", "invoice_item_details": None,
                      "subscription_item_details": {"invoice_item": invoice_item, "proration": proration,
                                                    "proration_details": {"credited_items": None},
                                                    "subscription": sub["id"], "subscription_item": item["id"]}}
        else:
            parent = {"type": "invoice_item_details", "subscription_item_details": None,
                      "invoice_item_details": {"invoice_item": invoice_item, "proration": proration,
                                               "proration_details": {"credited_items": None},
                                               "subscription": sub["id"] if sub else None}}
        pricing = None
        if price is not None:
            pricing = {"type": "price_details", "price_details": {"price": price["id"], "product": price["product"]},
                       "unit_amount_decimal": str(self._unit(price))}
        return {"id": new_id("il_"), "object": "line_item", "amount": amount, "currency": "usd",
                "description": description, "discount_amounts": [], "discountable": True, "discounts": [],
                "invoice": None, "livemode": False, "metadata": {}, "parent": parent,
                "period": {"end": end, "start": start}, "pretax_credit_amounts": [], "pricing": pricing,
                "quantity": quantity, "quantity_decimal": None if quantity is None else str(quantity),
                "subscription": sub["id"] if sub else None, "subtotal": amount, "taxes": []}

    def _period_line(self, sub: dict, item: dict, start: datetime, end: datetime, trial: bool = False) -> dict:
        price, qty = item["price"], item.get("quantity") or 1
        name = self._product_name(price)
        if trial:
            return self._line(amount=0, description=f"Trial period for {name}", start=ts(start), end=ts(end),
                              price=price, quantity=qty, sub=sub, item=item)
        return self._line(amount=cents(self._unit(price) * qty), start=ts(start), end=ts(end), price=price,
                          quantity=qty, sub=sub, item=item,
                          description=f"{qty} × {name} ({self._price_text(price)})")

    def _usage_line(self, sub: dict, item: dict, start: datetime, end: datetime) -> dict:
        price = item["price"]
        meter = self.state.objects.get((price.get("recurring") or {}).get("meter") or "")
        usage = self._usage(meter, sub["customer"], ts(start), ts(end)) if meter else 0
        qty = int(usage)
        return self._line(amount=cents(self._unit(price) * Decimal(str(usage))), start=ts(start), end=ts(end),
                          price=price, quantity=qty, sub=sub, item=item,
                          description=f"{qty} × {self._product_name(price)} ({self._price_text(price)})")

    def _usage(self, meter: dict, customer: str, start: int, end: int) -> float:
        key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        total = 0.0
        for event in self.state.meter_events:
            if event["event_name"] != meter["event_name"] or event["payload"].get(key) != customer:
                continue
            if start <= event["timestamp"] < end:
                try:
                    total += float(event["payload"].get(value_key, "0"))
                except ValueError:
                    continue  # Stripe reports an invalid value asynchronously and drops the event
        return total

    # --- invoices ---------------------------------------------------------------------------

    def _new_invoice(self, customer: dict, lines: list[dict], *, sub: dict | None = None,
                     billing_reason: str = "manual", period: tuple[int, int] | None = None,
                     metadata: dict | None = None, collection_method: str = "charge_automatically",
                     auto_advance: bool = True, description: str | None = None, store: bool = True,
                     ident: str | None = None) -> dict:
        created = ts(self.now)
        invoice = {
            "id": ident or new_id("in_"), "object": "invoice", "account_country": "US",
            "account_name": "Cost Guardian (fake)", "account_tax_ids": None, "amount_due": 0,
            "amount_overpaid": 0, "amount_paid": 0, "amount_paid_off_stripe": 0, "amount_remaining": 0,
            "amount_shipping": 0, "application": None, "attempt_count": 0, "attempted": False,
            "auto_advance": auto_advance, "automatic_tax": {"disabled_reason": None, "enabled": False,
                                                            "liability": None, "provider": None, "status": None},
            "automatically_finalizes_at": None, "billing_reason": billing_reason,
            "collection_method": collection_method, "confirmation_secret": None, "created": created,
            "currency": "usd", "custom_fields": None, "customer": customer["id"], "customer_account": None,
            "customer_address": None, "customer_email": customer.get("email"), "customer_name": customer.get("name"),
            "customer_phone": None, "customer_shipping": None, "customer_tax_exempt": "none",
            "customer_tax_ids": [], "default_payment_method": None, "default_source": None,
            "default_tax_rates": [], "description": description, "discounts": [], "due_date": None,
            "effective_at": None, "ending_balance": None, "footer": None, "from_invoice": None,
            "hosted_invoice_url": None, "invoice_pdf": None,
            "issuer": {"type": "self"}, "last_finalization_error": None, "latest_revision": None,
            "lines": None, "livemode": False, "metadata": dict(metadata or {}),
            "next_payment_attempt": None, "number": None, "on_behalf_of": None,
            "parent": None, "payment_settings": {"default_mandate": None, "payment_method_options": None,
                                                 "payment_method_types": None},
            "period_end": period[1] if period else created, "period_start": period[0] if period else created,
            "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0, "receipt_number": None,
            "rendering": None, "shipping_cost": None, "shipping_details": None, "starting_balance": 0,
            "statement_descriptor": None, "status": "draft",
            "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                                   "voided_at": None},
            "subtotal": 0, "subtotal_excluding_tax": 0, "test_clock": None, "threshold_reason": None, "total": 0,
            "total_discount_amounts": [], "total_excluding_tax": 0, "total_pretax_credit_amounts": [],
            "total_taxes": [], "webhooks_delivered_at": None}
        if sub is not None:
            invoice["parent"] = {"type": "subscription_details", "quote_details": None,
                                 "subscription_details": {"metadata": dict(sub["metadata"]),
                                                          "subscription": sub["id"],
                                                          "subscription_proration_date": None}}
        for line in lines:
            line["invoice"] = invoice["id"]
        invoice["lines"] = {"object": "list", "data": lines, "has_more": False, "total_count": len(lines),
                            "url": f"/v1/invoices/{invoice['id']}/lines"}
        self._totals(invoice)
        if customer.get("currency") is None and store:
            customer["currency"] = "usd"
        return self._store(invoice) if store else invoice

    def _totals(self, invoice: dict) -> None:
        total = sum(line["amount"] for line in invoice["lines"]["data"])
        invoice.update(subtotal=total, subtotal_excluding_tax=total, total=total, total_excluding_tax=total,
                       amount_due=max(total, 0), amount_remaining=max(total, 0) - invoice["amount_paid"])

    def _finalize(self, invoice: dict) -> None:
        customer = self.state.objects[invoice["customer"]]
        seq = customer["next_invoice_sequence"]
        customer["next_invoice_sequence"] = seq + 1
        now = ts(self.now)
        invoice.update(status="open", number=f"{customer['invoice_prefix']}-{seq:04d}", effective_at=now,
                       hosted_invoice_url=f"{self.url}/pay/invoice/{invoice['id']}",
                       invoice_pdf=f"{self.url}/pay/invoice/{invoice['id']}/pdf", webhooks_delivered_at=now)
        invoice["status_transitions"]["finalized_at"] = now
        for item in self._all("invoiceitem"):
            if item["invoice"] == invoice["id"]:
                item["date"] = item["date"] or now
        self._event("invoice.finalized", invoice)
        if invoice["amount_due"] == 0:
            self._mark_paid(invoice)

    def _mark_paid(self, invoice: dict) -> None:
        now = ts(self.now)
        invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0,
                       attempted=True, next_payment_attempt=None)
        invoice["status_transitions"]["paid_at"] = now
        customer = self.state.objects[invoice["customer"]]
        customer["delinquent"] = any(i["status"] == "open" and i["attempt_count"] > 0
                                     for i in self._all("invoice") if i["customer"] == customer["id"])
        self._event("invoice.paid", invoice)

    def _attempt(self, invoice: dict) -> bool:
        """Charge the customer's default card for an open invoice."""
        customer = self.state.objects[invoice["customer"]]
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
        if self._charge(customer, invoice["amount_remaining"]):
            self._mark_paid(invoice)
            return True
        invoice["next_payment_attempt"] = ts(self.now + RETRY_AFTER)
        customer["delinquent"] = True
        self._event("invoice.payment_failed", invoice)
        return False

    def _pending_items(self, customer: str, sub: str | None) -> list[dict]:
        items = [i for i in reversed(self._all("invoiceitem")) if i["customer"] == customer and i["invoice"] is None]
        if sub is None:
            return items
        return [i for i in items if ((i.get("parent") or {}).get("subscription_details") or {}).get("subscription")
                in (sub, None)]

    def _lines_for_items(self, items: list[dict], sub: dict | None) -> list[dict]:
        lines = []
        for ii in items:
            details = (ii.get("parent") or {}).get("subscription_details") or {}
            item = self.state.objects.get(details.get("subscription_item") or "")
            price = self.state.objects.get(((ii.get("pricing") or {}).get("price_details") or {}).get("price") or "")
            lines.append(self._line(amount=ii["amount"], description=ii["description"], start=ii["period"]["start"],
                                    end=ii["period"]["end"], price=price, quantity=ii["quantity"],
                                    sub=sub if details else None, item=item if item and sub else None,
                                    proration=ii["proration"], invoice_item=ii["id"]))
        return lines

    def pay_open_invoices(self, customer_id: str) -> list[str]:
        """Test control: retry every open invoice of the customer with its current default card
        (a card fixed in the portal); a subscription whose invoices are all paid is active again."""
        with self.lock:
            customer = self._find("customer", customer_id)
            paid = []
            for invoice in reversed(self._all("invoice")):
                if invoice["customer"] == customer["id"] and invoice["status"] == "open":
                    if self._attempt(invoice):
                        paid.append(invoice["id"])
            for sub in self._all("subscription"):
                if sub["customer"] == customer["id"] and sub["status"] in ("past_due", "unpaid", "incomplete"):
                    if not any(i["status"] == "open" and self._invoice_sub(i) == sub["id"]
                               for i in self._all("invoice")):
                        self._change(sub, lambda s: s.update(status="active"))
            pending = self._take_outbox()
        self._deliver(pending)
        return paid

    @staticmethod
    def _invoice_sub(invoice: dict) -> str | None:
        return ((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription")

    # --- subscriptions ---------------------------------------------------------------------------

    def _plan(self, price: dict) -> dict:
        recurring = price.get("recurring") or {}
        return {"id": price["id"], "object": "plan", "active": price["active"], "amount": price.get("unit_amount"),
                "amount_decimal": str(self._unit(price)), "billing_scheme": "per_unit", "created": price["created"],
                "currency": price["currency"], "interval": recurring.get("interval"),
                "interval_count": recurring.get("interval_count", 1), "livemode": False,
                "metadata": dict(price["metadata"]), "meter": recurring.get("meter"), "nickname": price["nickname"],
                "product": price["product"], "tiers_mode": None, "transform_usage": None,
                "trial_period_days": None, "usage_type": recurring.get("usage_type", "licensed")}

    @staticmethod
    def _metered(price: dict) -> bool:
        return (price.get("recurring") or {}).get("usage_type") == "metered"

    def _new_item(self, sub: dict, price: dict, quantity: int | None, start: datetime, end: datetime) -> dict:
        return self._store({
            "id": new_id("si_", 14), "object": "subscription_item", "billing_thresholds": None,
            "created": ts(self.now), "current_period_end": ts(end), "current_period_start": ts(start),
            "discounts": [], "metadata": {}, "plan": self._plan(price), "price": copy.deepcopy(price),
            "quantity": None if self._metered(price) else (quantity or 1), "subscription": sub["id"],
            "tax_rates": []})

    def _create_subscription(self, customer: dict, lines: list[tuple[dict, int | None]], *, trial_days: int = 0,
                             metadata: dict | None = None) -> tuple[dict, dict]:
        """A new subscription and its first invoice (a draft, to be finalized and paid by the caller)."""
        now = self.now
        recurring = lines[0][0]["recurring"]
        trial_end = now + timedelta(days=trial_days) if trial_days else None
        anchor = trial_end or now
        end = trial_end or shift(anchor, recurring["interval"], recurring.get("interval_count", 1), 1)
        sub = self._store({
            "id": new_id("sub_"), "object": "subscription", "application": None, "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": ts(anchor), "billing_cycle_anchor_config": None,
            "billing_mode": {"flexible": None, "type": "classic", "updated_at": None}, "billing_thresholds": None,
            "cancel_at": None, "cancel_at_period_end": False, "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically", "created": ts(now), "currency": "usd",
            "customer": customer["id"], "customer_account": None, "days_until_due": None,
            "default_payment_method": None, "default_source": None, "default_tax_rates": [], "description": None,
            "discounts": [], "ended_at": None, "invoice_settings": {"account_tax_ids": None,
                                                                    "issuer": {"type": "self"}},
            "items": None, "latest_invoice": None, "livemode": False, "metadata": dict(metadata or {}),
            "next_pending_invoice_item_invoice": None, "on_behalf_of": None, "pause_collection": None,
            "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                                 "save_default_payment_method": "off"},
            "pending_invoice_item_interval": None, "pending_setup_intent": None, "pending_update": None,
            "schedule": None, "start_date": ts(now), "status": "trialing" if trial_end else "active",
            "test_clock": None, "transfer_data": None, "trial_end": ts(trial_end) if trial_end else None,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": ts(now) if trial_end else None})
        items = [self._new_item(sub, price, qty, now, end) for price, qty in lines]
        sub["items"] = {"object": "list", "data": items, "has_more": False, "total_count": len(items),
                        "url": f"/v1/subscription_items?subscription={sub['id']}"}
        self.state.anchors[sub["id"]] = anchor
        invoice_lines = [self._period_line(sub, item, now, end, trial=bool(trial_end)) for item in items
                         if not self._metered(item["price"])]
        invoice = self._new_invoice(customer, invoice_lines, sub=sub, billing_reason="subscription_create",
                                    period=(ts(now), ts(now)))
        sub["latest_invoice"] = invoice["id"]
        return sub, invoice

    def _change(self, sub: dict, mutate) -> dict:
        """Apply a change and send customer.subscription.updated with what it was before."""
        before = copy.deepcopy(sub)
        mutate(sub)
        previous = {k: v for k, v in before.items() if sub.get(k) != v}
        if previous:
            self._event("customer.subscription.updated", sub, previous)
        return previous

    def _next_end(self, sub: dict, after: datetime) -> datetime:
        anchor = self.state.anchors[sub["id"]]
        recurring = sub["items"]["data"][0]["price"]["recurring"]
        n = 1
        while (end := shift(anchor, recurring["interval"], recurring.get("interval_count", 1), n)) <= after:
            n += 1
        return end

    @staticmethod
    def _period(sub: dict) -> tuple[int, int]:
        first = sub["items"]["data"][0]
        return first["current_period_start"], first["current_period_end"]

    def _cancel_now(self, sub: dict, reason: str = "cancellation_requested") -> None:
        now = ts(self.now)
        sub.update(status="canceled", ended_at=now, canceled_at=sub["canceled_at"] or now)
        sub["cancellation_details"]["reason"] = sub["cancellation_details"]["reason"] or reason
        self._event("customer.subscription.deleted", sub)

    def _renew(self, sub: dict) -> None:
        """The period ends now: cancel (at period end) or invoice the next period and charge it."""
        start, end = self._period(sub)
        if sub["cancel_at_period_end"] or (sub["cancel_at"] is not None and sub["cancel_at"] <= end):
            self._cancel_now(sub)
            return
        was_trial = sub["status"] == "trialing"
        new_start = at(end)
        new_end = self._next_end(sub, new_start)
        customer = self.state.objects[sub["customer"]]
        pending = self._pending_items(customer["id"], sub["id"])
        lines = []
        for item in sub["items"]["data"]:
            if self._metered(item["price"]):
                if not was_trial:
                    lines.append(self._usage_line(sub, item, at(start), new_start))
            else:
                lines.append(self._period_line(sub, item, new_start, new_end))
        lines += self._lines_for_items(pending, sub)
        invoice = self._new_invoice(customer, lines, sub=sub, billing_reason="subscription_cycle",
                                    period=(start, end))
        for ii in pending:
            ii["invoice"] = invoice["id"]
        self._finalize(invoice)
        paid = invoice["status"] == "paid" or self._attempt(invoice)

        def renewed(s: dict) -> None:
            for item in s["items"]["data"]:
                item["current_period_start"], item["current_period_end"] = ts(new_start), ts(new_end)
            s["latest_invoice"] = invoice["id"]
            s["status"] = "active" if paid else "past_due"
        self._change(sub, renewed)

    def _due(self, until: datetime) -> tuple[datetime, str, dict] | None:
        """The earliest thing that happens to a subscription by `until`."""
        best = None
        for sub in self._all("subscription"):
            if sub["status"] in ("canceled", "incomplete_expired"):
                continue
            end = at(self._period(sub)[1])
            if end <= until and (best is None or end < best[0]):
                best = (end, "renew", sub)
            if sub["status"] == "trialing" and sub["id"] not in self.state.trial_warned:
                warn = at(sub["trial_end"]) - TRIAL_WARNING
                if self.now < warn <= until and (best is None or warn < best[0]):
                    best = (warn, "warn", sub)
        return best

    def advance(self, to: datetime) -> list[str]:
        """Test control: move the clock to `to`; every renewal, trial end, cancellation at period end
        and trial warning on the way happens at its own moment, in order. Answers the new event ids."""
        to = to if to.tzinfo else to.replace(tzinfo=timezone.utc)
        with self.lock:
            first = len(self.state.events)
            while (due := self._due(to)) is not None:
                moment, what, sub = due
                self._now = max(self.now, moment)
                if what == "warn":
                    self.state.trial_warned.add(sub["id"])
                    self._event("customer.subscription.trial_will_end", sub)
                else:
                    self._renew(sub)
            self._now = to
            created = [e["id"] for e in self.state.events[first:]]
            pending = self._take_outbox()
        self._deliver(pending)
        return created

    # --- changing a subscription ----------------------------------------------------------------

    def _changes(self, sub: dict, items: list[dict]) -> list[tuple[dict | None, dict | None, int | None, bool]]:
        """(existing item or None, new price, new quantity, deleted) for each item param."""
        planned = []
        for spec in items:
            item = None
            if spec.get("id"):
                item = next((i for i in sub["items"]["data"] if i["id"] == spec["id"]), None)
                if item is None:
                    raise StripeError(400, f"Invalid subscription_item id: {spec['id']}", param="items")
            price = item["price"] if item else None
            if spec.get("price"):
                price = self._find("price", spec["price"], param="items[0][price]")
            if price is None:
                raise StripeError(400, "Missing required param: items[0][price].", code="parameter_missing",
                                  param="items[0][price]")
            quantity = int(spec["quantity"]) if spec.get("quantity") not in (None, "") else (
                item.get("quantity") if item else 1)
            planned.append((item, price, quantity, str(spec.get("deleted", "")).lower() == "true"))
        return planned

    def _interval_changes(self, sub: dict, planned) -> bool:
        def cycle(price: dict) -> tuple[str, int]:
            return price["recurring"]["interval"], price["recurring"].get("interval_count", 1)

        old = cycle(sub["items"]["data"][0]["price"])
        return any(price and not deleted and cycle(price) != old for _, price, _, deleted in planned)

    def _proration(self, sub: dict, planned, moment: datetime) -> list[dict]:
        """Lines for unused time (negative) and remaining time (positive) of each changed licensed item,
        by seconds remaining / period seconds, rounded to cents; no prorations during a trial."""
        if sub["status"] == "trialing":
            return []
        start, end = self._period(sub)
        moment_ts = min(max(ts(moment), start), end)
        fraction = Decimal(end - moment_ts) / Decimal(end - start)
        when = moment.strftime("%d %b %Y")
        lines = []
        for item, price, quantity, deleted in planned:
            old_price, old_qty = (item["price"], item.get("quantity") or 1) if item else (None, 0)
            if item and not deleted and price["id"] == old_price["id"] and quantity == old_qty:
                continue
            if item and not self._metered(old_price):
                amount = -cents(self._unit(old_price) * old_qty * fraction)
                lines.append(self._line(amount=amount, start=moment_ts, end=end, price=old_price, quantity=old_qty,
                                        sub=sub, item=item, proration=True,
                                        description=f"Unused time on {old_qty} × {self._product_name(old_price)} "
                                                    f"after {when}"))
            if not deleted and not self._metered(price):
                amount = cents(self._unit(price) * quantity * fraction)
                lines.append(self._line(amount=amount, start=moment_ts, end=end, price=price, quantity=quantity,
                                        sub=sub, item=item or {"id": None}, proration=True,
                                        description=f"Remaining time on {quantity} × {self._product_name(price)} "
                                                    f"after {when}"))
        return lines

    def _apply(self, sub: dict, planned, reset_at: datetime | None) -> None:
        start, end = self._period(sub)
        if reset_at is not None:
            price = next(p for _, p, _, d in planned if p and not d)
            self.state.anchors[sub["id"]] = reset_at
            sub["billing_cycle_anchor"] = ts(reset_at)
            recurring = price["recurring"]
            start, end = ts(reset_at), ts(shift(reset_at, recurring["interval"], recurring.get("interval_count", 1), 1))
        data = sub["items"]["data"]
        for item, price, quantity, deleted in planned:
            if deleted and item:
                data.remove(item)
            elif item:
                item["price"], item["plan"] = copy.deepcopy(price), self._plan(price)
                item["quantity"] = None if self._metered(price) else quantity
            else:
                data.append(self._new_item(sub, price, quantity, at(start), at(end)))
        for item in data:
            item["current_period_start"], item["current_period_end"] = start, end
        sub["items"]["total_count"] = len(data)

    def _update_subscription(self, sub: dict, params: dict) -> dict:
        if sub["status"] == "canceled":
            raise StripeError(400, "A canceled subscription can only update its cancellation_details and metadata.")
        behavior = params.get("proration_behavior") or "create_prorations"
        moment = at(int(params["proration_date"])) if params.get("proration_date") else self.now
        planned = self._changes(sub, list(params.get("items") or []))
        reset = self._interval_changes(sub, planned)
        prorations = self._proration(sub, planned, moment) if behavior != "none" else []
        customer = self.state.objects[sub["customer"]]
        invoice = None

        def mutate(s: dict) -> None:
            if "metadata" in params:
                merge_metadata(s, params["metadata"])
            if "cancel_at_period_end" in params:
                cancel = str(params["cancel_at_period_end"]).lower() == "true"
                s["cancel_at_period_end"] = cancel
                s["cancel_at"] = self._period(s)[1] if cancel else None
                s["canceled_at"] = ts(self.now) if cancel else None
                s["cancellation_details"] = {"comment": None, "feedback": None,
                                             "reason": "cancellation_requested" if cancel else None}
            if "cancel_at" in params:
                s["cancel_at"] = int(params["cancel_at"]) if params["cancel_at"] not in ("", None) else None
                s["canceled_at"] = ts(self.now) if s["cancel_at"] else None
            if planned:
                self._apply(s, planned, self.now if reset else None)
            if invoice is not None:
                s["latest_invoice"] = invoice["id"]

        if planned and (reset or (behavior == "always_invoice" and prorations)):
            lines = [line for line in prorations if line["amount"] < 0]  # the credit for unused time
            if not reset:
                lines = prorations
            invoice = self._new_invoice(customer, [], sub=sub, billing_reason="subscription_update",
                                        period=(ts(self.now), ts(self.now)))
        elif prorations and behavior == "create_prorations":
            for line in prorations:
                self._pending_proration(customer, sub, line)
        self._change(sub, mutate)
        if invoice is not None:
            if reset:  # a new billing interval starts now, charged in full
                start, end = self._period(sub)
                lines += [self._period_line(sub, item, at(start), at(end)) for item in sub["items"]["data"]
                          if not self._metered(item["price"])]
            invoice["lines"]["data"] = lines + self._lines_for_items(self._pending_items(customer["id"], sub["id"]),
                                                                      sub)
            for line in invoice["lines"]["data"]:
                line["invoice"] = invoice["id"]
            invoice["lines"]["total_count"] = len(invoice["lines"]["data"])
            for ii in self._pending_items(customer["id"], sub["id"]):
                ii["invoice"] = invoice["id"]
            self._totals(invoice)
            self._finalize(invoice)
            if invoice["status"] == "open":
                self._attempt(invoice)
        return sub

    def _pending_proration(self, customer: dict, sub: dict, line: dict) -> dict:
        details = line["parent"]["subscription_item_details"]
        ii = self._store({
            "id": new_id("ii_"), "object": "invoiceitem", "amount": line["amount"], "currency": "usd",
            "customer": customer["id"], "customer_account": None, "date": ts(self.now),
            "description": line["description"], "discountable": False, "discounts": [], "invoice": None,
            "livemode": False, "metadata": {}, "net_amount": line["amount"],
            "parent": {"type": "subscription_details",
                       "subscription_details": {"subscription": sub["id"],
                                                "subscription_item": details["subscription_item"]}},
            "period": dict(line["period"]), "pricing": line["pricing"], "proration": True,
            "proration_details": {"credited_items": None}, "quantity": line["quantity"], "tax_rates": [],
            "test_clock": None})
        return ii

    def _preview(self, params: dict) -> dict:
        """POST /v1/invoices/create_preview for a subscription (changed or not)."""
        details = params.get("subscription_details") or {}
        sub = self.state.objects.get(params.get("subscription") or "")
        if params.get("subscription") and (sub is None or sub["object"] != "subscription"):
            raise missing("subscription", params["subscription"], "subscription")
        customer_id = params.get("customer") or (sub or {}).get("customer")
        customer = self._find("customer", customer_id or "", param="customer")
        if sub is None:
            sub = next((s for s in self._all("subscription") if s["customer"] == customer["id"]
                        and s["status"] != "canceled"), None)
        if sub is None or sub["status"] == "canceled" or sub["cancel_at_period_end"]:
            raise StripeError(404, f"No upcoming invoices for customer: {customer['id']}",
                              code="invoice_upcoming_none")
        behavior = details.get("proration_behavior") or "create_prorations"
        moment = at(int(details["proration_date"])) if details.get("proration_date") else self.now
        planned = self._changes(sub, list(details.get("items") or []))
        reset = self._interval_changes(sub, planned)
        prorations = self._proration(sub, planned, moment) if behavior != "none" else []
        preview_sub = copy.deepcopy(sub)
        saved_anchor = self.state.anchors[sub["id"]]
        try:
            if planned:
                self._apply_preview(preview_sub, planned, self.now if reset else None)
            start, end = self._period(preview_sub)
            pending = self._lines_for_items(self._pending_items(customer["id"], sub["id"]), preview_sub)
            if reset:
                lines = [line for line in prorations if line["amount"] < 0] + pending + [
                    self._period_line(preview_sub, item, at(start), at(end))
                    for item in preview_sub["items"]["data"] if not self._metered(item["price"])]
                period, attempt = (ts(self.now), ts(self.now)), ts(self.now)
            elif behavior == "always_invoice" and prorations:
                lines, period, attempt = prorations + pending, (ts(self.now), ts(self.now)), ts(self.now)
            else:
                next_end = self._next_end(preview_sub, at(end))
                lines = prorations + pending
                for item in preview_sub["items"]["data"]:
                    if self._metered(item["price"]):
                        if preview_sub["status"] != "trialing":
                            lines.append(self._usage_line(preview_sub, item, at(start), at(end)))
                    else:
                        lines.append(self._period_line(preview_sub, item, at(end), next_end))
                period, attempt = (start, end), end
        finally:
            self.state.anchors[sub["id"]] = saved_anchor
        invoice = self._new_invoice(customer, lines, sub=preview_sub, billing_reason="upcoming", period=period,
                                    store=False, ident=new_id("upcoming_in_"))
        invoice["next_payment_attempt"] = attempt
        invoice["automatically_finalizes_at"] = attempt
        if prorations:
            invoice["parent"]["subscription_details"]["subscription_proration_date"] = min(
                max(ts(moment), self._period(sub)[0]), self._period(sub)[1])
        return invoice

    def _apply_preview(self, sub: dict, planned, reset_at: datetime | None) -> None:
        """_apply on a copy, without storing new items."""
        store, self._store = self._store, lambda obj: obj  # type: ignore[method-assign]
        try:
            items = {i["id"]: i for i in sub["items"]["data"]}
            self._apply(sub, [(items.get(item["id"]) if item else None, price, qty, deleted)
                              for item, price, qty, deleted in planned], reset_at)
        finally:
            self._store = store  # type: ignore[method-assign]


def merge_metadata(obj: dict, given) -> None:
    """Stripe's metadata update: keys merge, an empty value removes a key, "" clears all."""
    if given in ("", None):
        obj["metadata"] = {}
        return
    for key, value in given.items():
        if value in ("", None):
            obj["metadata"].pop(key, None)
        else:
            obj["metadata"][key] = value

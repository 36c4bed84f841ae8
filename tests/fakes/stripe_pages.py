"""The hosted pages of the fake Stripe API (tests/fakes/stripe_api.py): plain
HTML forms, no JavaScript, for requests or Playwright to fill.

- GET /pay/checkout/<session>: plan, amount, quantity, trial, the amount due today; inputs `email`,
  `cardNumber`, `cardExpiry`, `cardCvc`, `billingName` (ids as on Stripe's page) and a submit button
  (data-testid="hosted-payment-submit-button"); a "cancel" link to cancel_url. POST pays: 4242 4242 4242 4242
  (or any valid number) pays, 4000 0000 0000 0002 is declined (the page shows the error in role="alert",
  nothing is created), 4000 0000 0000 0341 attaches but fails every charge (declined here when something is
  due today). Paying creates the card, the subscription and its first invoice, completes the session, sends
  customer.subscription.created, invoice.finalized, invoice.paid, checkout.session.completed and answers 303
  to success_url ({CHECKOUT_SESSION_ID} replaced).
- GET /pay/portal/<session>: the customer's subscriptions and card; POST …/cancel (at period end),
  …/reactivate (undo), …/card (a new default card: customer.updated); each answers 303 back to the portal.
- GET /pay/invoice/<id> (hosted_invoice_url) and /pay/invoice/<id>/pdf (invoice_pdf).
"""
from __future__ import annotations

import html
from datetime import datetime, timezone
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from tests.fakes.stripe_billing import CARD_FAILS_LATER, DECLINES, StripeError, luhn_ok, money

STYLE = ("body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1a1f36}"
         "label{display:block;margin:.75rem 0 .25rem}input{width:100%;padding:.5rem;font-size:1rem}"
         "button{margin-top:1rem;padding:.6rem 1.2rem;font-size:1rem}.error{color:#c0123c}"
         "section{border:1px solid #e3e8ee;border-radius:6px;padding:1rem;margin:1rem 0}")


def page(title: str, body: str, status: int = 200) -> Response:
    text = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")
    return Response(text, status=status, mimetype="text/html")


def day(stamp: int | None) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%B %-d, %Y") if stamp else "—"


def esc(value) -> str:
    return html.escape(str(value if value is not None else ""))


class Pages:
    def _page(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")  # pay, kind, id[, action]
        kind, ident = (parts[1], parts[2]) if len(parts) >= 3 else ("", "")
        action = parts[3] if len(parts) > 3 else ""
        if kind == "checkout" and not action:
            return self._checkout_page(ident) if request.method == "GET" else self._checkout_pay(ident, request)
        if kind == "portal" and request.method == "GET" and not action:
            return self._portal_page(ident, request.args.get("message", ""), request.args.get("error", ""))
        if kind == "portal" and request.method == "POST" and action in ("cancel", "reactivate", "card"):
            return self._portal_action(ident, action, request)
        if kind == "invoice" and request.method == "GET":
            return self._invoice_page(ident, pdf=action == "pdf")
        return page("Not found", "<h1>Not found</h1>", 404)

    # --- Checkout -------------------------------------------------------------------------

    def _checkout_page(self, ident: str, error: str = "", form=None, status: int = 200) -> Response:
        with self.lock:
            session = self.state.objects.get(ident)
            if session is None or session.get("object") != "checkout.session":
                return page("Not found", "<h1>Something went wrong</h1><p>This Checkout Session does not exist.</p>",
                            404)
            if session["status"] != "open":
                return page("Checkout", "<h1>This Checkout Session is no longer active.</h1>", 410)
            customer = self.state.objects.get(session["customer"] or "") or {}
            trial = self.state.checkout[ident]["trial_period_days"]
            rows = []
            for item in session["line_items"]["data"]:
                price = item["price"]
                rows.append(f"<li><span class=plan>{esc(self._product_name(price))}</span> — "
                            f"<span class=price>{esc(self._price_text(price))}</span>"
                            + (f" — Qty <span class=quantity>{item['quantity']}</span>" if item["quantity"] else "")
                            + (f" — <span class=amount>{money(item['amount_total'])}</span>" if item['quantity']
                               else "") + "</li>")
        form = form or {}
        email = form.get("email") or customer.get("email") or session.get("customer_email") or ""
        body = (f"<h1>Subscribe</h1><ul id=items>{''.join(rows)}</ul>"
                + (f"<p id=trial>{trial} days free</p>" if trial else "")
                + f"<p>Total due today <strong id=total>{money(session['amount_total'])}</strong></p>"
                + (f"<p class=error role=alert id=card-errors>{esc(error)}</p>" if error else "")
                + f"<form method=post action='/pay/checkout/{esc(ident)}'>"
                  f"<label for=email>Email</label><input id=email name=email type=email required "
                  f"value='{esc(email)}'>"
                  "<label for=cardNumber>Card number</label><input id=cardNumber name=cardNumber "
                  "inputmode=numeric autocomplete=cc-number placeholder='1234 1234 1234 1234' required>"
                  "<label for=cardExpiry>Expiration</label><input id=cardExpiry name=cardExpiry placeholder='MM / YY'>"
                  "<label for=cardCvc>CVC</label><input id=cardCvc name=cardCvc placeholder=CVC>"
                  f"<label for=billingName>Cardholder name</label><input id=billingName name=billingName "
                  f"value='{esc(form.get('billingName') or customer.get('name') or '')}'>"
                  "<button type=submit data-testid=hosted-payment-submit-button>"
                  f"{'Start trial' if trial else 'Subscribe'}</button></form>"
                + (f"<p><a id=cancel href='{esc(session['cancel_url'])}'>Cancel and go back</a></p>"
                   if session["cancel_url"] else ""))
        return page("Checkout", body, status)

    def _checkout_pay(self, ident: str, request: Request) -> Response:
        form = request.form
        number = "".join(ch for ch in form.get("cardNumber", "") if ch.isdigit())
        month, year = parse_expiry(form.get("cardExpiry", ""))
        with self.lock:
            session = self.state.objects.get(ident)
            if session is None or session.get("object") != "checkout.session" or session["status"] != "open":
                return self._checkout_page(ident)
            due_today = session["amount_total"]
            if not luhn_ok(number):
                return self._checkout_page(ident, "Your card number is invalid.", form, 402)
            if number in DECLINES or (number == CARD_FAILS_LATER and due_today > 0):
                return self._checkout_page(ident, "Your card was declined.", form, 402)
            email = form.get("email") or session.get("customer_email")
            name = form.get("billingName") or None
            customer = self.state.objects.get(session["customer"] or "") or self._new_customer(email, name)
            pm = self._new_card(customer, number, month, year, name=name, email=email)
            customer["invoice_settings"]["default_payment_method"] = pm["id"]
            extra = self.state.checkout[ident]
            lines = [(self.state.objects.get(i["price"]["id"], i["price"]), i["quantity"])
                     for i in session["line_items"]["data"]]
            sub, invoice = self._create_subscription(customer, lines, trial_days=extra["trial_period_days"],
                                                     metadata=extra["metadata"])
            self._event("customer.subscription.created", sub)
            self._finalize(invoice)
            if invoice["status"] == "open":
                self._attempt(invoice)
            session.update(status="complete", customer=customer["id"], subscription=sub["id"],
                           payment_status="paid" if invoice["amount_due"] else "no_payment_required",
                           customer_details={"address": None, "business_name": None, "email": email,
                                             "individual_name": None, "name": name, "phone": None,
                                             "tax_exempt": "none", "tax_ids": []})
            self._event("checkout.session.completed", session)
            pending = self._take_outbox()
            target = session["success_url"].replace("{CHECKOUT_SESSION_ID}", ident)
        self._deliver(pending)
        return Response("", status=303, headers={"Location": target})

    # --- Customer Portal ---------------------------------------------------------------------

    def _portal_session(self, ident: str) -> tuple[dict, dict] | None:
        session = self.state.objects.get(ident)
        if session is None or session.get("object") != "billing_portal.session":
            return None
        return session, self.state.objects[session["customer"]]

    def _portal_page(self, ident: str, message: str = "", error: str = "") -> Response:
        with self.lock:
            found = self._portal_session(ident)
            if found is None:
                return page("Not found", "<h1>This portal session does not exist.</h1>", 404)
            session, customer = found
            subs = [s for s in self._all("subscription") if s["customer"] == customer["id"]]
            subs = [s for s in subs if s["status"] != "canceled"] or subs[:1]
            pm = self.state.objects.get(customer["invoice_settings"]["default_payment_method"] or "")
            blocks = [self._portal_block(ident, sub) for sub in subs]
        card = (f"<p id=card>{esc(pm['card']['brand'].title())} •••• {esc(pm['card']['last4'])}, expires "
                f"{pm['card']['exp_month']:02d}/{pm['card']['exp_year']}</p>" if pm else "<p id=card>No card</p>")
        body = ("<h1>Billing</h1>"
                + (f"<p class=notice role=status>{esc(message)}</p>" if message else "")
                + (f"<p class=error role=alert>{esc(error)}</p>" if error else "")
                + ("".join(blocks) or "<p>No subscription.</p>")
                + f"<section><h2>Payment method</h2>{card}"
                  f"<form method=post action='/pay/portal/{esc(ident)}/card'>"
                  "<label for=cardNumber>New card number</label><input id=cardNumber name=cardNumber required>"
                  "<label for=cardExpiry>Expiration</label><input id=cardExpiry name=cardExpiry placeholder='MM / YY'>"
                  "<button type=submit>Update payment method</button></form></section>"
                + (f"<p><a id=return href='{esc(session['return_url'])}'>Return to Cost Guardian</a></p>"
                   if session["return_url"] else ""))
        return page("Billing portal", body)

    def _portal_block(self, ident: str, sub: dict) -> str:
        item = sub["items"]["data"][0]
        price = item["price"]
        status = sub["status"]
        end = item["current_period_end"]
        if sub["status"] == "canceled":
            note = f"Canceled on {day(sub['ended_at'])}"
        elif sub["cancel_at_period_end"]:
            note = f"Cancels on {day(sub['cancel_at'] or end)}"
        elif status == "trialing":
            note = f"Trial ends on {day(sub['trial_end'])}"
        else:
            note = f"Renews on {day(end)}"
        if sub["status"] == "canceled":
            action = ""
        elif sub["cancel_at_period_end"]:
            action = (f"<form method=post action='/pay/portal/{esc(ident)}/reactivate'>"
                      f"<input type=hidden name=subscription value='{esc(sub['id'])}'>"
                      "<button type=submit>Renew plan</button></form>")
        else:
            action = (f"<form method=post action='/pay/portal/{esc(ident)}/cancel'>"
                      f"<input type=hidden name=subscription value='{esc(sub['id'])}'>"
                      "<button type=submit>Cancel plan</button></form>")
        quantity = f" × {item['quantity']}" if item.get("quantity") else ""
        return (f"<section class=subscription id='{esc(sub['id'])}'><h2>{esc(self._product_name(price))}{quantity}"
                f"</h2><p>{esc(self._price_text(price))}</p><p class=status>{esc(status)}</p>"
                f"<p class=renewal>{esc(note)}</p>{action}</section>")

    def _portal_action(self, ident: str, action: str, request: Request) -> Response:
        message = error = ""
        with self.lock:
            found = self._portal_session(ident)
            if found is None:
                return page("Not found", "<h1>This portal session does not exist.</h1>", 404)
            _, customer = found
            if action == "card":
                number = "".join(ch for ch in request.form.get("cardNumber", "") if ch.isdigit())
                if not luhn_ok(number):
                    error = "Your card number is invalid."
                elif number in DECLINES:
                    error = "Your card was declined."
                else:
                    month, year = parse_expiry(request.form.get("cardExpiry", ""))
                    self._set_default_card(customer, self._new_card(customer, number, month, year))
                    message = "Payment method updated."
            else:
                sub = self.state.objects.get(request.form.get("subscription", ""))
                if sub is None or sub.get("object") != "subscription" or sub["customer"] != customer["id"]:
                    error = "No such subscription."
                else:
                    try:
                        self._update_subscription(sub, {"cancel_at_period_end": str(action == "cancel").lower()})
                        message = "Subscription canceled." if action == "cancel" else "Subscription renewed."
                    except StripeError as exc:
                        error = exc.message
            pending = self._take_outbox()
        self._deliver(pending)
        query = urlencode({"error": error} if error else {"message": message})
        return Response("", status=303, headers={"Location": f"/pay/portal/{ident}?{query}"})

    # --- invoices ----------------------------------------------------------------------------

    def _invoice_page(self, ident: str, pdf: bool) -> Response:
        with self.lock:
            invoice = self.state.objects.get(ident)
            if invoice is None or invoice.get("object") != "invoice" or invoice["status"] == "draft":
                return page("Not found", "<h1>Invoice not found</h1>", 404)
            lines = [(line["description"], line["amount"]) for line in invoice["lines"]["data"]]
        if pdf:
            return Response(minimal_pdf(f"Invoice {invoice['number']} {money(invoice['total'])}"),
                            mimetype="application/pdf")
        rows = "".join(f"<tr><td>{esc(text)}</td><td>{money(amount)}</td></tr>" for text, amount in lines)
        body = (f"<h1>Invoice <span id=number>{esc(invoice['number'])}</span></h1>"
                f"<p class=status>{esc(invoice['status'])}</p><p>Date {day(invoice['created'])}</p>"
                f"<table id=lines>{rows}</table><p>Amount due <strong id=amount-due>"
                f"{money(invoice['amount_due'])}</strong></p><p><a href='{esc(invoice['invoice_pdf'])}'>"
                "Download invoice</a></p>")
        return page(f"Invoice {invoice['number']}", body)


def parse_expiry(text: str) -> tuple[int, int]:
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) >= 4:
        month, year = int(digits[:2]), int(digits[2:])
        if 1 <= month <= 12:
            return month, year + 2000 if year < 100 else year
    return 12, 2034


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF that says `text`."""
    safe = text.replace("\\", "").replace("(", "").replace(")", "").encode("latin-1", "replace")
    stream = b"BT /F1 18 Tf 72 720 Td (" + safe + b") Tj ET"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for n, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)

"""A local fake of the Stripe API: a real HTTP server on 127.0.0.1 (Werkzeug,
in a thread) that answers in Stripe's documented shapes for API version
2026-10-28.endive, so the official library works against it unchanged:

    client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url}, max_network_retries=2)

What it speaks (form-encoded bodies as the library sends them, JSON answers,
`Authorization: Bearer <api_key>`, errors as {"error": {type, code, message,
param}} with Stripe's statuses, `Idempotency-Key` replaying the first answer
of a POST (`Idempotent-Replayed: true`; other parameters with the same key are
an `idempotency_error`), `expand[]` on any id field, lists newest first with
`limit`, `starting_after`, `ending_before`):
- customers: POST/GET /v1/customers (email), GET/POST /v1/customers/{id}
- products and prices: POST /v1/products, GET /v1/products/{id}, POST /v1/prices (lookup_key unique unless
  transfer_lookup_key), GET/POST /v1/prices/{id}, GET /v1/prices (lookup_keys[], product, active)
- billing meters: POST/GET /v1/billing/meters, GET /v1/billing/meters/{id},
  GET /v1/billing/meters/{id}/event_summaries (customer, start_time, end_time on minute boundaries,
  value_grouping_window=hour|day); POST /v1/billing/meter_events: timestamp within the past 35 days and at most
  5 minutes ahead of the fake's clock, and a repeated `identifier` refused as Stripe does (400
  invalid_request_error "An event already exists with identifier …", `Stripe-Should-Retry: false`), so it is
  counted once
- Checkout: POST /v1/checkout/sessions (mode=subscription; `url` = {fake}/pay/checkout/{id}),
  GET /v1/checkout/sessions/{id}, POST /v1/checkout/sessions/{id}/expire (open ones only); Customer Portal:
  POST /v1/billing_portal/sessions (`url` = {fake}/pay/portal/{id})
- subscriptions: GET /v1/subscriptions (customer, price, status incl. all), GET/POST/DELETE
  /v1/subscriptions/{id} (items[n][id|price|quantity|deleted], proration_behavior create_prorations | none |
  always_invoice, proration_date, cancel_at_period_end, cancel_at, metadata); current_period_* on the items
- invoices: POST /v1/invoices/create_preview, GET /v1/invoices (customer, subscription, status), GET
  /v1/invoices/{id}, POST /v1/invoices (pending items of the customer included), POST
  /v1/invoices/{id}/finalize, POST /v1/invoices/{id}/pay; POST /v1/invoiceitems, GET /v1/invoiceitems
  (customer, pending), DELETE /v1/invoiceitems/{id};
  the subscription of an invoice at invoice.parent.subscription_details.subscription
- GET /v1/payment_methods (customer, type=card), GET /v1/payment_methods/{id}; GET /v1/events, /v1/events/{id}

Hosted pages (plain HTML forms, tests/fakes/stripe_pages.py): the Checkout page, the Customer Portal and an
invoice page with its "PDF".

Events are Stripe's Event objects (data.object a snapshot at that moment,
data.previous_attributes on updates), POSTed to `webhook_url` as they happen,
after the state change and outside the lock, signed with `webhook_secret`
(`Stripe-Signature: t=…,v1=…`); `deliveries` records the answers.
`auto_deliver = False` keeps them for `send`/`send_events`.

Test controls: `now` (the fake's clock; the real time until set), `advance(to)`, `pay_open_invoices(customer)`,
`attach_card(customer, number)`, `send(event_id)` / `resend(event_id)`, `send_events(ids)`, `event_ids(type)`,
`fail_next(status, code, should_retry, times)`, `get(id)` (the stored object), `requests` (what arrived),
`client()` (a StripeClient pointed here).
"""
from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import dataclass
from datetime import timedelta

from werkzeug.wrappers import Request, Response

from tests.fakes.stripe_billing import (API_VERSION, Billing, StripeError, merge_metadata, missing, new_id, ts)
from tests.fakes.stripe_pages import Pages
from tests.fakes.server import LocalServer

API_KEY = "sk_test_fake51Qx7Lm2Vb8Nc4Rd6Tf9Gh3Jk"
WEBHOOK_SECRET = "whsec_fake7d2c9a41b6e85f03c7d19a2b4e6f8c1"
SECONDS = {"hour": 3600, "day": 86400}


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict
    headers: dict

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def parse_params(pairs) -> dict:
    """Stripe's form encoding (`a[b][0][c]=v`, `a[]=v`) into nested dicts and lists."""
    root: dict = {}
    for key, value in pairs:
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if match is None:
            continue
        path = [match[1], *re.findall(r"\[([^\[\]]*)\]", match[2])]
        node = root
        for part, following in zip(path, path[1:] + [None]):
            if part == "":
                part = str(len(node))
            if following is None:
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise StripeError(400, f"Invalid value for {key}.", param=key)
    return _listify(root)


def _listify(node):
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_listify(node[k]) for k in sorted(node, key=int)]
    return {k: _listify(v) for k, v in node.items()}


def require(params: dict, *names: str) -> None:
    for name in names:
        if params.get(name) in (None, ""):
            raise StripeError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)


def as_int(params: dict, name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StripeError(400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=name) from None


class FakeStripe(LocalServer, Billing, Pages):
    thread_name = "fake-stripe"
    def __init__(self, api_key: str = API_KEY, webhook_secret: str = WEBHOOK_SECRET):
        self.api_key = api_key
        self.lock = threading.RLock()
        self._server = None
        self._thread: threading.Thread | None = None
        self._routes: list[tuple[str, re.Pattern, object]] = []
        for method, path, handler in self._api():
            self._routes.append((method, re.compile(path + "$"), handler))
        self.clear()
        self.webhook_secret = webhook_secret

    # --- the server ------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.address

    def clear(self) -> None:
        with self.lock:
            self._reset_billing()
            self.webhook_url: str | None = None
            self.webhook_secret = WEBHOOK_SECRET
            self.auto_deliver = True
            self.requests: list[RecordedRequest] = []
            self._failures: list[tuple[int, str | None, bool | None]] = []
            self._idempotent: dict[str, tuple[str, str, str, int, str]] = {}

    def client(self, **options):
        """The official library's client, pointed at this fake (retries as the app configures them)."""
        import stripe

        options.setdefault("max_network_retries", 2)
        return stripe.StripeClient(options.pop("api_key", self.api_key), base_addresses={"api": self.url},
                                   **options)

    def fail_next(self, status: int = 500, code: str | None = None, should_retry: bool | None = None,
                  times: int = 1) -> None:
        """The next `times` API requests answer `status` before doing anything (nothing is stored, so a
        retry with the same Idempotency-Key runs for real). `should_retry` sets Stripe-Should-Retry; the
        library retries a 409 or >= 500 without it, a 429 only with should_retry=True."""
        with self.lock:
            self._failures += [(status, code, should_retry)] * times

    # --- dispatch ------------------------------------------------------------------

    @Request.application
    def _app(self, request: Request) -> Response:
        if request.path.startswith("/pay/"):
            return self._page(request)
        method = request.method
        try:
            params = parse_params(request.form.items(multi=True) if method == "POST" else
                                  request.args.items(multi=True))
        except StripeError as exc:
            return self._error(exc, new_id("req_", 14))
        with self.lock:
            self.requests.append(RecordedRequest(method, request.path, params, dict(request.headers)))
            failure = self._failures.pop(0) if self._failures else None
        request_id = new_id("req_", 14)
        if failure is not None:
            status, code, should_retry = failure
            message = ("An unknown error occurred" if status >= 500 else
                       "Too many requests hit the API too quickly." if status == 429 else f"Failing as told ({status})")
            kind = "api_error" if status >= 500 else "invalid_request_error"
            return self._error(StripeError(status, message, kind=kind, code=code or (
                "rate_limit" if status == 429 else None), should_retry=should_retry), request_id)
        given = request.headers.get("Authorization", "")
        if not given.startswith("Bearer ") or not given[7:].strip():
            return self._error(StripeError(401, "You did not provide an API key. You need to provide your API key "
                                                "in the Authorization header, using Bearer auth."), request_id)
        if given[7:].strip() != self.api_key:
            key = given[7:].strip()
            return self._error(StripeError(401, f"Invalid API Key provided: {key[:8]}{'*' * 12}{key[-4:]}"),
                               request_id)
        key = request.headers.get("Idempotency-Key") if method in ("POST", "DELETE") else None
        handler, groups = self._route(method, request.path)
        if handler is None:
            return self._error(StripeError(
                404, f"Unrecognized request URL ({method}: {request.path}). Please see https://stripe.com/docs or "
                     "we can help at https://support.stripe.com/."), request_id)
        fingerprint = json.dumps(params, sort_keys=True)
        with self.lock:  # one request at a time: a concurrent retry with the same key sees the first answer
            seen = self._idempotent.get(key) if key else None
            if seen is not None:
                if seen[:3] != (method, request.path, fingerprint):
                    return self._error(StripeError(
                        400, "Keys for idempotent requests can only be used with the same parameters they were "
                             f"first used with. Try using a key other than '{key}' if you meant to execute a "
                             "different request.", kind="idempotency_error"), request_id)
                return self._json(json.loads(seen[4]), seen[3], request_id,
                                  {"Idempotent-Replayed": "true", "Idempotency-Key": key})
            self.state.request = {"id": request_id, "idempotency_key": key}
            try:
                answer = handler(params, *groups)
                expand = params.get("expand") or []
                answer = self._expand(copy.deepcopy(answer), expand if isinstance(expand, list) else [expand])
            except StripeError as exc:
                self.state.outbox.clear()
                return self._error(exc, request_id)
            finally:
                self.state.request = None
            pending = self._take_outbox()
            if key:
                self._idempotent[key] = (method, request.path, fingerprint, 200, json.dumps(answer))
        self._deliver(pending)
        return self._json(answer, 200, request_id, {"Idempotency-Key": key} if key else {})

    def _route(self, method: str, path: str):
        for verb, pattern, handler in self._routes:
            if verb == method and (match := pattern.match(path)):
                return handler, match.groups()
        return None, ()

    @staticmethod
    def _json(body: dict, status: int, request_id: str, headers: dict | None = None) -> Response:
        response = Response(json.dumps(body, indent=2), status=status, mimetype="application/json")
        response.headers["Request-Id"] = request_id
        response.headers["Stripe-Version"] = API_VERSION
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def _error(self, exc: StripeError, request_id: str) -> Response:
        body = exc.body()
        body["error"]["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        headers = {} if exc.should_retry is None else {"Stripe-Should-Retry": str(exc.should_retry).lower()}
        return self._json(body, exc.status, request_id, headers)

    def _expand(self, obj, paths: list[str]):
        for path in paths:
            self._expand_path(obj, path.split("."))
        return obj

    def _expand_path(self, node, parts: list[str]) -> None:
        if not parts or not isinstance(node, dict):
            return
        head, rest = parts[0], parts[1:]
        if head == "data" and isinstance(node.get("data"), list):
            for item in node["data"]:
                self._expand_path(item, rest)
            return
        value = node.get(head)
        if isinstance(value, str) and rest == [] and value in self.state.objects:
            node[head] = copy.deepcopy(self.state.objects[value])
        elif isinstance(value, str) and value in self.state.objects:
            node[head] = copy.deepcopy(self.state.objects[value])
            self._expand_path(node[head], rest)
        elif isinstance(value, dict):
            self._expand_path(value, rest)

    def _list(self, objects: list[dict], params: dict, url: str) -> dict:
        limit = max(1, min(as_int(params, "limit", 10), 100))
        if params.get("starting_after"):
            ids = [o["id"] for o in objects]
            if params["starting_after"] in ids:
                objects = objects[ids.index(params["starting_after"]) + 1:]
        elif params.get("ending_before"):
            ids = [o["id"] for o in objects]
            if params["ending_before"] in ids:
                objects = objects[:ids.index(params["ending_before"])][-limit:]
        return {"object": "list", "data": objects[:limit], "has_more": len(objects) > limit, "url": url}

    # --- the API -------------------------------------------------------------------

    def _api(self):
        ident = r"([A-Za-z0-9_]+)"
        return [
            ("POST", "/v1/customers", self._create_customer),
            ("GET", "/v1/customers", lambda p: self._list(
                [c for c in self._all("customer") if p.get("email") in (None, c["email"])], p, "/v1/customers")),
            ("GET", f"/v1/customers/{ident}", lambda p, i: self._find("customer", i)),
            ("POST", f"/v1/customers/{ident}", self._update_customer),
            ("POST", "/v1/products", self._create_product),
            ("GET", f"/v1/products/{ident}", lambda p, i: self._find("product", i)),
            ("POST", "/v1/prices", self._create_price),
            ("GET", "/v1/prices", self._list_prices),
            ("GET", f"/v1/prices/{ident}", lambda p, i: self._find("price", i)),
            ("POST", f"/v1/prices/{ident}", self._update_price),
            ("POST", "/v1/billing/meters", self._create_meter),
            ("GET", "/v1/billing/meters", lambda p: self._list(
                [m for m in self._all("billing.meter") if p.get("status") in (None, m["status"])], p,
                "/v1/billing/meters")),
            ("GET", f"/v1/billing/meters/{ident}", lambda p, i: self._find("billing.meter", i, "billing meter")),
            ("GET", f"/v1/billing/meters/{ident}/event_summaries", self._event_summaries),
            ("POST", "/v1/billing/meter_events", self._create_meter_event),
            ("POST", "/v1/checkout/sessions", self._create_checkout),
            ("GET", f"/v1/checkout/sessions/{ident}", lambda p, i: self._find("checkout.session", i,
                                                                             "checkout.session")),
            ("POST", f"/v1/checkout/sessions/{ident}/expire", self._expire_checkout),
            ("POST", "/v1/billing_portal/sessions", self._create_portal),
            ("GET", "/v1/subscriptions", self._list_subscriptions),
            ("GET", f"/v1/subscriptions/{ident}", lambda p, i: self._find("subscription", i)),
            ("POST", f"/v1/subscriptions/{ident}", lambda p, i: self._update_subscription(
                self._find("subscription", i), p)),
            ("DELETE", f"/v1/subscriptions/{ident}", self._delete_subscription),
            ("POST", "/v1/invoices/create_preview", lambda p: self._preview(p)),
            ("GET", "/v1/invoices", self._list_invoices),
            ("POST", "/v1/invoices", self._create_invoice),
            ("GET", f"/v1/invoices/{ident}", lambda p, i: self._find("invoice", i)),
            ("POST", f"/v1/invoices/{ident}/finalize", self._finalize_invoice),
            ("POST", f"/v1/invoices/{ident}/pay", self._pay_invoice),
            ("POST", "/v1/invoiceitems", self._create_invoice_item),
            ("GET", "/v1/invoiceitems", lambda p: self._list(
                [i for i in self._all("invoiceitem") if p.get("customer") in (None, i["customer"])
                 and (p.get("pending") != "true" or i["invoice"] is None)], p,
                "/v1/invoiceitems")),
            ("DELETE", f"/v1/invoiceitems/{ident}", self._delete_invoice_item),
            ("GET", "/v1/payment_methods", self._list_payment_methods),
            ("GET", f"/v1/payment_methods/{ident}", lambda p, i: self._find("payment_method", i,
                                                                           "PaymentMethod")),
            ("GET", "/v1/events", lambda p: self._list(
                [e for e in reversed(self.state.events) if p.get("type") in (None, e["type"])], p, "/v1/events")),
            ("GET", f"/v1/events/{ident}", self._get_event),
        ]

    def _create_customer(self, p: dict) -> dict:
        customer = self._new_customer(p.get("email"), p.get("name"), p.get("metadata") or {},
                                      description=p.get("description"), phone=p.get("phone"))
        if (p.get("invoice_settings") or {}).get("default_payment_method"):
            customer["invoice_settings"]["default_payment_method"] = p["invoice_settings"]["default_payment_method"]
        return customer

    def _update_customer(self, p: dict, ident: str) -> dict:
        customer = self._find("customer", ident)
        before = copy.deepcopy(customer)
        for name in ("email", "name", "description", "phone"):
            if name in p:
                customer[name] = p[name] or None
        if "metadata" in p:
            merge_metadata(customer, p["metadata"])
        default = (p.get("invoice_settings") or {}).get("default_payment_method")
        if default is not None:
            if default and self.state.objects.get(default, {}).get("customer") != customer["id"]:
                raise StripeError(400, f"No such PaymentMethod: '{default}'", code="resource_missing",
                                  param="invoice_settings[default_payment_method]")
            customer["invoice_settings"]["default_payment_method"] = default or None
        previous = {k: v for k, v in before.items() if customer.get(k) != v}
        if previous:
            self._event("customer.updated", customer, previous)
        return customer

    def _create_product(self, p: dict) -> dict:
        require(p, "name")
        return self._store({
            "id": p.get("id") or new_id("prod_", 14), "object": "product", "active": p.get("active") != "false",
            "created": ts(self.now), "default_price": None, "description": p.get("description"), "images": [],
            "livemode": False, "marketing_features": [], "metadata": dict(p.get("metadata") or {}),
            "name": p["name"], "package_dimensions": None, "shippable": None, "statement_descriptor": None,
            "tax_code": None, "type": "service", "unit_label": p.get("unit_label"), "updated": ts(self.now),
            "url": None})

    def _create_price(self, p: dict) -> dict:
        require(p, "currency")
        if p.get("product_data"):
            product = self._create_product(p["product_data"])
        else:
            require(p, "product")
            product = self._find("product", p["product"], param="product")
        if p.get("unit_amount") in (None, "") and p.get("unit_amount_decimal") in (None, ""):
            raise StripeError(400, "Missing required param: unit_amount.", code="parameter_missing",
                              param="unit_amount")
        recurring = None
        if p.get("recurring"):
            given = p["recurring"]
            require(given, "interval")
            usage = given.get("usage_type") or "licensed"
            if usage == "metered" and not given.get("meter"):
                raise StripeError(400, "Metered prices must be backed by a meter: pass recurring[meter].",
                                  param="recurring[meter]")
            if given.get("meter"):
                self._find("billing.meter", given["meter"], "billing meter", "recurring[meter]")
            recurring = {"interval": given["interval"], "interval_count": as_int(given, "interval_count", 1),
                         "meter": given.get("meter"), "trial_period_days": as_int(given, "trial_period_days"),
                         "usage_type": usage}
        lookup_key = p.get("lookup_key") or None
        self._claim_lookup_key(lookup_key, p.get("transfer_lookup_key") == "true")
        unit = as_int(p, "unit_amount")
        return self._store({
            "id": new_id("price_"), "object": "price", "active": p.get("active") != "false",
            "billing_scheme": "per_unit", "created": ts(self.now), "currency": p["currency"].lower(),
            "custom_unit_amount": None, "livemode": False, "lookup_key": lookup_key,
            "metadata": dict(p.get("metadata") or {}), "nickname": p.get("nickname"), "product": product["id"],
            "recurring": recurring, "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None,
            "type": "recurring" if recurring else "one_time", "unit_amount": unit,
            "unit_amount_decimal": p.get("unit_amount_decimal") or (str(unit) if unit is not None else None)})

    def _claim_lookup_key(self, lookup_key: str | None, transfer: bool) -> None:
        if not lookup_key:
            return
        holder = next((x for x in self._all("price") if x["lookup_key"] == lookup_key), None)
        if holder is not None and not transfer:
            raise StripeError(400, f"A price ({holder['id']}) already uses the lookup key `{lookup_key}`. Pass "
                                   "`transfer_lookup_key=true` to move it to the new price.", param="lookup_key")
        if holder is not None:
            holder["lookup_key"] = None

    def _update_price(self, p: dict, ident: str) -> dict:
        price = self._find("price", ident)
        if "lookup_key" in p and p["lookup_key"] != price["lookup_key"]:
            self._claim_lookup_key(p["lookup_key"] or None, p.get("transfer_lookup_key") == "true")
            price["lookup_key"] = p["lookup_key"] or None
        for name in ("nickname",):
            if name in p:
                price[name] = p[name] or None
        if "active" in p:
            price["active"] = p["active"] == "true"
        if "metadata" in p:
            merge_metadata(price, p["metadata"])
        return price

    def _list_prices(self, p: dict) -> dict:
        prices = self._all("price")
        keys = p.get("lookup_keys")
        if keys is not None:
            keys = keys if isinstance(keys, list) else [keys]
            prices = [x for x in prices if x["lookup_key"] in keys]
        if p.get("product"):
            prices = [x for x in prices if x["product"] == p["product"]]
        if p.get("active") in ("true", "false"):
            prices = [x for x in prices if x["active"] == (p["active"] == "true")]
        return self._list(prices, p, "/v1/prices")

    def _create_meter(self, p: dict) -> dict:
        require(p, "display_name", "event_name")
        if any(m["event_name"] == p["event_name"] and m["status"] == "active" for m in self._all("billing.meter")):
            raise StripeError(400, f"An active meter with event_name `{p['event_name']}` already exists.",
                              param="event_name")
        formula = (p.get("default_aggregation") or {}).get("formula")
        if not formula:
            raise StripeError(400, "Missing required param: default_aggregation[formula].",
                              code="parameter_missing", param="default_aggregation[formula]")
        mapping = p.get("customer_mapping") or {}
        return self._store({
            "id": new_id("mtr_test_", 28), "object": "billing.meter", "created": ts(self.now),
            "customer_mapping": {"event_payload_key": mapping.get("event_payload_key") or "stripe_customer_id",
                                 "type": mapping.get("type") or "by_id"},
            "default_aggregation": {"formula": formula}, "display_name": p["display_name"],
            "event_name": p["event_name"], "event_time_window": p.get("event_time_window"), "livemode": False,
            "status": "active", "status_transitions": {"deactivated_at": None}, "updated": ts(self.now),
            "value_settings": {"event_payload_key": (p.get("value_settings") or {}).get("event_payload_key")
                               or "value"}})

    def _create_meter_event(self, p: dict) -> dict:
        require(p, "event_name")
        if not isinstance(p.get("payload"), dict) or not p["payload"]:
            raise StripeError(400, "Missing required param: payload.", code="parameter_missing", param="payload")
        now = ts(self.now)
        stamp = as_int(p, "timestamp", now)
        if stamp < ts(self.now - timedelta(days=35)):
            raise StripeError(400, "Timestamp must be within the past 35 calendar days.", param="timestamp",
                              code="timestamp_too_far_in_past")
        if stamp > now + 300:
            raise StripeError(400, "Timestamp must not be more than 5 minutes in the future.", param="timestamp",
                              code="timestamp_in_future")
        identifier = p.get("identifier") or new_id("", 36)
        if any(e["identifier"] == identifier for e in self.state.meter_events):
            raise StripeError(400, f"An event already exists with identifier {identifier}.", param="identifier",
                              should_retry=False)
        event = {"object": "billing.meter_event", "created": now, "event_name": p["event_name"],
                 "identifier": identifier, "livemode": False, "payload": dict(p["payload"]), "timestamp": stamp}
        self.state.meter_events.append(event)
        return event

    def _event_summaries(self, p: dict, ident: str) -> dict:
        meter = self._find("billing.meter", ident, "billing meter")
        require(p, "customer", "start_time", "end_time")
        start, end = as_int(p, "start_time"), as_int(p, "end_time")
        for name, value in (("start_time", start), ("end_time", end)):
            if value % 60:
                raise StripeError(400, f"{name} must be aligned with minute boundaries.", param=name)
        if end <= start:
            raise StripeError(400, "end_time must be after start_time.", param="end_time")
        window = SECONDS.get(p.get("value_grouping_window") or "", end - start)
        summaries = []
        for lower in range(start, end, window):
            upper = min(lower + window, end)
            summaries.append({"id": new_id("mtrusg_test_", 24), "object": "billing.meter_event_summary",
                              "aggregated_value": self._usage(meter, p["customer"], lower, upper),
                              "end_time": upper, "livemode": False, "meter": meter["id"], "start_time": lower})
        return self._list(list(reversed(summaries)), p, f"/v1/billing/meters/{ident}/event_summaries")

    def _create_checkout(self, p: dict) -> dict:
        require(p, "mode")
        if p["mode"] != "subscription":
            raise StripeError(400, "This fake only serves mode=subscription.", param="mode")
        require(p, "success_url")
        lines = p.get("line_items") or []
        if not lines:
            raise StripeError(400, "Missing required param: line_items.", code="parameter_missing",
                              param="line_items")
        items, total = [], 0
        for n, line in enumerate(lines):
            price = self._find("price", line.get("price") or "", param=f"line_items[{n}][price]")
            if not price.get("recurring"):
                raise StripeError(400, "In subscription mode every line item needs a recurring price.",
                                  param=f"line_items[{n}][price]")
            first = self._find("price", lines[0].get("price") or "")["recurring"] or {}
            if (price["recurring"]["interval"], price["recurring"]["interval_count"]) != (
                    first.get("interval"), first.get("interval_count")):
                # Stripe's classic billing mode: one billing interval per subscription
                raise StripeError(400, "Currency and interval fields must match across all plans on this "
                                       "subscription. Found mismatch in interval field.",
                                  param=f"line_items[{n}][price]")
            metered = self._metered(price)
            if metered and line.get("quantity"):
                raise StripeError(400, "Quantity should not be specified where usage_type is `metered`.",
                                  param=f"line_items[{n}][quantity]")
            qty = None if metered else as_int(line, "quantity", 1)
            amount = 0 if metered else int(self._unit(price) * qty)
            total += amount
            items.append({"id": new_id("li_"), "object": "item", "amount_discount": 0, "amount_subtotal": amount,
                          "amount_tax": 0, "amount_total": amount, "currency": price["currency"],
                          "description": self._product_name(price), "price": copy.deepcopy(price),
                          "quantity": qty})
        customer = self._find("customer", p["customer"], param="customer") if p.get("customer") else None
        data = p.get("subscription_data") or {}
        trial = as_int(data, "trial_period_days", 0)
        session_id = new_id("cs_test_a1", 56)
        self.state.checkout[session_id] = {"trial_period_days": trial, "metadata": dict(data.get("metadata") or {})}
        return self._store({
            "id": session_id, "object": "checkout.session", "adaptive_pricing": None, "after_expiration": None,
            "allow_promotion_codes": p.get("allow_promotion_codes") == "true",
            "amount_subtotal": total, "amount_total": 0 if trial else total,
            "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
            "billing_address_collection": p.get("billing_address_collection"),
            "cancel_url": p.get("cancel_url"), "client_reference_id": p.get("client_reference_id"),
            "client_secret": None, "collected_information": None, "consent": None, "consent_collection": None,
            "created": ts(self.now), "currency": "usd", "custom_fields": [], "custom_text": {
                "after_submit": None, "shipping_address": None, "submit": None, "terms_of_service_acceptance": None},
            "customer": customer["id"] if customer else None, "customer_account": None,
            "customer_creation": None if customer else "always", "customer_details": None,
            "customer_email": p.get("customer_email"), "discounts": [],
            "expires_at": ts(self.now + timedelta(hours=24)), "invoice": None, "invoice_creation": None,
            "line_items": {"object": "list", "data": items, "has_more": False,
                           "url": f"/v1/checkout/sessions/{session_id}/line_items"},
            "livemode": False, "locale": p.get("locale"), "metadata": dict(p.get("metadata") or {}),
            "mode": "subscription", "payment_intent": None, "payment_link": None,
            "payment_method_collection": "always", "payment_method_types": ["card"],
            "payment_status": "unpaid", "recovered_from": None, "setup_intent": None, "status": "open",
            "submit_type": None, "subscription": None, "success_url": p["success_url"], "ui_mode": "hosted",
            "url": f"{self.url}/pay/checkout/{session_id}"})

    def _expire_checkout(self, p: dict, ident: str) -> dict:
        session = self._find("checkout.session", ident, "checkout.session")
        if session["status"] != "open":
            raise StripeError(400, "Only Checkout Sessions with a status in [\"open\"] can be expired.")
        session["status"] = "expired"
        return session

    def _create_portal(self, p: dict) -> dict:
        require(p, "customer")
        customer = self._find("customer", p["customer"], param="customer")
        session_id = new_id("bps_")
        return self._store({
            "id": session_id, "object": "billing_portal.session", "configuration": new_id("bpc_"),
            "created": ts(self.now), "customer": customer["id"], "customer_account": None, "flow": None,
            "livemode": False, "locale": p.get("locale"), "on_behalf_of": None, "return_url": p.get("return_url"),
            "url": f"{self.url}/pay/portal/{session_id}"})

    def _list_subscriptions(self, p: dict) -> dict:
        subs = self._all("subscription")
        if p.get("customer"):
            subs = [s for s in subs if s["customer"] == p["customer"]]
        if p.get("price"):
            subs = [s for s in subs if any(i["price"]["id"] == p["price"] for i in s["items"]["data"])]
        status = p.get("status")
        if status is None:
            subs = [s for s in subs if s["status"] not in ("canceled", "incomplete_expired")]
        elif status == "ended":
            subs = [s for s in subs if s["status"] in ("canceled", "incomplete_expired")]
        elif status != "all":
            subs = [s for s in subs if s["status"] == status]
        return self._list(subs, p, "/v1/subscriptions")

    def _delete_subscription(self, p: dict, ident: str) -> dict:
        sub = self._find("subscription", ident)
        if sub["status"] == "canceled":
            raise StripeError(404, f"No such subscription: '{ident}'", code="resource_missing", param="id")
        sub["canceled_at"] = ts(self.now)
        sub["cancellation_details"] = {"comment": (p.get("cancellation_details") or {}).get("comment"),
                                       "feedback": (p.get("cancellation_details") or {}).get("feedback"),
                                       "reason": "cancellation_requested"}
        self._cancel_now(sub)
        return sub

    def _list_invoices(self, p: dict) -> dict:
        invoices = self._all("invoice")
        if p.get("customer"):
            invoices = [i for i in invoices if i["customer"] == p["customer"]]
        if p.get("subscription"):
            invoices = [i for i in invoices if self._invoice_sub(i) == p["subscription"]]
        if p.get("status"):
            invoices = [i for i in invoices if i["status"] == p["status"]]
        return self._list(invoices, p, "/v1/invoices")

    def _create_invoice_item(self, p: dict) -> dict:
        require(p, "customer")
        customer = self._find("customer", p["customer"], param="customer")
        price = self._find("price", p["price"], param="price") if p.get("price") else None
        if price is None:
            require(p, "amount", "currency")
        qty = as_int(p, "quantity", 1)
        amount = as_int(p, "amount") if price is None else int(self._unit(price) * qty)
        now = ts(self.now)
        return self._store({
            "id": new_id("ii_"), "object": "invoiceitem", "amount": amount,
            "currency": (p.get("currency") or "usd").lower(), "customer": customer["id"], "customer_account": None,
            "date": now, "description": p.get("description"), "discountable": True, "discounts": [],
            "invoice": p.get("invoice"), "livemode": False, "metadata": dict(p.get("metadata") or {}),
            "net_amount": amount, "parent": None, "period": {"end": now, "start": now},
            "pricing": {"type": "price_details", "price_details": {"price": price["id"], "product": price["product"]},
                        "unit_amount_decimal": str(self._unit(price))} if price else None,
            "proration": False, "proration_details": {"credited_items": None}, "quantity": qty, "tax_rates": [],
            "test_clock": None})

    def _delete_invoice_item(self, p: dict, ident: str) -> dict:
        item = self._find("invoiceitem", ident)
        invoice = self.state.objects.get(item["invoice"] or "")
        if invoice is not None and invoice["status"] != "draft":
            raise StripeError(400, "You can't delete an invoice item that is attached to a finalized invoice.")
        del self.state.objects[ident]
        return {"id": ident, "object": "invoiceitem", "deleted": True}

    def _create_invoice(self, p: dict) -> dict:
        require(p, "customer")
        customer = self._find("customer", p["customer"], param="customer")
        method = p.get("collection_method") or "charge_automatically"
        if method == "send_invoice" and not (p.get("days_until_due") or p.get("due_date")):
            raise StripeError(400, "Missing required param: days_until_due.", code="parameter_missing",
                              param="days_until_due")
        behavior = p.get("pending_invoice_items_behavior") or "exclude"
        pending = self._pending_items(customer["id"], None) if behavior == "include" else []
        invoice = self._new_invoice(customer, self._lines_for_items(pending, None), billing_reason="manual",
                                    metadata=p.get("metadata") or {}, collection_method=method,
                                    auto_advance=p.get("auto_advance") == "true", description=p.get("description"))
        for ii in pending:
            ii["invoice"] = invoice["id"]
        if method == "send_invoice":
            days = as_int(p, "days_until_due", 0)
            invoice["due_date"] = as_int(p, "due_date") or ts(self.now + timedelta(days=days))
        return invoice

    def _finalize_invoice(self, p: dict, ident: str) -> dict:
        invoice = self._find("invoice", ident)
        if invoice["status"] != "draft":
            raise StripeError(400, "This invoice is already finalized, you can't re-finalize a non-draft "
                                   "invoice.", code="invoice_not_editable")
        if "auto_advance" in p:
            invoice["auto_advance"] = p["auto_advance"] == "true"
        self._finalize(invoice)
        return invoice

    def _pay_invoice(self, p: dict, ident: str) -> dict:
        invoice = self._find("invoice", ident)
        if invoice["status"] == "paid":
            raise StripeError(400, "Invoice is already paid.")
        if invoice["status"] == "draft":
            self._finalize(invoice)
        if invoice["status"] == "open" and not self._attempt(invoice):
            raise StripeError(402, "Your card was declined.", kind="card_error", code="card_declined",
                              decline_code="generic_decline")
        return invoice

    def _list_payment_methods(self, p: dict) -> dict:
        methods = self._all("payment_method")
        if p.get("customer"):
            methods = [m for m in methods if m["customer"] == p["customer"]]
        if p.get("type"):
            methods = [m for m in methods if m["type"] == p["type"]]
        return self._list(methods, p, "/v1/payment_methods")

    def _get_event(self, p: dict, ident: str) -> dict:
        event = next((e for e in self.state.events if e["id"] == ident), None)
        if event is None:
            raise missing("event", ident)
        return event

"""Webhook endpoints: managing them, their signed JSON envelope (or Slack
text), sending one delivery, and what repeated failure does to an endpoint.

Sending policy (docs/API.md, "Webhooks"):
- 2xx is success; nothing else is (redirects are not followed).
- Every other answer, a timeout or a connection error is retried on the
  webhook backoff schedule (services.notifications.deliveries.BACKOFF) — 4xx included,
  because receivers answer 404/401/400 for a while during a deploy or a
  secret rotation, and the schedule and auto-disable bound the cost — except
  410 Gone, the receiver's way of saying it is gone for good.
- A refused address (services.notifications.webhook_urls), an invalid URL or a deleted
  endpoint is not retried: retrying cannot help. A host that does not
  resolve is retried (DNS may answer later).
- Each failed attempt counts towards CG_WEBHOOK_DISABLE_AFTER consecutive
  failures, after which the endpoint is turned off (`after_attempt`).
- An endpoint turned off (by an admin or by auto-disable) gets nothing more,
  even a delivery a worker had already claimed: it fails without being sent
  and without counting as a failure. Test events and manual redeliveries are
  the exception: someone asked for them, on an inactive endpoint too.
- One attempt lasts at most `attempt_cap()` seconds in all (3 × the socket
  timeout, at most a minute), well within the claim's lease, however slowly
  the receiver drips its answer.
- No error text recorded or sent names the endpoint's path or query (a Slack
  URL is itself a secret): `redact` keeps scheme and host only.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import requests
from flask import current_app
from peewee import fn

from costguardian import clock
from costguardian import crypto
from costguardian.db import write_transaction
from costguardian.models import Delivery, DeliveryAttempt, WebhookEndpoint
from costguardian.services.team import audit
from costguardian.services.notifications import types
from costguardian.services.notifications import webhook_urls
from costguardian.services.actor import Actor
from costguardian.services.notifications.deliveries import PENDING, AttemptResult
from costguardian.services.errors import RuleViolation, ValidationError

SIGNATURE_HEADER = "X-CostGuardian-Signature"
USER_AGENT = "CostGuardian-Webhooks/1"
TIMEOUT_SECONDS = 10
MAX_ATTEMPT_SECONDS = 60  # one attempt in all, whatever the timeout (the claim lease is 5 minutes)
TEST_EVENT = "system.test"
TURNED_OFF = "Not sent: the endpoint is turned off."
SECRET_PREFIX = "whsec_"
EXCERPT_CHARS = 500
KINDS = {"json": "JSON, signed", "slack": "Slack-compatible"}
ALL_TYPES = "*"
MAX_NAME = 120
PER_PAGE = 20
LOG_STATUSES = ("queued", "sending", "retrying", "sent", "failed", "disabled")
REDELIVERABLE = ("sent", "failed", "disabled")


@dataclass(frozen=True)
class NewSecret:
    endpoint: WebhookEndpoint
    secret: str  # shown once, stored only encrypted


# --- the message -------------------------------------------------------------------

def envelope(event_id: str, etype, org, payload: dict, created_at) -> dict:
    return {"id": event_id, "type": etype.key, "created_at": created_at.replace(microsecond=0).isoformat() + "Z",
            "organization": {"id": org.id, "slug": org.slug, "name": org.name}, "data": payload}


def body_for(endpoint: WebhookEndpoint, event_id, etype, org, payload, created_at, *, title="", text="", link="") -> str:
    """The exact bytes (as text) this endpoint receives for one event."""
    if endpoint.kind == "slack":
        return json.dumps({"text": slack_text(title, text, link)})
    return json.dumps(envelope(event_id, etype, org, payload, created_at), separators=(",", ":"), sort_keys=True)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(title: str, text: str, link: str = "") -> str:
    """Slack's mrkdwn: the title in bold, the body, and a link into the app
    when it has a public address (CG_BASE_URL)."""
    message = f"*{_slack_escape(title)}*"
    if text:
        message += f"\n{_slack_escape(text)}"
    base = current_app.config.get("CG_BASE_URL")
    if link and base and link.startswith("/"):
        message += f"\n<{base.rstrip('/')}{link}|Open in Cost Guardian>"
    return message


def sign(secret: str, timestamp: int, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def redacted_url(url: str) -> str:
    """scheme://host[:port] and "/…" for any path: safe for audit rows and
    notices (a Slack incoming-webhook URL is itself a secret)."""
    try:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    except ValueError:
        return "(invalid URL)"
    return origin + ("/…" if parts.path.strip("/") or parts.query else "")


def redact(text: str, url: str) -> str:
    """`text` (an error message) without the URL's path and query: the whole
    URL becomes `redacted_url(url)`, the path (with its query) alone "/…" —
    as written, percent-encoded (as requests sends it) or decoded."""
    if not text or not url:
        return text
    forms = {url, requests.utils.requote_uri(url), unquote(url)}
    try:
        for form in list(forms):
            parts = urlsplit(form)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            forms.add(path)
            forms.add(parts.path)
    except ValueError:
        pass
    replacements = []
    for form in forms:
        if form.startswith("/") and not form.strip("/"):
            continue  # a bare "/" says nothing, and is everywhere
        if form.strip():
            replacements.append((form, redacted_url(url) if "://" in form else "/…"))
    for form, replacement in sorted(replacements, key=lambda pair: -len(pair[0])):  # longest first
        text = text.replace(form, replacement)
    return text


# --- endpoints ---------------------------------------------------------------------

def endpoints_of(org) -> list[WebhookEndpoint]:
    """The organization's endpoints by name, each with `last_delivery` (or None)."""
    endpoints = list(WebhookEndpoint.in_org(org).order_by(fn.LOWER(WebhookEndpoint.name), WebhookEndpoint.id))
    latest_ids = (Delivery.select(fn.MAX(Delivery.id))
                  .where(Delivery.organization == org, Delivery.channel == "webhook",
                         Delivery.endpoint.is_null(False))
                  .group_by(Delivery.endpoint))
    latest = {d.endpoint_id: d for d in Delivery.select().where(Delivery.id.in_(latest_ids))}
    for endpoint in endpoints:
        endpoint.last_delivery = latest.get(endpoint.id)
    return endpoints


def _normalized_types(event_types) -> str:
    chosen = [t.strip() for t in (event_types or []) if t and t.strip()]
    if ALL_TYPES in chosen:
        return ALL_TYPES
    allowed = [t.key for t in types.webhook_types()]
    unknown = [t for t in chosen if t not in allowed]
    if unknown:
        raise ValidationError({"event_types": f"Unknown event type: {', '.join(unknown)}."})
    if not chosen:
        raise ValidationError({"event_types": "Choose at least one event type, or all of them."})
    return ",".join(t for t in allowed if t in chosen)


def _validated(name, url, kind, event_types) -> dict:
    errors, fields = {}, {}
    name = (name or "").strip()
    if not name:
        errors["name"] = "Name the endpoint after what receives it, e.g. \"Ops alerts\"."
    elif len(name) > MAX_NAME:
        errors["name"] = f"Use at most {MAX_NAME} characters."
    fields["name"] = name
    try:
        fields["url"] = webhook_urls.check_url(url)
    except (ValueError, webhook_urls.ForbiddenAddress, webhook_urls.HostNotFound) as exc:
        errors["url"] = str(exc)
    if kind not in KINDS:
        errors["kind"] = "Choose signed JSON or Slack-compatible."
    fields["kind"] = kind
    try:
        fields["event_types"] = _normalized_types(event_types)
    except ValidationError as exc:
        errors.update(exc.errors)
    if errors:
        raise ValidationError(errors)
    return fields


def create_endpoint(org, actor: Actor, name: str, url: str, kind: str = "json", event_types=(ALL_TYPES,),
                    is_active: bool = True) -> NewSecret:
    from costguardian.services.billing import limits

    refusal = limits.feature_refusal(org, "webhooks")
    if refusal:
        raise ValidationError({"": refusal})
    fields = _validated(name, url, kind, event_types)
    secret = new_secret()
    endpoint = WebhookEndpoint.create(organization=org, secret_encrypted=crypto.encrypt(secret),
                                      is_active=bool(is_active), created_by=actor.user, **fields)
    audit.record(actor, "webhook.created", org=org, target=endpoint, name=endpoint.name,
                 url=redacted_url(endpoint.url), kind=endpoint.kind, event_types=endpoint.event_types,
                 active=endpoint.is_active)
    return NewSecret(endpoint, secret)


def update_endpoint(endpoint: WebhookEndpoint, actor: Actor, name: str, url: str, kind: str, event_types,
                    is_active: bool) -> WebhookEndpoint:
    """Change an endpoint. Turning it off holds its pending deliveries (they
    become `disabled`, and can be redelivered); turning it on again clears its
    failure count."""
    fields = _validated(name, url, kind, event_types)
    changed = sorted(k for k, v in fields.items() if getattr(endpoint, k) != v)
    reactivated = bool(is_active) and not endpoint.is_active
    deactivated = endpoint.is_active and not is_active
    if bool(is_active) != endpoint.is_active:
        changed.append("is_active")
    for key, value in fields.items():
        setattr(endpoint, key, value)
    endpoint.is_active = bool(is_active)
    if reactivated:
        endpoint.consecutive_failures, endpoint.disabled_reason = 0, ""
    endpoint.updated_at = clock.now()
    with write_transaction():
        endpoint.save()
        if deactivated:  # what was waiting for it is not sent either
            _hold_pending(endpoint)
    if changed:
        audit.record(actor, "webhook.updated", org=endpoint.organization_id, target=endpoint, changed=changed,
                     url=redacted_url(endpoint.url), kind=endpoint.kind, event_types=endpoint.event_types,
                     active=endpoint.is_active)
    return endpoint


def roll_secret(endpoint: WebhookEndpoint, actor: Actor) -> NewSecret:
    """A new signing secret, at once (the old one stops being used)."""
    secret = new_secret()
    endpoint.secret_encrypted, endpoint.updated_at = crypto.encrypt(secret), clock.now()
    endpoint.save()
    audit.record(actor, "webhook.secret_rolled", org=endpoint.organization_id, target=endpoint, name=endpoint.name)
    return NewSecret(endpoint, secret)


def delete_endpoint(endpoint: WebhookEndpoint, actor: Actor) -> None:
    """The endpoint and its delivery log go; the audit row stays."""
    audit.record(actor, "webhook.deleted", org=endpoint.organization_id, target=endpoint, name=endpoint.name,
                 url=redacted_url(endpoint.url))
    endpoint.delete_instance()


def send_test(endpoint: WebhookEndpoint, actor: Actor) -> Delivery:
    """A `system.test` event to this endpoint only (active or not), through the
    queue like any delivery; the result shows in its log."""
    from costguardian.services.notifications import deliveries
    from costguardian.services.notifications.notify import render_text, template_context

    org = endpoint.organization
    etype = types.get(TEST_EVENT)
    sender = actor.user.display_name if actor.user is not None else "Cost Guardian"
    payload = {"sender": sender, "message": f"This is a test of the webhook endpoint “{endpoint.name}”."}
    context = template_context(org, payload)
    now = clock.now()
    event_id = uuid.uuid4().hex
    body = body_for(endpoint, event_id, etype, org, payload, now,
                    title=render_text(etype.title, context).strip(), text=render_text(etype.body, context).strip())
    delivery = Delivery.create(organization=org, channel="webhook", event_id=event_id, event_type=etype.key,
                               endpoint=endpoint, recipient=endpoint.url, payload=body, status="queued",
                               created_at=now, next_attempt_at=now)
    audit.record(actor, "webhook.tested", org=org, target=endpoint, name=endpoint.name, delivery=delivery.id)
    deliveries.enqueue(delivery)
    return delivery


def redeliver(delivery: Delivery, actor: Actor) -> Delivery:
    """Send a finished delivery again, as a new delivery with the same body."""
    from costguardian.services.notifications import deliveries

    if delivery.channel != "webhook" or delivery.endpoint_id is None:
        raise RuleViolation("Only a webhook delivery can be redelivered here.")
    if delivery.status not in REDELIVERABLE:
        raise RuleViolation("This delivery is still in progress; wait for it to be sent or to fail.")
    copy = deliveries.redeliver(delivery)
    endpoint = delivery.endpoint
    audit.record(actor, "webhook.redelivered", org=delivery.organization_id, target=endpoint, name=endpoint.name,
                 delivery=delivery.id, new_delivery=copy.id, event_type=delivery.event_type)
    return copy


# --- the delivery log --------------------------------------------------------------

def log(endpoint: WebhookEndpoint, status: str = "", page: int = 1):
    """One page of the endpoint's deliveries, newest first: (rows, has_more);
    each row has `attempt_rows` (its DeliveryAttempts in order)."""
    query = Delivery.in_org(endpoint.organization_id).where(Delivery.endpoint == endpoint)
    if status in LOG_STATUSES:
        query = query.where(Delivery.status == status)
    rows = list(query.order_by(Delivery.created_at.desc(), Delivery.id.desc())
                .offset((max(page, 1) - 1) * PER_PAGE).limit(PER_PAGE + 1))
    rows, has_more = rows[:PER_PAGE], len(rows) > PER_PAGE
    by_delivery: dict[int, list] = {d.id: [] for d in rows}
    if rows:
        for attempt in (DeliveryAttempt.select().where(DeliveryAttempt.delivery.in_(list(by_delivery)))
                        .order_by(DeliveryAttempt.delivery, DeliveryAttempt.number, DeliveryAttempt.id)):
            by_delivery[attempt.delivery_id].append(attempt)
    for delivery in rows:
        delivery.attempt_rows = by_delivery[delivery.id]
        delivery.last_attempt = delivery.attempt_rows[-1] if delivery.attempt_rows else None
        delivery.pretty_payload = _pretty(delivery.payload)
    return rows, has_more


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


def has_pending(endpoint: WebhookEndpoint) -> bool:
    return (Delivery.in_org(endpoint.organization_id)
            .where(Delivery.endpoint == endpoint, Delivery.status.in_(PENDING + ("sending",))).exists())


# --- sending -----------------------------------------------------------------------

def _refused(message: str) -> AttemptResult:
    return AttemptResult(ok=False, error=message, retryable=False)


def attempt_cap() -> float:
    """The most one attempt may take, from connecting to the last byte read."""
    timeout = current_app.config.get("CG_WEBHOOK_TIMEOUT") or TIMEOUT_SECONDS
    return min(round(float(timeout) * 3, 3), MAX_ATTEMPT_SECONDS)


def asked_for(delivery) -> bool:
    """Whether someone asked for this delivery by hand — a test event, or a
    redelivery — which then goes to an inactive endpoint too. Neither has a
    mark of its own on the Delivery: a test event is its event type
    (`send_test`), a redelivery is a second delivery of the same event to
    the same endpoint (`deliveries.redeliver` copies the event id; `notify`
    sends an event once per endpoint)."""
    if delivery.event_type == TEST_EVENT:
        return True
    return (Delivery.select(Delivery.id)
            .where(Delivery.endpoint == delivery.endpoint_id, Delivery.event_id == delivery.event_id,
                   Delivery.id < delivery.id).exists())


def send(delivery) -> AttemptResult:
    endpoint = WebhookEndpoint.get_or_none(WebhookEndpoint.id == delivery.endpoint_id)
    if endpoint is None:
        return _refused("The endpoint was deleted.")
    if not endpoint.is_active and not asked_for(delivery):  # turned off since the delivery was claimed
        return _refused(TURNED_OFF)
    try:
        result = _post(delivery, endpoint)
    except Exception as exc:  # an unexpected library error: retried, but its text is redacted here too
        current_app.logger.exception("webhook delivery %s failed unexpectedly", delivery.id)
        result = AttemptResult(ok=False, error=f"{type(exc).__name__}: {exc}")
    result.error = redact(result.error, endpoint.url)[:2000]
    return result


def _post(delivery, endpoint: WebhookEndpoint) -> AttemptResult:
    try:  # again at send time: the host may resolve elsewhere since it was saved
        url = webhook_urls.check_url(endpoint.url)
    except (ValueError, webhook_urls.ForbiddenAddress) as exc:
        return _refused(f"Refused: {exc}")
    except webhook_urls.HostNotFound as exc:  # DNS may answer next time
        return AttemptResult(ok=False, error=str(exc))
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-CostGuardian-Event": delivery.event_type, "X-CostGuardian-Delivery": str(delivery.id)}
    if endpoint.kind != "slack":
        headers[SIGNATURE_HEADER] = sign(crypto.decrypt(endpoint.secret_encrypted), int(clock.now_aware().timestamp()), delivery.payload)
    timeout = current_app.config.get("CG_WEBHOOK_TIMEOUT") or TIMEOUT_SECONDS
    cap = attempt_cap()
    started = time.monotonic()
    with webhook_urls.Deadline(cap) as deadline, webhook_urls.session(deadline) as http:
        try:
            response = http.post(url, data=delivery.payload.encode(), headers=headers, timeout=timeout,
                                 allow_redirects=False, stream=True)  # the status and headers only
        except webhook_urls.ForbiddenAddress as exc:
            return _refused(f"Refused: {exc}")
        except requests.RequestException as exc:
            if deadline.expired:  # the deadline shut the connection: whatever broke, that is why
                return AttemptResult(ok=False, error=f"Timed out: no complete answer within {cap:g} s.",
                                     latency_ms=_since(started))
            if isinstance(exc, requests.Timeout):
                return AttemptResult(ok=False, error=f"Timed out after {timeout} s.", latency_ms=_since(started))
            return AttemptResult(ok=False, error=f"{type(exc).__name__}: {exc}", latency_ms=_since(started))
        with response:
            try:
                head = next(response.iter_content(4 * EXCERPT_CHARS), b"")  # never the whole of a huge body
            except requests.RequestException as exc:
                if not deadline.expired:
                    return AttemptResult(ok=False, status_code=response.status_code, latency_ms=_since(started),
                                         error=f"{type(exc).__name__}: {exc}")
                head = b""  # the status came in time, the body did not: the status decides
    latency = _since(started)
    code = response.status_code
    excerpt = head.decode(response.encoding or "utf-8", errors="replace")[:EXCERPT_CHARS]
    if 200 <= code < 300:
        return AttemptResult(ok=True, status_code=code, latency_ms=latency, response_excerpt=excerpt)
    error = f"HTTP {code}"
    if 300 <= code < 400:
        error += " (redirects are not followed; use the final URL)"
    return AttemptResult(ok=False, status_code=code, latency_ms=latency, response_excerpt=excerpt, error=error,
                         retryable=code != 410)


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def after_attempt(delivery, result) -> None:
    """Count consecutive failures per endpoint; a success clears the count,
    CG_WEBHOOK_DISABLE_AFTER failures in a row turn the endpoint off."""
    if delivery.endpoint_id is None:
        return
    query = WebhookEndpoint.id == delivery.endpoint_id
    if result.error == TURNED_OFF:  # not sent at all: says nothing about the receiver
        return
    if result.ok:
        WebhookEndpoint.update(consecutive_failures=0).where(query, WebhookEndpoint.consecutive_failures != 0).execute()
        return
    WebhookEndpoint.update(consecutive_failures=WebhookEndpoint.consecutive_failures + 1).where(query).execute()
    endpoint = WebhookEndpoint.get_or_none(query)
    limit = int(current_app.config.get("CG_WEBHOOK_DISABLE_AFTER") or 10)
    if endpoint is not None and endpoint.is_active and endpoint.consecutive_failures >= limit:
        disable(endpoint, result.error or "no answer")


def disable(endpoint: WebhookEndpoint, last_error: str) -> bool:
    """Turn a failing endpoint off: its pending deliveries are marked disabled,
    the change is audited and the organization's admins are told. Returns
    False when another worker got there first."""
    failures = endpoint.consecutive_failures
    last_error = redact(last_error, endpoint.url)  # whoever calls: the audit row and the notice show it
    reason = f"Disabled after {failures} failed attempts in a row; last error: {last_error}"[:255]
    now = clock.now()
    with write_transaction():
        turned_off = (WebhookEndpoint.update(is_active=False, disabled_reason=reason, updated_at=now)
                      .where(WebhookEndpoint.id == endpoint.id, WebhookEndpoint.is_active == True)  # noqa: E712
                      .execute())
        if not turned_off:
            return False
        held = _hold_pending(endpoint)
        audit.record(Actor.system(), "webhook.disabled", org=endpoint.organization_id, target=endpoint,
                     name=endpoint.name, failures=failures, error=last_error[:200], pending_disabled=held)
    _tell_admins(endpoint, failures, last_error)
    return True


def _hold_pending(endpoint: WebhookEndpoint) -> int:
    """Mark the endpoint's queued and retrying deliveries `disabled`; returns how many."""
    return (Delivery.update(status="disabled", next_attempt_at=None, updated_at=clock.now())
            .where(Delivery.endpoint == endpoint, Delivery.status.in_(PENDING)).execute())


def _tell_admins(endpoint: WebhookEndpoint, failures: int, last_error: str) -> None:
    from costguardian.services.notifications.notify import notify

    try:
        notify(endpoint.organization, "webhook.disabled",
               {"endpoint": endpoint.name, "url": redacted_url(endpoint.url), "failures": failures,
                "error": last_error[:200], "endpoint_id": endpoint.id}, webhooks=False)
    except Exception:  # the endpoint is off either way; a failed notice must not undo that
        current_app.logger.exception("could not notify about disabled webhook %s", endpoint.id)

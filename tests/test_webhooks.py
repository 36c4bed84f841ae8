"""Webhooks: endpoints and their secrets, the signed envelope and Slack body
as a real receiver gets them, retries with backoff, auto-disable, the SSRF
guard, test events, the delivery log and redelivery, and who may do what."""
from __future__ import annotations

import json
import re
import time
from datetime import timedelta

import pytest

from costguardian import clock
from costguardian import crypto
from costguardian.models import AuditLog, Delivery, DeliveryAttempt, Notification, WebhookEndpoint
from costguardian.services.notifications import deliveries, types as notification_types, webhook_urls, webhooks
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.services.notifications.notify import notify
from tests.fakes.webhook_receiver import documented_example, verify_signature
from tests.support import SYSTEM, Client, add_member

SECRET = re.compile(r"whsec_[A-Za-z0-9_-]{43}")
BUDGET = {"budget": "Engineering monthly", "budget_id": 7, "scope": "Department Engineering", "spent_usd": "812.40",
          "limit_usd": "1000.00", "percent": 81, "threshold": 80, "period": "1–30 November 2026"}


def endpoint_for(org, receiver, path="/hook", **kwargs):
    """An endpoint pointing at the receiver, which then checks its signatures."""
    new = webhooks.create_endpoint(org, SYSTEM, kwargs.pop("name", "Ops alerts"), receiver.url(path), **kwargs)
    receiver.secret = new.secret
    return new.endpoint


def form(**overrides) -> dict:
    data = {"name": "Ops alerts", "url": "https://hooks.example.com/cg", "kind": "json", "scope": "all",
            "is_active": "y"}
    data.update(overrides)
    return data


def hooks():
    """Webhook deliveries only (notify also emails people), oldest first."""
    return Delivery.select().where(Delivery.channel == "webhook").order_by(Delivery.id)


def due_now(delivery_id: int) -> None:
    """Bring a retry forward (time passing, without waiting for it)."""
    Delivery.update(next_attempt_at=clock.now() - timedelta(seconds=1)).where(Delivery.id == delivery_id).execute()


def signed_in(app, org, email, role, make_user) -> Client:
    add_member(org, make_user(email), role)
    client = Client(app)
    client.sign_in(email)
    return client


@pytest.fixture
def private_refused(app, monkeypatch):
    """The production default: private addresses are refused."""
    monkeypatch.setitem(app.config, "CG_ALLOW_PRIVATE_WEBHOOKS", False)


# --- endpoints and secrets -----------------------------------------------------------

def test_an_endpoint_gets_a_secret_shown_once_and_stored_encrypted(make_org):
    org = make_org("Acme")
    new = webhooks.create_endpoint(org, SYSTEM, "  Ops alerts ", "https://hooks.example.com/cg?team=ops",
                                   "json", ["budget.exceeded", "budget.threshold"])
    assert SECRET.fullmatch(new.secret)
    stored = WebhookEndpoint.get_by_id(new.endpoint.id)
    assert stored.name == "Ops alerts" and stored.is_active and stored.consecutive_failures == 0
    assert stored.event_types == "budget.threshold,budget.exceeded"  # registry order
    assert new.secret not in stored.secret_encrypted and crypto.decrypt(stored.secret_encrypted) == new.secret
    row = AuditLog.get(AuditLog.action == "webhook.created")
    assert row.target_id == str(stored.id) and row.detail["url"] == "https://hooks.example.com/…"
    assert new.secret not in json.dumps(row.detail) and "team=ops" not in json.dumps(row.detail)


def test_rolling_the_secret_replaces_it(make_org):
    org = make_org("Acme")
    first = webhooks.create_endpoint(org, SYSTEM, "Ops", "https://hooks.example.com/cg")
    second = webhooks.roll_secret(first.endpoint, SYSTEM)
    assert SECRET.fullmatch(second.secret) and second.secret != first.secret
    assert crypto.decrypt(WebhookEndpoint.get_by_id(first.endpoint.id).secret_encrypted) == second.secret
    row = AuditLog.get(AuditLog.action == "webhook.secret_rolled")
    assert second.secret not in json.dumps(row.detail)


@pytest.mark.parametrize("name, url, kind, types, field, message", [
    ("", "https://hooks.example.com/", "json", ["*"], "name", "Name the endpoint"),
    ("x" * 121, "https://hooks.example.com/", "json", ["*"], "name", "at most 120"),
    ("Ops", "", "json", ["*"], "url", "Enter the URL"),
    ("Ops", "ftp://hooks.example.com/", "json", ["*"], "url", "http:// or https://"),
    ("Ops", "hooks.example.com/cg", "json", ["*"], "url", "http:// or https://"),
    ("Ops", "https://user:pw@hooks.example.com/", "json", ["*"], "url", "credentials"),
    ("Ops", "https:///path", "json", ["*"], "url", "host name"),
    ("Ops", "https://hooks.example.com:99999/", "json", ["*"], "url", "not a valid URL"),
    ("Ops", "https://hooks.example.com/" + "a" * 2000, "json", ["*"], "url", "at most 2000"),
    ("Ops", "https://hooks.example.com/", "xml", ["*"], "kind", "signed JSON or Slack"),
    ("Ops", "https://hooks.example.com/", "json", [], "event_types", "at least one"),
    ("Ops", "https://hooks.example.com/", "json", ["webhook.disabled"], "event_types", "Unknown event type"),
    ("Ops", "https://hooks.example.com/", "json", ["nope.nope"], "event_types", "Unknown event type"),
])
def test_endpoint_validation(make_org, name, url, kind, types, field, message):
    org = make_org("Acme")
    with pytest.raises(ValidationError) as raised:
        webhooks.create_endpoint(org, SYSTEM, name, url, kind, types)
    assert message in raised.value.errors[field]
    assert WebhookEndpoint.select().count() == 0


def test_reactivating_an_endpoint_resets_its_failure_count(make_org):
    org = make_org("Acme")
    endpoint = webhooks.create_endpoint(org, SYSTEM, "Ops", "https://hooks.example.com/cg").endpoint
    WebhookEndpoint.update(is_active=False, consecutive_failures=10, disabled_reason="Disabled after 10").execute()
    endpoint = WebhookEndpoint.get_by_id(endpoint.id)
    webhooks.update_endpoint(endpoint, SYSTEM, "Ops", endpoint.url, "json", ["*"], is_active=True)
    endpoint = WebhookEndpoint.get_by_id(endpoint.id)
    assert endpoint.is_active and endpoint.consecutive_failures == 0 and endpoint.disabled_reason == ""
    assert AuditLog.get(AuditLog.action == "webhook.updated").detail["changed"] == ["is_active"]


# --- what the receiver gets ----------------------------------------------------------

def test_an_event_reaches_the_receiver_signed_in_the_documented_envelope(make_org, webhook_receiver):
    org = make_org("Acme")
    endpoint = endpoint_for(org, webhook_receiver)

    sent = notify(org, "budget.threshold", BUDGET)

    [got] = webhook_receiver.received
    assert got.verified is True  # checked with the code block of docs/API.md
    [delivery] = [d for d in sent.deliveries if d.channel == "webhook"]
    envelope = got.json()
    assert set(envelope) == {"id", "type", "created_at", "organization", "data"}
    assert envelope["id"] == sent.event_id and envelope["type"] == "budget.threshold"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", envelope["created_at"])
    assert envelope["organization"] == {"id": org.id, "slug": org.slug, "name": "Acme"}
    assert envelope["data"] == BUDGET
    assert got.body == Delivery.get_by_id(delivery.id).payload.encode()  # byte for byte what was signed
    headers = got.headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "CostGuardian-Webhooks/1"
    assert headers["x-costguardian-event"] == "budget.threshold"
    assert headers["x-costguardian-delivery"] == str(delivery.id)
    t, v1 = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", headers["x-costguardian-signature"]).groups()
    assert abs(int(t) - time.time()) < 60
    assert not verify_signature("whsec_wrong", headers["x-costguardian-signature"], got.body)
    assert not verify_signature(webhook_receiver.secret, headers["x-costguardian-signature"], got.body + b" ")
    stored = Delivery.get_by_id(delivery.id)
    assert stored.status == "sent" and stored.attempts == 1 and stored.response_code == 200
    assert stored.recipient == endpoint.url
    [attempt] = DeliveryAttempt.select().where(DeliveryAttempt.delivery == stored)
    assert attempt.ok and attempt.status_code == 200 and attempt.latency_ms >= 0 and attempt.response_excerpt == "ok"


def test_the_documented_verifier_refuses_old_timestamps_and_garbage():
    body = b'{"id":"x"}'
    now = int(time.time())
    assert verify_signature("s", webhooks.sign("s", now, body.decode()), body)
    assert not verify_signature("s", webhooks.sign("s", now - 301, body.decode()), body)
    assert verify_signature("s", webhooks.sign("s", now - 600, body.decode()), body, tolerance=900)
    for header in ("", "t=abc,v1=00", "v1=" + "0" * 64, "t=1"):
        assert not verify_signature("s", header, body)
    assert "hmac.compare_digest" in documented_example()


def test_the_docs_name_every_event_type_a_webhook_can_receive():
    text = documented_example.__globals__["API_DOC"].read_text()
    section = text[text.index("## Webhooks"):]
    for etype in notification_types.webhook_types():
        assert f"`{etype.key}`" in section, etype.key


def test_endpoints_get_only_the_types_they_chose_and_inactive_ones_nothing(make_org, webhook_receiver):
    org = make_org("Acme")
    endpoint_for(org, webhook_receiver, "/budgets", name="Budgets", event_types=["budget.exceeded"])
    endpoint_for(org, webhook_receiver, "/off", name="Off", is_active=False)

    notify(org, "budget.threshold", BUDGET)
    notify(org, "budget.exceeded", {**BUDGET, "percent": 101})

    assert [(r.path, r.json()["type"]) for r in webhook_receiver.received] == [("/budgets", "budget.exceeded")]


def test_slack_mode_posts_text_without_a_signature(app, make_org, webhook_receiver, monkeypatch):
    monkeypatch.setitem(app.config, "CG_BASE_URL", "https://cg.example.com")
    org = make_org("Acme")
    endpoint_for(org, webhook_receiver, "/slack", kind="slack")
    webhook_receiver.secret = None

    notify(org, "budget.exceeded", {**BUDGET, "budget": "R&D <main>", "spent_usd": "1,012.10"})

    [got] = webhook_receiver.received
    assert got.json() == {"text": "*R&amp;D &lt;main&gt; is over its limit*\n"
                                  "R&amp;D &lt;main&gt; (Department Engineering) has spent $1,012.10, over its limit "
                                  "of $1000.00, for 1–30 November 2026.\n"
                                  "<https://cg.example.com/budgets/7|Open in Cost Guardian>"}
    assert "X-CostGuardian-Signature" not in got.headers
    assert got.headers["X-CostGuardian-Event"] == "budget.exceeded"


def test_a_long_response_is_kept_as_a_500_character_excerpt(make_org, webhook_receiver):
    org = make_org("Acme")
    endpoint_for(org, webhook_receiver)
    webhook_receiver.body = "é" * 5000
    notify(org, "budget.threshold", BUDGET)
    attempt = DeliveryAttempt.get(DeliveryAttempt.delivery == hooks().get())
    assert attempt.response_excerpt == "é" * 500


# --- retries, give up, auto-disable --------------------------------------------------

def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt(make_org, webhook_receiver):
    org = make_org("Acme")
    endpoint = endpoint_for(org, webhook_receiver)
    webhook_receiver.fail_first = 2

    sent = notify(org, "budget.threshold", BUDGET)
    [delivery] = [d for d in sent.deliveries if d.channel == "webhook"]
    first = Delivery.get_by_id(delivery.id)
    assert first.status == "retrying" and first.attempts == 1 and first.response_code == 500
    assert first.last_error == "HTTP 500"
    wait = (first.next_attempt_at - first.updated_at).total_seconds()
    assert wait == pytest.approx(deliveries.BACKOFF["webhook"][0], abs=1)
    assert deliveries.attempt(delivery.id) is None  # not due yet: nothing happens

    due_now(delivery.id)
    assert deliveries.attempt(delivery.id) == "retrying"
    second = Delivery.get_by_id(delivery.id)
    assert (second.next_attempt_at - second.updated_at).total_seconds() == pytest.approx(
        deliveries.BACKOFF["webhook"][1], abs=1)
    assert WebhookEndpoint.get_by_id(endpoint.id).consecutive_failures == 2

    due_now(delivery.id)
    assert deliveries.sweep() == 0  # within the grace its own scheduled task has
    Delivery.update(next_attempt_at=clock.now() - timedelta(minutes=5)).where(Delivery.id == delivery.id).execute()
    assert deliveries.sweep() == 1  # the sweeper sends it (immediate mode)
    third = Delivery.get_by_id(delivery.id)
    assert third.status == "sent" and third.attempts == 3 and third.response_code == 200
    attempts = DeliveryAttempt.select().where(DeliveryAttempt.delivery == delivery.id).order_by(DeliveryAttempt.number)
    assert [a.status_code for a in attempts] == [500, 500, 200]
    assert webhook_receiver.count == 3 and all(r.verified for r in webhook_receiver.received)
    assert {r.json()["id"] for r in webhook_receiver.received} == {sent.event_id}
    assert {r.headers["X-CostGuardian-Delivery"] for r in webhook_receiver.received} == {str(delivery.id)}
    assert WebhookEndpoint.get_by_id(endpoint.id).consecutive_failures == 0  # a success clears the count


def test_410_gone_is_not_retried_and_a_redirect_is_not_followed(make_org, webhook_receiver):
    org = make_org("Acme")
    endpoint_for(org, webhook_receiver)
    webhook_receiver.status, webhook_receiver.body = 410, "gone"
    notify(org, "budget.threshold", BUDGET)
    gone = hooks().get()
    assert gone.status == "failed" and gone.attempts == 1 and gone.next_attempt_at is None

    webhook_receiver.status = 302
    notify(org, "budget.threshold", BUDGET)
    moved = hooks()[-1]
    assert moved.status == "retrying" and "redirects are not followed" in moved.last_error
    assert webhook_receiver.count == 2


def test_an_unreachable_receiver_is_a_retryable_connection_error(make_org):
    from tests.fakes.smtp import free_port

    org = make_org("Acme")
    webhooks.create_endpoint(org, SYSTEM, "Nobody", f"http://127.0.0.1:{free_port()}/hook")
    notify(org, "budget.threshold", BUDGET)
    delivery = hooks().get()
    assert delivery.status == "retrying" and "ConnectionError" in delivery.last_error
    assert delivery.response_code is None


def test_a_slow_receiver_times_out_and_is_retried(app, make_org, webhook_receiver, monkeypatch):
    monkeypatch.setitem(app.config, "CG_WEBHOOK_TIMEOUT", 0.3)
    org = make_org("Acme")
    endpoint_for(org, webhook_receiver)
    webhook_receiver.delay = 1
    notify(org, "budget.threshold", BUDGET)
    delivery = hooks().get()
    assert delivery.status == "retrying" and delivery.last_error == "Timed out after 0.3 s."
    assert DeliveryAttempt.get(DeliveryAttempt.delivery == delivery).latency_ms >= 300


def test_errors_never_carry_the_endpoint_url_path_or_query(app, make_org, make_user, monkeypatch):
    """A Slack-style URL is a secret: connection errors name the URL, so what
    is recorded, audited and told keeps only its scheme and host."""
    from costguardian.models import OutboxMessage
    from tests.fakes.smtp import free_port

    monkeypatch.setitem(app.config, "CG_WEBHOOK_DISABLE_AFTER", 1)
    org = make_org("Acme", owner=make_user("olga@acme.com"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/services/T0CG/B0CG/s3cr3tT0ken?team=s3cr3tTeam"
    endpoint = webhooks.create_endpoint(org, SYSTEM, "Slack ops", url, "slack").endpoint
    notify(org, "budget.threshold", BUDGET)

    delivery = hooks().get()
    assert "ConnectionError" in delivery.last_error and delivery.last_error.startswith("ConnectionError: ")
    attempt = DeliveryAttempt.get(DeliveryAttempt.delivery == delivery)
    off = WebhookEndpoint.get_by_id(endpoint.id)
    assert not off.is_active
    audit = AuditLog.get(AuditLog.action == "webhook.disabled")
    told = list(Notification.select().where(Notification.event_type == "webhook.disabled"))
    mails = list(OutboxMessage.select())
    assert told and mails
    recorded = [delivery.last_error, attempt.error, off.disabled_reason, json.dumps(audit.detail)]
    recorded += [f"{n.title} {n.body} {n.data}" for n in told]
    recorded += [f"{m.subject} {m.text_body} {m.html_body}" for m in mails]
    for text in recorded:
        for secret in ("s3cr3tT0ken", "s3cr3tTeam", "B0CG", "T0CG", "/services"):
            assert secret not in text, (secret, text)
    assert "s3cr3tT0ken" in delivery.recipient  # where it was sent is kept (not shown in errors)


def test_redaction_covers_the_full_url_its_quoted_form_and_its_path(app_ctx):
    url = "https://hooks.example.com:8443/services/T1/B2/sé cret?token=abc"
    text = (f"Error at {url} then /services/T1/B2/s%C3%A9%20cret?token=abc "
            "and /services/T1/B2/sé cret and https://hooks.example.com:8443/services/T1/B2/s%C3%A9%20cret?token=abc")
    scrubbed = webhooks.redact(text, url)
    assert "T1" not in scrubbed and "token" not in scrubbed and "cret" not in scrubbed
    assert scrubbed.startswith("Error at https://hooks.example.com:8443/… then /…")
    assert webhooks.redact("HTTP 500", "https://hooks.example.com/") == "HTTP 500"  # a bare "/" is left alone


def _claimed(delivery_id):
    """The delivery as a worker holds it for an attempt (the claim is taken)."""
    claimed = deliveries._claim(delivery_id)
    assert claimed is not None and claimed.status == "sending"
    return claimed


def test_a_claimed_delivery_is_not_sent_once_its_endpoint_is_turned_off(make_org, webhook_receiver):
    org = make_org("Acme")
    endpoint = endpoint_for(org, webhook_receiver)
    webhook_receiver.fail_first = 1
    notify(org, "budget.threshold", BUDGET)
    delivery = hooks().get()
    assert delivery.status == "retrying" and webhook_receiver.count == 1
    due_now(delivery.id)
    claimed = _claimed(delivery.id)  # a worker takes it ...
    endpoint = WebhookEndpoint.get_by_id(endpoint.id)
    webhooks.update_endpoint(endpoint, SYSTEM, "Ops alerts", endpoint.url, "json", ["*"],
                             is_active=False)  # ... just before the admin turns the endpoint off

    result = webhooks.send(claimed)

    assert not result.ok and not result.retryable and "turned off" in result.error
    assert deliveries.record(claimed, result) == "failed"
    assert webhook_receiver.count == 1  # nothing more was sent
    stored = Delivery.get_by_id(delivery.id)
    assert stored.next_attempt_at is None and "turned off" in stored.last_error
    assert WebhookEndpoint.get_by_id(endpoint.id).consecutive_failures == 1  # a refusal is not the receiver's fault
    assert webhooks.redeliver(stored, SYSTEM).status == "queued"  # by hand it still goes
    assert webhook_receiver.count == 2 and hooks()[-1].status == "sent"


def test_a_delivery_auto_disable_overtook_is_not_sent_either(make_org, webhook_receiver):
    org = make_org("Acme")
    endpoint = endpoint_for(org, webhook_receiver)
    webhook_receiver.fail_first = 1
    notify(org, "budget.threshold", BUDGET)
    due_now(hooks().get().id)
    claimed = _claimed(hooks().get().id)  # a worker takes it, then another worker's failure disables the endpoint
    assert webhooks.disable(WebhookEndpoint.get_by_id(endpoint.id), "HTTP 500")
    result = webhooks.send(claimed)
    assert not result.ok and not result.retryable and webhook_receiver.count == 1
    assert result.error == "Not sent: the endpoint is turned off."


def test_test_events_and_redeliveries_still_go_to_an_inactive_endpoint_when_retried(make_org, webhook_receiver):
    org = make_org("Acme")
    endpoint = endpoint_for(org, webhook_receiver)
    WebhookEndpoint.update(is_active=False).execute()
    endpoint = WebhookEndpoint.get_by_id(endpoint.id)
    webhook_receiver.fail_first = 1
    test = webhooks.send_test(endpoint, SYSTEM)
    assert Delivery.get_by_id(test.id).status == "retrying"
    due_now(test.id)
    assert deliveries.attempt(test.id) == "sent"  # its retry goes out too

    webhook_receiver.status = 410
    WebhookEndpoint.update(is_active=True).execute()
    notify(org, "budget.threshold", BUDGET)
    gone = hooks()[-1]
    assert gone.status == "failed"
    WebhookEndpoint.update(is_active=False).execute()
    webhook_receiver.status, webhook_receiver.fail_first = 200, 1
    copy = webhooks.redeliver(gone, SYSTEM)
    assert Delivery.get_by_id(copy.id).status == "retrying"
    due_now(copy.id)
    assert deliveries.attempt(copy.id) == "sent"
    assert [r.json()["type"] for r in webhook_receiver.received][-2:] == ["budget.threshold"] * 2


class Trickler:
    """A raw HTTP "receiver" that reads the request, then answers one byte at
    a time (each byte well within the read timeout), for `seconds`, then ends
    the answer properly."""

    def __init__(self, in_body: bool, seconds: float = 6.0, every: float = 0.1):
        import socket
        import threading

        self.in_body, self.seconds, self.every = in_body, seconds, every
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(5)
        self.port = self.server.getsockname()[1]
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                self.requests += 1
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                drip = b"X-Slow: " + b"." * 1000
                if self.in_body:
                    conn.sendall(head + b"\r\n")
                deadline = time.monotonic() + self.seconds
                try:
                    for byte in drip:
                        if time.monotonic() > deadline:
                            break
                        conn.sendall(bytes([byte]))
                        time.sleep(self.every)
                    conn.sendall(b"\r\n" if self.in_body else head + b"\r\nok")
                except OSError:
                    pass

    def close(self):
        self.server.close()


@pytest.mark.parametrize("in_body", [False, True], ids=["trickled-headers", "trickled-body"])
def test_a_trickling_receiver_cannot_hold_an_attempt_past_the_cap(app, make_org, monkeypatch, in_body):
    """The read timeout is per socket read; the attempt as a whole ends at
    3 × CG_WEBHOOK_TIMEOUT (at most 60 s), whatever the receiver does."""
    monkeypatch.setitem(app.config, "CG_WEBHOOK_TIMEOUT", 0.5)
    trickler = Trickler(in_body=in_body)
    try:
        org = make_org("Acme")
        webhooks.create_endpoint(org, SYSTEM, "Slow", f"http://127.0.0.1:{trickler.port}/hook")
        started = time.monotonic()
        notify(org, "budget.threshold", BUDGET)
        elapsed = time.monotonic() - started
    finally:
        trickler.close()
    delivery = hooks().get()
    assert trickler.requests == 1
    assert 1.4 <= elapsed < 4.0  # the trickle alone would last 6 s
    if in_body:  # the 200 came in time: delivered, with what of the body had arrived
        assert delivery.status == "sent" and delivery.response_code == 200
    else:
        assert delivery.status == "retrying" and delivery.response_code is None
        assert delivery.last_error == "Timed out: no complete answer within 1.5 s."
    assert DeliveryAttempt.get(DeliveryAttempt.delivery == delivery).latency_ms < 4000


def test_the_attempt_cap_is_three_timeouts_but_at_most_a_minute(app, app_ctx, monkeypatch):
    monkeypatch.setitem(app.config, "CG_WEBHOOK_TIMEOUT", 10)
    assert webhooks.attempt_cap() == 30
    monkeypatch.setitem(app.config, "CG_WEBHOOK_TIMEOUT", 45)
    assert webhooks.attempt_cap() == 60
    assert webhooks.attempt_cap() * 1.0 < deliveries.LEASE.total_seconds()


def test_turning_an_endpoint_off_holds_its_pending_deliveries(make_org, webhook_receiver):
    org = make_org("Acme")
    endpoint = endpoint_for(org, webhook_receiver)
    webhook_receiver.fail_first = 1
    notify(org, "budget.threshold", BUDGET)
    assert hooks().get().status == "retrying"
    webhooks.update_endpoint(endpoint, SYSTEM, "Ops alerts", endpoint.url, "json", ["*"], is_active=False)
    held = hooks().get()
    assert held.status == "disabled" and held.next_attempt_at is None
    assert webhooks.redeliver(held, SYSTEM).status == "queued"  # and can be sent again by hand
    assert hooks()[-1].status == "sent"


def test_repeated_failure_disables_the_endpoint_and_tells_the_admins(app, make_org, make_user, webhook_receiver,
                                                                    monkeypatch):
    monkeypatch.setitem(app.config, "CG_WEBHOOK_DISABLE_AFTER", 3)
    owner = make_user("olga@acme.com")
    org = make_org("Acme", owner=owner)
    add_member(org, make_user("adam@acme.com"), "admin")
    add_member(org, make_user("mia@acme.com"), "member")
    endpoint = endpoint_for(org, webhook_receiver)
    webhooks.create_endpoint(org, SYSTEM, "Also listening", webhook_receiver.url("/other"))
    webhook_receiver.fail_first = 1000

    a = notify(org, "budget.threshold", BUDGET).deliveries
    b = notify(org, "budget.exceeded", BUDGET).deliveries
    first = next(d for d in a if d.endpoint_id == endpoint.id)
    second = next(d for d in b if d.endpoint_id == endpoint.id)
    assert WebhookEndpoint.get_by_id(endpoint.id).consecutive_failures == 2
    assert Delivery.get_by_id(second.id).status == "retrying"

    due_now(first.id)
    assert deliveries.attempt(first.id) == "disabled"

    off = WebhookEndpoint.get_by_id(endpoint.id)
    assert not off.is_active and off.consecutive_failures == 3
    assert off.disabled_reason == "Disabled after 3 failed attempts in a row; last error: HTTP 500"
    assert Delivery.get_by_id(first.id).status == "disabled" and Delivery.get_by_id(second.id).status == "disabled"
    assert Delivery.get_by_id(second.id).next_attempt_at is None
    audit = AuditLog.get(AuditLog.action == "webhook.disabled")
    assert audit.target_id == str(endpoint.id) and audit.detail["pending_disabled"] == 2
    told = Notification.select().where(Notification.event_type == "webhook.disabled")
    assert sorted(n.user.email for n in told) == ["adam@acme.com", "olga@acme.com"]
    assert all("Ops alerts" in n.title and n.link == f"/notifications/webhooks/{endpoint.id}" for n in told)
    assert not Delivery.select().where(Delivery.event_type == "webhook.disabled",
                                       Delivery.channel == "webhook").exists()
    other = WebhookEndpoint.get(WebhookEndpoint.name == "Also listening")
    assert other.is_active  # its own count is 2, below the limit

    count = webhook_receiver.count
    notify(org, "budget.threshold", BUDGET)
    assert [r.path for r in webhook_receiver.received[count:]] == ["/other"]  # nothing to the disabled one


# --- the SSRF guard ------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "http://127.1.2.3:8080/", "https://10.0.0.5/hook", "http://172.16.3.4/",
    "http://192.168.1.10/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/hook", "http://[fd00::1]/",
    "http://[fe80::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:10.0.0.1]/", "http://0.0.0.0/",
    "http://[::]/", "http://224.0.0.1/", "http://100.64.0.1/", "http://localhost:5000/hook",
    "http://2130706433/",  # 127.0.0.1 as one number
])
def test_private_addresses_are_refused_when_saving(make_org, private_refused, url):
    org = make_org("Acme")
    with pytest.raises(ValidationError) as raised:
        webhooks.create_endpoint(org, SYSTEM, "Internal", url)
    assert "webhooks only go to public addresses" in raised.value.errors["url"]


def test_a_host_that_does_not_resolve_is_refused(make_org, private_refused):
    with pytest.raises(ValidationError) as raised:
        webhooks.create_endpoint(make_org("Acme"), SYSTEM, "Nowhere", "https://no-such-host.invalid/hook")
    assert "could not be resolved" in raised.value.errors["url"]


def test_public_addresses_pass_the_guard(app_ctx, private_refused):
    assert webhook_urls.check_url(" http://8.8.8.8/hook ") == "http://8.8.8.8/hook"
    assert webhook_urls.check_url("https://[2606:4700:4700::1111]/hook")
    assert webhook_urls.forbidden_reason("::ffff:8.8.8.8") is None


def test_a_saved_url_that_became_private_is_refused_at_send_time(app, make_org, webhook_receiver, monkeypatch):
    org = make_org("Acme")
    endpoint_for(org, webhook_receiver)  # saved while private addresses were allowed
    monkeypatch.setitem(app.config, "CG_ALLOW_PRIVATE_WEBHOOKS", False)

    notify(org, "budget.threshold", BUDGET)

    delivery = hooks().get()
    assert webhook_receiver.count == 0
    assert delivery.status == "failed" and delivery.attempts == 1  # not retried
    assert delivery.last_error.startswith("Refused: 127.0.0.1 resolves to 127.0.0.1, a loopback address")


def test_a_host_that_stopped_resolving_is_retried(app, make_org, monkeypatch):
    org = make_org("Acme")
    webhooks.create_endpoint(org, SYSTEM, "Gone", "https://no-such-host.invalid/hook")  # saved while allowed
    monkeypatch.setitem(app.config, "CG_ALLOW_PRIVATE_WEBHOOKS", False)
    notify(org, "budget.threshold", BUDGET)
    delivery = hooks().get()
    assert delivery.status == "retrying" and delivery.last_error == "The host no-such-host.invalid could not be resolved."


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_connected_socket_is_checked_too(app, app_ctx, webhook_receiver, monkeypatch, scheme):
    """Even when the pre-check is passed (DNS changed in between), the request
    never leaves for a private peer — over TLS, not even the handshake."""
    monkeypatch.setitem(app.config, "CG_ALLOW_PRIVATE_WEBHOOKS", False)
    url = webhook_receiver.url().replace("http:", f"{scheme}:")
    with webhook_urls.session() as http, pytest.raises(webhook_urls.ForbiddenAddress) as raised:
        http.post(url, data=b"{}", timeout=5)
    assert "connected to 127.0.0.1, a loopback address" in str(raised.value)
    assert webhook_receiver.count == 0


# --- test events and redelivery ------------------------------------------------------

def test_send_test_goes_to_that_endpoint_only(make_org, make_user, webhook_receiver):
    owner = make_user("olga@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    endpoint = endpoint_for(org, webhook_receiver, "/one")
    webhooks.create_endpoint(org, SYSTEM, "Two", webhook_receiver.url("/two"))
    from costguardian.services.actor import Actor

    delivery = webhooks.send_test(endpoint, Actor(user=owner))

    [got] = webhook_receiver.received
    assert got.path == "/one" and got.verified
    body = got.json()
    assert body["type"] == "system.test" and body["data"]["sender"] == "Olga Owner"
    assert Delivery.get_by_id(delivery.id).status == "sent"
    assert Notification.select().count() == 0  # a webhook check, not a notification to people
    assert AuditLog.get(AuditLog.action == "webhook.tested").actor_id == owner.id


def test_a_test_event_reaches_a_disabled_endpoint_too(make_org, webhook_receiver):
    org = make_org("Acme")
    endpoint = endpoint_for(org, webhook_receiver, kind="slack")
    WebhookEndpoint.update(is_active=False).execute()
    webhooks.send_test(WebhookEndpoint.get_by_id(endpoint.id), SYSTEM)
    assert webhook_receiver.received[0].json()["text"].startswith("*Test notification from Acme*")


def test_redelivery_sends_the_same_body_again_as_a_new_delivery(make_org, webhook_receiver):
    org = make_org("Acme")
    endpoint_for(org, webhook_receiver)
    webhook_receiver.status = 410
    notify(org, "budget.threshold", BUDGET)
    failed = hooks().get()
    assert failed.status == "failed"
    webhook_receiver.status = 200

    copy = webhooks.redeliver(failed, SYSTEM)

    assert Delivery.get_by_id(copy.id).status == "sent" and copy.id != failed.id
    assert Delivery.get_by_id(failed.id).status == "failed"  # the original keeps its history
    first, second = webhook_receiver.received
    assert first.body == second.body and second.verified
    assert second.headers["X-CostGuardian-Delivery"] == str(copy.id)
    assert AuditLog.get(AuditLog.action == "webhook.redelivered").detail["new_delivery"] == copy.id


def test_a_delivery_in_progress_cannot_be_redelivered(make_org, webhook_receiver):
    org = make_org("Acme")
    endpoint_for(org, webhook_receiver)
    webhook_receiver.fail_first = 1
    notify(org, "budget.threshold", BUDGET)
    with pytest.raises(RuleViolation):
        webhooks.redeliver(hooks().get(), SYSTEM)


# --- the pages -----------------------------------------------------------------------

def test_the_empty_page_offers_the_form(owner_client):
    client, _, _ = owner_client
    response = client.get("/notifications/webhooks/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'data-testid="webhooks-empty"' in html
    assert re.search(r'<details id="webhook-create" class="key-create"\s+open>', html)
    for etype in notification_types.webhook_types():
        assert f'value="{etype.key}"' in html
    assert 'value="webhook.disabled"' not in html


def test_creating_an_endpoint_shows_the_secret_once(owner_client):
    client, _, org = owner_client
    response = client.post("/notifications/webhooks/", form(scope="some", event_types=["budget.exceeded"]),
                           htmx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    [secret] = set(SECRET.findall(html))
    endpoint = WebhookEndpoint.get()
    assert endpoint.organization_id == org.id and endpoint.event_types == "budget.exceeded"
    assert crypto.decrypt(endpoint.secret_encrypted) == secret
    assert 'id="webhook-secret" hx-swap-oob="true"' in html
    assert 'id="webhooks-table" class="overflow-auto" hx-swap-oob="true"' in html
    assert json.loads(response.headers["HX-Trigger"])["showToast"]["message"] == "Webhook “Ops alerts” created."
    for page in ("/notifications/webhooks/", f"/notifications/webhooks/{endpoint.id}",
                 f"/notifications/webhooks/{endpoint.id}/edit"):
        again = client.get(page).get_data(as_text=True)
        assert secret not in again and not SECRET.search(again)
    assert "Ops alerts" in client.get("/notifications/webhooks/").get_data(as_text=True)


def test_creating_without_htmx_renders_the_page_with_the_secret(owner_client):
    client, _, _ = owner_client
    response = client.post("/notifications/webhooks/", form())
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in html and SECRET.search(html)


@pytest.mark.parametrize("data, message", [
    (form(url="ftp://hooks.example.com/"), "Use an http:// or https:// URL."),
    (form(name=""), "Name the endpoint after what receives it"),
    (form(scope="some"), "Choose at least one event type, or all of them."),
    (form(kind="xml"), "Not a valid choice"),
])
def test_invalid_forms_answer_422_with_inline_messages(owner_client, data, message):
    client, _, _ = owner_client
    for htmx in (True, False):
        response = client.post("/notifications/webhooks/", data, htmx=htmx)
        html = response.get_data(as_text=True)
        assert response.status_code == 422 and 'class="field-error"' in html and message in html
        assert ("<html" in html) is (not htmx)
    assert WebhookEndpoint.select().count() == 0


def test_a_private_url_is_refused_inline(app, owner_client, monkeypatch):
    monkeypatch.setitem(app.config, "CG_ALLOW_PRIVATE_WEBHOOKS", False)
    client, _, _ = owner_client
    response = client.post("/notifications/webhooks/", form(url="http://169.254.169.254/latest"), htmx=True)
    assert response.status_code == 422
    assert "169.254.169.254 resolves to 169.254.169.254, a link-local address" in response.get_data(as_text=True)


def test_editing_an_endpoint(owner_client):
    client, _, org = owner_client
    endpoint = webhooks.create_endpoint(org, SYSTEM, "Ops", "https://hooks.example.com/cg", "json",
                                        ["budget.exceeded"]).endpoint
    page = client.get(f"/notifications/webhooks/{endpoint.id}/edit").get_data(as_text=True)
    assert 'value="https://hooks.example.com/cg"' in page
    assert re.search(r'<input checked id="event_types-\d+" name="event_types" type="checkbox" value="budget.exceeded"',
                     page)

    bad = client.post(f"/notifications/webhooks/{endpoint.id}/edit", form(url="https://a:b@hooks.example.com/"),
                      htmx=True)
    assert bad.status_code == 422 and "Leave credentials out of the URL" in bad.get_data(as_text=True)

    response = client.post(f"/notifications/webhooks/{endpoint.id}/edit",
                           form(name="Ops (Slack)", url="https://hooks.slack.example.com/T1/B2", kind="slack"),
                           htmx=True)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == f"/notifications/webhooks/{endpoint.id}"
    saved = WebhookEndpoint.get_by_id(endpoint.id)
    assert (saved.name, saved.kind, saved.event_types) == ("Ops (Slack)", "slack", "*")
    assert crypto.decrypt(saved.secret_encrypted) == crypto.decrypt(endpoint.secret_encrypted)  # kept


def test_turning_an_endpoint_off_and_on_from_the_edit_page(owner_client):
    client, _, org = owner_client
    endpoint = webhooks.create_endpoint(org, SYSTEM, "Ops", "https://hooks.example.com/cg").endpoint
    off = form()
    del off["is_active"]
    client.post(f"/notifications/webhooks/{endpoint.id}/edit", off)
    assert not WebhookEndpoint.get_by_id(endpoint.id).is_active
    WebhookEndpoint.update(consecutive_failures=10, disabled_reason="Disabled after 10 failed attempts").execute()
    page = client.get(f"/notifications/webhooks/{endpoint.id}").get_data(as_text=True)
    assert 'data-testid="webhook-disabled"' in page and "Disabled after 10 failed attempts" in page
    response = client.post(f"/notifications/webhooks/{endpoint.id}/edit", form())
    assert response.status_code == 302
    back = WebhookEndpoint.get_by_id(endpoint.id)
    assert back.is_active and back.consecutive_failures == 0 and not back.disabled_reason


def test_rolling_the_secret_from_the_page(owner_client):
    client, _, org = owner_client
    new = webhooks.create_endpoint(org, SYSTEM, "Ops", "https://hooks.example.com/cg")
    response = client.post(f"/notifications/webhooks/{new.endpoint.id}/secret", htmx=True)
    html = response.get_data(as_text=True)
    [secret] = set(SECRET.findall(html))
    assert secret != new.secret and 'id="webhook-secret"' in html and "<html" not in html
    assert crypto.decrypt(WebhookEndpoint.get_by_id(new.endpoint.id).secret_encrypted) == secret


def test_deleting_an_endpoint(owner_client, webhook_receiver):
    client, _, org = owner_client
    endpoint = endpoint_for(org, webhook_receiver)
    notify(org, "budget.threshold", BUDGET)
    response = client.post(f"/notifications/webhooks/{endpoint.id}/delete", htmx=True)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/notifications/webhooks/"
    assert WebhookEndpoint.select().count() == 0 and Delivery.select().where(Delivery.channel == "webhook").count() == 0
    assert AuditLog.get(AuditLog.action == "webhook.deleted").detail["name"] == "Ops alerts"


def test_the_test_button_sends_and_shows_the_result_in_the_log(owner_client, webhook_receiver):
    client, _, org = owner_client
    endpoint = endpoint_for(org, webhook_receiver)

    response = client.post(f"/notifications/webhooks/{endpoint.id}/test", htmx=True)

    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="webhook-log"' in html and "<html" not in html
    assert 'id="webhook-summary" class="webhook-summary" hx-swap-oob="true"' in html
    assert "system.test" in html and 'data-testid="delivery-status">sent<' in html
    assert 'data-testid="delivery-code">200<' in html
    events = json.loads(response.headers["HX-Trigger"])
    assert events["showToast"] == {"message": "Test event delivered (HTTP 200).", "level": "success"}
    assert "webhookDeliveriesChanged" in events
    assert webhook_receiver.received[0].json()["type"] == "system.test"

    webhook_receiver.status = 503
    plain = client.post(f"/notifications/webhooks/{endpoint.id}/test")
    assert plain.status_code == 302
    page = client.get(plain.headers["Location"]).get_data(as_text=True)
    assert "Test event failed: HTTP 503." in page
    assert 'hx-trigger="every 3s"' in page  # a retry is pending: the log refreshes itself


def test_the_log_shows_attempts_and_payload_and_redelivers(owner_client, webhook_receiver):
    client, _, org = owner_client
    endpoint = endpoint_for(org, webhook_receiver)
    webhook_receiver.status, webhook_receiver.body = 410, '{"error": "<gone>"}'
    notify(org, "budget.threshold", BUDGET)
    failed = hooks().get()

    page = client.get(f"/notifications/webhooks/{endpoint.id}").get_data(as_text=True)
    assert 'data-testid="delivery-status">failed<' in page and "HTTP 410" in page
    assert "{&#34;error&#34;: &#34;&lt;gone&gt;&#34;}" in page  # the excerpt, escaped
    assert "&#34;budget&#34;: &#34;Engineering monthly&#34;" in page  # the payload, pretty-printed
    assert 'hx-trigger="every 3s"' not in page  # nothing in flight: no polling

    webhook_receiver.status = 200
    response = client.post(f"/notifications/webhooks/{endpoint.id}/deliveries/{failed.id}/redeliver", htmx=True)
    assert response.status_code == 200
    assert json.loads(response.headers["HX-Trigger"])["showToast"]["message"] == "Redelivery delivered (HTTP 200)."
    assert hooks().count() == 2


def test_redelivering_a_pending_delivery_is_refused(owner_client, webhook_receiver):
    client, _, org = owner_client
    endpoint = endpoint_for(org, webhook_receiver)
    webhook_receiver.fail_first = 1
    notify(org, "budget.threshold", BUDGET)
    delivery = hooks().get()
    response = client.post(f"/notifications/webhooks/{endpoint.id}/deliveries/{delivery.id}/redeliver", htmx=True)
    assert response.status_code == 422
    assert json.loads(response.headers["HX-Trigger"])["showToast"]["level"] == "error"
    assert hooks().count() == 1


def test_redeliver_without_javascript_redirects_back_with_the_result(owner_client, webhook_receiver):
    """A plain form post (no HX-Request): post/redirect/get to the endpoint's
    page, where the flash says how it went and the new delivery is listed."""
    client, _, org = owner_client
    endpoint = endpoint_for(org, webhook_receiver)
    webhook_receiver.status = 410
    notify(org, "budget.threshold", BUDGET)
    failed = hooks().get()
    page_url = f"/notifications/webhooks/{endpoint.id}"

    webhook_receiver.status = 200
    response = client.post(f"{page_url}/deliveries/{failed.id}/redeliver")
    assert response.status_code == 302 and response.headers["Location"] == page_url
    page = client.get(response.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Redelivery delivered (HTTP 200)." in html
    assert html.count('data-testid="webhook-delivery"') == 2 and hooks().count() == 2

    webhook_receiver.fail_first = 1  # the next one is retrying: still in progress
    notify(org, "budget.threshold", BUDGET)
    pending = hooks().order_by(Delivery.id.desc()).get()
    response = client.post(f"{page_url}/deliveries/{pending.id}/redeliver")
    assert response.status_code == 302 and response.headers["Location"] == page_url
    html = client.get(page_url).get_data(as_text=True)
    assert 'class="flash flash-error" role="status">This delivery is still in progress;' in html
    assert hooks().count() == 3


def test_the_log_filters_by_status_and_pages(owner_client):
    client, _, org = owner_client
    endpoint = webhooks.create_endpoint(org, SYSTEM, "Ops", "https://hooks.example.com/cg").endpoint
    start = clock.now() - timedelta(hours=1)
    for i in range(webhooks.PER_PAGE + 5):
        Delivery.create(organization=org, channel="webhook", event_id=f"e{i:03d}", event_type="budget.threshold",
                        endpoint=endpoint, recipient=endpoint.url, payload="{}",
                        status="failed" if i % 5 == 0 else "sent", created_at=start + timedelta(seconds=i))
    url = f"/notifications/webhooks/{endpoint.id}"

    first = client.get(url, htmx=True).get_data(as_text=True)
    assert "<html" not in first and first.count('data-testid="webhook-delivery"') == webhooks.PER_PAGE
    assert "e024" in first and "e004" not in first  # newest first
    assert f'href="{url}?page=2"' in first
    second = client.get(f"{url}?page=2", htmx=True).get_data(as_text=True)
    assert second.count('data-testid="webhook-delivery"') == 5 and "e000" in second
    failed = client.get(f"{url}?status=failed").get_data(as_text=True)
    assert failed.count('data-testid="webhook-delivery"') == 5 and "<html" in failed
    assert client.get(f"{url}?status=queued", htmx=True).get_data(as_text=True).count("No queued deliveries.") == 1
    assert client.get(f"{url}?status=bogus&page=x").status_code == 200


def test_the_list_shows_last_delivery_and_failures(owner_client, webhook_receiver):
    client, _, org = owner_client
    endpoint_for(org, webhook_receiver)
    webhook_receiver.fail_first = 1
    notify(org, "budget.threshold", BUDGET)
    html = client.get("/notifications/webhooks/").get_data(as_text=True)
    row = html[html.index('id="webhook-'):]
    assert 'status-tag status-retrying">retrying<' in row and "HTTP 500" in row
    assert '<td class="num">1</td>' in row


# --- tenancy and permissions -----------------------------------------------------------

def test_another_organization_s_endpoints_and_deliveries_are_404(owner_client, make_org, make_user,
                                                                  webhook_receiver):
    client, _, org = owner_client
    theirs_org = make_org("Globex", owner=make_user("boss@globex.com"))
    theirs = endpoint_for(theirs_org, webhook_receiver, name="Globex hook")
    webhook_receiver.status = 410
    notify(theirs_org, "budget.threshold", BUDGET)
    their_delivery = hooks().get()
    mine = webhooks.create_endpoint(org, SYSTEM, "Mine", "https://hooks.example.com/cg").endpoint

    assert "Globex hook" not in client.get("/notifications/webhooks/").get_data(as_text=True)
    for url in (f"/notifications/webhooks/{theirs.id}", f"/notifications/webhooks/{theirs.id}/edit",
                "/notifications/webhooks/99999999999"):
        assert client.get(url).status_code == 404
    for url in (f"/notifications/webhooks/{theirs.id}/edit", f"/notifications/webhooks/{theirs.id}/secret",
                f"/notifications/webhooks/{theirs.id}/test", f"/notifications/webhooks/{theirs.id}/delete",
                f"/notifications/webhooks/{theirs.id}/deliveries/{their_delivery.id}/redeliver",
                f"/notifications/webhooks/{mine.id}/deliveries/{their_delivery.id}/redeliver"):
        assert client.post(url, form(), htmx=True).status_code == 404, url
    still = WebhookEndpoint.get_by_id(theirs.id)
    assert still.name == "Globex hook" and still.secret_encrypted == theirs.secret_encrypted
    assert hooks().count() == 1 and webhook_receiver.count == 1


@pytest.mark.parametrize("role", ["member", "viewer", "billing"])
def test_roles_without_notifications_manage_get_403(app, owner_client, make_user, role):
    _, _, org = owner_client
    endpoint = webhooks.create_endpoint(org, SYSTEM, "Ops", "https://hooks.example.com/cg").endpoint
    client = signed_in(app, org, f"{role}@acme.com", role, make_user)
    assert client.get("/notifications/webhooks/").status_code == 403
    assert client.get(f"/notifications/webhooks/{endpoint.id}").status_code == 403
    for url in ("/notifications/webhooks/", f"/notifications/webhooks/{endpoint.id}/edit",
                f"/notifications/webhooks/{endpoint.id}/secret", f"/notifications/webhooks/{endpoint.id}/test",
                f"/notifications/webhooks/{endpoint.id}/delete"):
        assert client.post(url, form(), htmx=True).status_code == 403
    assert WebhookEndpoint.select().count() == 1 and Delivery.select().count() == 0


def test_an_admin_manages_webhooks(app, owner_client, make_user):
    _, _, org = owner_client
    client = signed_in(app, org, "adm@acme.com", "admin", make_user)
    response = client.post("/notifications/webhooks/", form(), htmx=True)
    assert response.status_code == 200 and SECRET.search(response.get_data(as_text=True))


def test_anonymous_requests_are_sent_to_sign_in(client):
    assert client.get("/notifications/webhooks/").headers["Location"].startswith("/login")
    assert client.post("/notifications/webhooks/", form(), htmx=True, csrf=False).status_code == 401

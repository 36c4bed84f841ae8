"""The whole notification path through a real Huey consumer process on the
real queue (SQLite file; Redis on the PostgreSQL pass): a budget-like event
raised through `notify` while the worker is down waits, then reaches the
bell, a real SMTP server (both parts) and a webhook receiver that verifies
the signature — after failing the first two attempts on purpose."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


from costguardian import clock, crypto
from costguardian.extensions import db
from costguardian.models import Delivery, DeliveryAttempt, WebhookEndpoint
from costguardian.services.notifications import notify as notifications
from tests.support import add_member, make_org, make_user

ROOT = Path(__file__).resolve().parent.parent

PAYLOAD = {"budget": "Engineering monthly", "budget_id": 1, "scope": "Department Engineering",
           "spent_usd": "812.40", "limit_usd": "1000.00", "percent": 81, "threshold": 80,
           "period": "November 2026"}



def _consumer(app, mail_url: str) -> subprocess.Popen:
    env = {**os.environ, "MAIL_URL": mail_url, "MAIL_FROM": app.config["MAIL_FROM"],
           "SECRET_KEY": app.config["SECRET_KEY"], "CG_ENCRYPTION_KEYS": app.config["CG_ENCRYPTION_KEYS"],
           "CG_RETRY_SCALE": "0.01", "CG_ALLOW_PRIVATE_WEBHOOKS": "1", "CG_BASE_URL": "https://cg.example.com"}
    args = ["tasks.huey", "--workers", "2", "--worker-type", "thread", "--max-delay", "0.2", "--no-periodic"]
    if os.environ.get("CG_TEST_TODAY"):  # a run moved in time (--today): the consumer shares the test's clock
        start = ("import sys, time_machine; time_machine.travel(sys.argv.pop(1), tick=True).start(); "
                 "from huey.bin.huey_consumer import consumer_main; consumer_main()")
        command = [sys.executable, "-c", start, clock.now_aware().isoformat(), *args]
    else:
        command = [sys.executable, "-m", "huey.bin.huey_consumer", *args]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _statuses(ids) -> dict[int, str]:
    with db.connection_context():
        return {d.id: d.status for d in Delivery.select().where(Delivery.id.in_(ids))}


def test_event_queued_while_worker_is_down_reaches_every_channel(app, real_queue, smtp_server, webhook_receiver):
    secret = "whsec_done_when"
    with app.app_context(), db.connection_context():
        owner = make_user("owner@acme.com", name="Olga Owner")
        org = make_org("Acme", owner=owner)
        admin = make_user("admin@acme.com", name="Adam Admin")
        add_member(org, admin, "admin")
        add_member(org, make_user("viewer@acme.com"), "viewer")
        WebhookEndpoint.create(organization=org, name="Ops", url=webhook_receiver.url("/cg"),
                               event_types="budget.threshold,budget.exceeded",
                               secret_encrypted=crypto.encrypt(secret))
        webhook_receiver.secret, webhook_receiver.fail_first = secret, 2
        sent = notifications.notify(org, "budget.threshold", PAYLOAD)
        ids = [d.id for d in sent.deliveries]
        # The bell shows it at once: in-app needs no worker.
        assert notifications.unread_count(org, owner) == notifications.unread_count(org, admin) == 1
    assert len(ids) == 3  # two emails (owner, admin) and one webhook; the viewer gets no budget email
    assert real_queue.pending_count() == 3
    time.sleep(1.0)
    assert set(_statuses(ids).values()) == {"queued"}  # no worker: nothing sent, nothing lost

    consumer = _consumer(app, smtp_server.url(starttls="0"))
    try:
        deadline = time.monotonic() + 60
        while set(_statuses(ids).values()) != {"sent"} and time.monotonic() < deadline:
            time.sleep(0.25)
    finally:
        consumer.terminate()
        output, _ = consumer.communicate(timeout=20)
    assert set(_statuses(ids).values()) == {"sent"}, output

    # Email: both parts, the right headers, through a real SMTP server.
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == ["admin@acme.com", "owner@acme.com"]
    message = smtp_server.messages[0].message
    assert message["Subject"] == "[Acme] Engineering monthly reached 80% of its limit"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "$812.40 of $1000.00" in text and "Acme" in html
    assert message["List-Unsubscribe"] and message["Message-ID"]

    # Webhook: failed twice on purpose, then delivered; every request verified.
    assert webhook_receiver.count == 3
    assert all(r.verified for r in webhook_receiver.received)
    body = webhook_receiver.received[-1].json()
    assert body["type"] == "budget.threshold" and body["id"] == sent.event_id
    assert body["organization"]["name"] == "Acme" and body["data"]["spent_usd"] == "812.40"
    with db.connection_context():
        hook = Delivery.get(Delivery.channel == "webhook")
        codes = [a.status_code for a in DeliveryAttempt.select().where(DeliveryAttempt.delivery == hook)
                 .order_by(DeliveryAttempt.number)]
    assert hook.attempts == 3 and codes == [500, 500, 200]

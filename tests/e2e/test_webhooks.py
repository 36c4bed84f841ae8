"""Journey on the webhooks pages: an admin adds an endpoint that points at a
real receiver, sees its signing secret once, sends a test event and finds it
delivered (HTTP 200) in the endpoint's log; the receiver checked the signature
with the secret the page showed."""
from __future__ import annotations

import re

from playwright.sync_api import expect


def test_admin_adds_an_endpoint_and_sends_a_test_event(page, live_server, make_user, make_org, sign_in, shot,
                                                       webhook_receiver):
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    make_org("Acme Analytics", owner=owner)

    sign_in(page, "olga@acme.example.com")
    page.goto("/notifications/webhooks/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks")
    expect(page.get_by_test_id("webhooks-empty")).to_be_visible()

    form = page.locator("#webhook-form")
    form.get_by_label("Name", exact=True).fill("Ops alerts")
    form.get_by_label("URL", exact=True).fill(webhook_receiver.url("/cost-guardian"))
    form.get_by_label("Only the types chosen below").check()
    expect(form.get_by_label(re.compile(r"budget\.exceeded"))).to_be_visible()
    form.get_by_label(re.compile(r"budget\.exceeded")).check()
    form.get_by_label(re.compile(r"system\.test")).check()
    shot(page, "1-form")
    form.get_by_role("button", name="Add endpoint").click()

    secret_box = page.get_by_test_id("webhook-secret-text")
    expect(secret_box).to_be_visible()
    secret = secret_box.input_value()
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", secret)
    expect(page.locator("#webhooks-table")).to_contain_text("Ops alerts")
    expect(page.locator("#webhooks-table")).to_contain_text("None yet")
    shot(page, "2-secret-once")
    webhook_receiver.secret = secret  # the receiver verifies with what the page showed

    page.get_by_role("button", name="I have copied it").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ops alerts")
    assert secret not in page.content()  # shown once, never again
    expect(page.get_by_test_id("webhook-log-empty")).to_be_visible()

    page.get_by_role("button", name="Send test event").click()
    entry = page.get_by_test_id("webhook-delivery").first
    expect(entry.get_by_test_id("delivery-status")).to_have_text("sent")
    expect(entry.get_by_test_id("delivery-code")).to_have_text("200")
    expect(page.locator("#toasts .toast", has_text="Test event delivered (HTTP 200).")).to_be_visible()
    [received] = webhook_receiver.received
    assert received.verified is True and received.json()["type"] == "system.test"

    entry.locator("summary").click(position={"x": 20, "y": 10})
    expect(entry.locator(".delivery-body")).to_be_visible()
    expect(entry.locator("table.attempts tbody tr")).to_have_count(1)
    expect(entry.locator("pre.payload")).to_contain_text('"type": "system.test"')
    shot(page, "3-delivered")

    page.goto("/notifications/webhooks/")
    expect(page.locator("#webhooks-table")).to_contain_text("sent")
    expect(page.locator("#webhooks-table")).to_contain_text("HTTP 200")


def test_a_failing_endpoint_is_disabled_and_turned_on_again(app, page, make_user, make_org, sign_in, shot,
                                                            webhook_receiver, monkeypatch):
    from costguardian.services.notifications import webhooks
    from tests.support import SYSTEM

    monkeypatch.setitem(app.config, "CG_WEBHOOK_DISABLE_AFTER", 2)
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    endpoint = webhooks.create_endpoint(org, SYSTEM, "Flaky receiver", webhook_receiver.url("/flaky")).endpoint
    webhook_receiver.fail_first, webhook_receiver.fail_status = 1000, 503

    sign_in(page, "olga@acme.example.com")
    page.goto(f"/notifications/webhooks/{endpoint.id}")
    page.get_by_role("button", name="Send test event").click()
    expect(page.locator("#toasts .toast", has_text="Test event failed: HTTP 503.").first).to_be_visible()
    expect(page.get_by_test_id("webhook-failures")).to_contain_text("1")
    page.get_by_role("button", name="Send test event").click()
    expect(page.get_by_test_id("webhook-disabled")).to_contain_text("Disabled after 2 failed attempts in a row")
    expect(page.get_by_test_id("delivery-status")).to_have_text(["disabled", "disabled"])
    expect(page.get_by_role("button", name="Redeliver")).to_have_count(2)
    shot(page, "1-disabled")

    webhook_receiver.fail_first = 0
    page.get_by_role("link", name="Edit", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Edit “Flaky receiver”")
    page.get_by_label("Active").check()
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Flaky receiver")
    expect(page.get_by_test_id("webhook-disabled")).to_have_count(0)
    expect(page.get_by_test_id("webhook-failures")).to_contain_text("0")
    page.get_by_role("button", name="Redeliver").first.click()
    expect(page.get_by_test_id("delivery-status").first).to_have_text("sent")
    shot(page, "2-back-on")

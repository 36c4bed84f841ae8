"""Journey in the email template editor: the live preview follows typing
(subject, text part and the HTML part in its sandboxed iframe), a bad
template shows its error and line inline, saving makes the next email use it,
and the superadmins' outbox shows that email with both parts."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from costguardian.services.notifications import types as notification_types, notify as notifications


def test_template_editor_live_preview_error_save_and_outbox(page, make_user, make_org, sign_in, shot):
    owner = make_user("olga@acme.example.com", name="Olga Owner", superadmin=True)
    org = make_org("Acme Analytics", owner=owner)
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    sign_in(page, "olga@acme.example.com")
    page.locator("details.user-menu summary").click()
    page.get_by_role("link", name="Email templates").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Email templates")
    page.get_by_role("row", name=re.compile("Budget threshold reached")).get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Budget threshold reached email")
    page.wait_for_load_state("domcontentloaded")  # htmx (deferred) binds the form's input trigger then

    preview = page.locator("#template-preview")
    expect(preview.get_by_test_id("preview-subject")).to_have_text(
        "[Acme Analytics] Engineering monthly reached 80% of its limit")

    page.get_by_label("Subject").fill("Heads up: {{ budget|upper }} at {{ percent }}%")
    page.get_by_label("Body").fill("Hello {{ org.name }} team,\n\n{{ budget }} ({{ scope }}) has spent "
                                   "${{ spent_usd }} of ${{ limit_usd }}.\n\nRunbook: https://wiki.example.com/budgets")
    expect(preview.get_by_test_id("preview-subject")).to_have_text(
        "[Acme Analytics] Heads up: ENGINEERING MONTHLY at 81%")
    expect(preview.get_by_test_id("preview-text")).to_contain_text("Hello Acme Analytics team,")
    frame = page.frame_locator("iframe[name=template-html-frame]")
    expect(frame.locator("h1")).to_have_text("Heads up: ENGINEERING MONTHLY at 81%")
    expect(frame.get_by_role("link", name="https://wiki.example.com/budgets")).to_be_visible()
    shot(page, "1-live-preview")

    page.get_by_label("Body").fill("Hello {{ org.name }},\n\n{{ budget.__class__.__mro__ }}")
    expect(preview.get_by_test_id("template-errors")).to_contain_text(
        "Line 3: access to attribute '__class__' of 'str' object is unsafe.")
    shot(page, "2-sandbox-error")

    page.get_by_label("Body").fill("Hello {{ org.name }},\n{% if percent > 50 %}\nMore than half gone: "
                                   "{{ budget|lower }}\n")
    expect(preview.get_by_test_id("template-errors")).to_contain_text("Line 3: Unexpected end of template")
    shot(page, "3-syntax-error")

    page.get_by_label("Body").fill("{{ budget }} has spent ${{ spent_usd }} ({{ percent }}%).")
    expect(preview.get_by_test_id("preview-text")).to_contain_text("Engineering monthly has spent $812.40 (81%).")
    page.get_by_role("button", name="Save template").click()
    expect(page.locator(".flash")).to_contain_text("now use your template")
    expect(page.get_by_role("button", name="Reset to default")).to_be_visible()

    notifications.notify(org, "budget.threshold", dict(notification_types.get("budget.threshold").example),
                         recipients=[owner], webhooks=False)
    page.locator("details.user-menu summary").click()
    page.get_by_role("link", name="Platform console").click()
    page.locator("nav.console-nav").get_by_role("link", name="Outbox").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Outbox")
    shot(page, "4-outbox")
    page.get_by_role("link", name="[Acme Analytics] Heads up: ENGINEERING MONTHLY at 81%").click()
    expect(page.get_by_test_id("text-part")).to_contain_text("Engineering monthly has spent $812.40 (81%).")
    expect(page.frame_locator("iframe.mail-html").locator("h1")).to_have_text(
        "Heads up: ENGINEERING MONTHLY at 81%")
    shot(page, "5-outbox-message")

    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors


def test_unsubscribe_link_from_an_email_without_signing_in(page, make_user, make_org, shot):
    from costguardian.models import NotificationPreference
    from costguardian.services.notifications import email as notification_email

    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    token = notification_email.unsubscribe_token(org.id, owner.id, "key.rotated")

    page.goto(f"/notifications/unsubscribe/{token}")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Stop emails about API key rotated from Acme Analytics?")
    shot(page, "1-confirm")
    page.get_by_role("button", name="Stop these emails").click()
    expect(page.get_by_test_id("unsubscribed")).to_contain_text(
        "will no longer get emails about API key rotated from Acme Analytics")
    shot(page, "2-done")
    pref = NotificationPreference.get(NotificationPreference.user == owner)
    assert (pref.event_type, pref.email) == ("key.rotated", False)

    page.goto(f"/notifications/unsubscribe/{token[:-4]}oops")
    expect(page.get_by_role("heading", level=1)).to_have_text("This link does not work")

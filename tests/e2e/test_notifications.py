"""The bell in real browsers: a notification raised through `notify` appears
in every recipient's open page within seconds, without a reload."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from costguardian.db import connected
from costguardian.extensions import db
from costguardian.services.notifications import notify as notifications
from tests.support import add_member, make_org, make_user


def _raise_budget_event(app, org):
    with app.app_context(), connected(db):
        return notifications.notify(org, "budget.threshold", {
            "budget": "Engineering monthly", "budget_id": 1, "scope": "Department Engineering",
            "spent_usd": "812.40", "limit_usd": "1000.00", "percent": 81, "threshold": 80,
            "period": "November 2026"}, link="/usage/")


def test_bell_updates_live_for_every_recipient(app, browser, base_url, sign_in, shot):
    with app.app_context(), connected(db):
        owner = make_user("owner@acme.com", name="Olga Owner")
        org = make_org("Acme", owner=owner)
        admin = make_user("admin@acme.com", name="Adam Admin")
        viewer = make_user("viewer@acme.com", name="Vic Viewer")
        add_member(org, admin, "admin")
        add_member(org, viewer, "viewer")

    pages = {}
    for email in ("owner@acme.com", "admin@acme.com", "viewer@acme.com"):
        context = browser.new_context(base_url=base_url)
        page = context.new_page()
        sign_in(page, email)
        page.goto("/")
        expect(page.get_by_test_id("bell-badge")).to_be_hidden()  # nothing unread yet
        pages[email] = page

    _raise_budget_event(app, org)

    # Owner and admin are the default recipients of budget alerts; the viewer is not.
    for email in ("owner@acme.com", "admin@acme.com"):
        badge = pages[email].get_by_test_id("bell-badge")
        expect(badge).to_have_text("1", timeout=8_000)  # polled every 5 s
    shot(pages["owner@acme.com"], "badge")
    expect(pages["viewer@acme.com"].get_by_test_id("bell-badge")).to_be_hidden()

    owner_page = pages["owner@acme.com"]
    owner_page.get_by_role("button", name=re.compile("Notifications")).or_(
        owner_page.locator("details.bell > summary")).first.click()
    items = owner_page.get_by_test_id("bell-items")
    expect(items).to_contain_text("Engineering monthly reached 80% of its limit")
    shot(owner_page, "menu")
    items.get_by_text("Engineering monthly reached 80% of its limit").click()
    expect(owner_page).to_have_url(re.compile(r"/usage/"))
    expect(owner_page.get_by_test_id("bell-badge")).to_be_hidden()  # opening it marked it read

    # The full page: filters and bulk marking, with the badge following by OOB swap.
    admin_page = pages["admin@acme.com"]
    admin_page.goto("/notifications/")
    rows = admin_page.get_by_test_id("notification-rows")
    expect(rows).to_contain_text("$812.40 of $1000.00")
    admin_page.get_by_label("Select all").check()
    admin_page.get_by_role("button", name="Mark selected read").click()
    expect(admin_page.get_by_test_id("bell-badge")).to_be_hidden()
    admin_page.get_by_label("Show").select_option("unread")
    expect(admin_page).to_have_url(re.compile(r"status=unread"))
    expect(rows.or_(admin_page.get_by_test_id("notification-rows"))).to_contain_text("No notifications match")
    shot(admin_page, "center")
    for page in pages.values():
        page.context.close()


def test_preferences_turn_the_bell_off(app, page, sign_in):
    with app.app_context(), connected(db):
        owner = make_user("owner@acme.com", name="Olga Owner")
        org = make_org("Acme", owner=owner)
    sign_in(page, "owner@acme.com")
    page.goto("/notifications/preferences")
    page.get_by_label("Budget threshold reached: In the app").uncheck()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_text("Saved.", exact=True)).to_be_visible()
    sent = _raise_budget_event(app, org)
    assert len(sent.notifications) == 1 and not sent.notifications[0].in_app
    page.goto("/notifications/")
    expect(page.get_by_test_id("notification-rows")).to_contain_text("No notifications yet")

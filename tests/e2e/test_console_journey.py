"""The platform console journey: a superadmin finds a user, acts as them
(banner, an action, stop), finds both identities in the audit log, disables
the user, and the user's own browser is signed out at its next request."""
from __future__ import annotations

import re

from playwright.sync_api import expect


def test_superadmin_impersonates_audits_and_disables(page, new_context, make_user, make_org, sign_in, shot):
    from tests.support import add_member

    make_user("root@example.com", name="Root Admin", platform_role="superadmin")
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    mia = make_user("mia@acme.example.com", name="Mia Member")
    org = make_org("Acme Analytics", owner=owner)
    add_member(org, mia, "member")

    page.on("dialog", lambda dialog: dialog.accept())

    # Mia works in her own browser.
    mia_page = new_context().new_page()
    sign_in(mia_page, "mia@acme.example.com")
    expect(mia_page.get_by_role("heading", level=1)).to_contain_text("Acme Analytics")

    # 1. The superadmin finds her from the console.
    sign_in(page, "root@example.com")
    expect(page).to_have_url(re.compile(r"/admin/?$"))  # a platform admin without an organization lands here
    page.locator("nav.console-nav").get_by_role("link", name="Users").click()
    expect(page).to_have_url(re.compile(r"/admin/users"))
    page.wait_for_load_state("domcontentloaded")  # htmx (deferred) binds the search's input trigger then
    page.get_by_label("Search users").fill("mia")
    page.get_by_label("Search users").press("Enter")
    page.get_by_role("link", name="mia@acme.example.com").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Mia Member")
    shot(page, "1-user")

    # 2. Acts as her, with a reason; the banner says so on every page.
    page.get_by_label(re.compile("Reason")).fill("ticket #4711: budget alert missing")
    page.get_by_role("button", name=re.compile(r"Act as mia@acme\.example\.com")).click()
    banner = page.get_by_test_id("impersonation-banner")
    expect(banner).to_contain_text("You are acting as Mia Member")
    page.goto("/account/")
    expect(banner).to_be_visible()
    page.get_by_label("Name").fill("Mia M.")
    page.get_by_role("button", name="Save profile").click()
    expect(page.locator("#toasts")).to_contain_text("Profile saved")
    shot(page, "2-acting")

    # 3. Stops: back to her page in the console, as himself.
    banner.get_by_role("button", name=re.compile("Stop acting")).click()
    expect(page.get_by_test_id("impersonation-banner")).to_have_count(0)
    expect(page).to_have_url(re.compile(rf"/admin/users/{mia.id}$"))

    # 4. The audit log names both: the user acted as, and the admin who did it.
    page.locator("nav.console-nav").get_by_role("link", name="Audit log").click()
    page.goto(page.url.split("?")[0] + "?action=user.updated")
    row = page.locator("table tbody tr", has_text="user.updated").first
    expect(row).to_contain_text("mia@acme.example.com")
    expect(row).to_contain_text("root@example.com")
    shot(page, "3-audit")

    # 5. Disables her: her browser is signed out at its next request.
    page.goto(f"/admin/users/{mia.id}")
    page.get_by_test_id("user-actions").get_by_role("button", name="Disable", exact=True).click()
    expect(page.get_by_test_id("profile")).to_contain_text("isabled")
    mia_page.reload()
    expect(mia_page).to_have_url(re.compile(r"/login"))

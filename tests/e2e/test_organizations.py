"""Journeys inside an organization: roles and settings, switching between
organizations, changing a member's role through htmx."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.support import add_member


def _toast(page, text: str):
    return page.locator("#toasts .toast", has_text=text)


# --- c. a viewer cannot open settings; the owner changes them inline -----------

def test_viewer_cannot_open_settings_but_owner_can_change_them(page, new_context, make_user, make_org,
                                                               sign_in, shot):
    from costguardian.models import Organization

    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    viewer = make_user("vic@acme.example.com", name="Vic Viewer")
    add_member(org, viewer, "viewer")

    # The viewer: no Settings in the navigation, a friendly 403 at the address.
    sign_in(page, "vic@acme.example.com")
    nav = page.locator("ul.mainnav")
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Analytics")
    expect(nav.get_by_role("link", name="Dashboard")).to_be_visible()
    expect(nav.get_by_role("link", name="Members")).to_be_visible()
    expect(nav.get_by_role("link", name="Settings")).to_have_count(0)
    expect(page.get_by_role("link", name="Check the time zone budgets will follow")).to_have_count(0)
    shot(page, "1-viewer-dashboard")

    response = page.goto("/settings/")
    assert response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("You don't have access")
    expect(page.locator(".error-code")).to_have_text("403")
    expect(page.get_by_role("button", name="Go to the dashboard")).to_be_visible()
    expect(page.locator("#org-settings")).to_have_count(0)
    shot(page, "2-viewer-403")

    # The owner, in a browser of their own.
    owner_page = new_context().new_page()
    sign_in(owner_page, "olga@acme.example.com")
    owner_page.locator("ul.mainnav").get_by_role("link", name="Settings").click()
    expect(owner_page).to_have_url(re.compile(r"/settings/$"))
    expect(owner_page.get_by_role("heading", level=1)).to_have_text("Organization settings")
    name = owner_page.get_by_label("Organization name")
    expect(name).to_have_value("Acme Analytics")

    # A marker on the window survives only if the page is never reloaded.
    owner_page.evaluate("window.__noReload = true")

    # Inline validation: clearing the name shows the error while typing.
    name.click()
    name.press("ControlOrMeta+a")
    with owner_page.expect_response(lambda r: r.url.endswith("/settings/validate")) as info:
        name.press("Backspace")
    assert info.value.status == 422
    expect(owner_page.locator("#name-help")).to_have_text("Give the organization a name.")
    expect(owner_page.get_by_label("Organization name")).to_have_attribute("aria-invalid", "true")
    assert owner_page.evaluate("window.__noReload") is True
    shot(owner_page, "3-owner-inline-error")

    # A valid name saves, with a toast, still without a reload.
    owner_page.get_by_label("Organization name").fill("Acme Platform")
    with owner_page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith("/settings/")) as info:
        owner_page.get_by_role("button", name="Save settings").click()
    assert info.value.status == 200
    expect(_toast(owner_page, "Settings saved.")).to_be_visible()
    expect(owner_page.locator("#org-settings .saved")).to_have_text("Saved.")
    expect(owner_page.locator("#name-help")).to_have_count(0)
    expect(owner_page.get_by_label("Organization name")).to_have_value("Acme Platform")
    assert owner_page.evaluate("window.__noReload") is True
    shot(owner_page, "4-owner-saved")

    assert Organization.get_by_id(org.id).name == "Acme Platform"
    owner_page.reload()
    expect(owner_page.locator("details.org-switcher summary")).to_have_text("Acme Platform")
    expect(owner_page.get_by_label("Organization name")).to_have_value("Acme Platform")

    # The viewer sees the new name too.
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Platform")


# --- f. switching organizations -------------------------------------------------

def test_switch_organization_from_the_header(page, make_user, make_org, sign_in, shot):
    user = make_user("sam@example.com", name="Sam Switcher")
    make_org("Acme Analytics", owner=user)
    other = make_org("Globex Research", owner=make_user("gail@globex.example.com"))
    add_member(other, user, "member")

    sign_in(page, "sam@example.com")
    switcher = page.locator("details.org-switcher")
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Analytics")
    expect(switcher.locator("summary")).to_have_text("Acme Analytics")
    expect(page.locator("hgroup p")).to_contain_text("you are owner")

    switcher.locator("summary").click()
    expect(switcher.get_by_role("button", name=re.compile("Globex Research"))).to_be_visible()
    expect(switcher.get_by_role("button", name=re.compile("Acme Analytics"))).to_have_class(re.compile(r"\bcurrent\b"))
    shot(page, "1-switcher-open")
    switcher.get_by_role("button", name=re.compile("Globex Research")).click()

    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Globex Research")
    expect(switcher.locator("summary")).to_have_text("Globex Research")
    expect(page.locator("hgroup p")).to_contain_text("2 members · you are member")
    # A member of Globex: no Settings, no Audit log.
    expect(page.locator("ul.mainnav").get_by_role("link", name="Settings")).to_have_count(0)
    shot(page, "2-switched")

    # The choice sticks across pages, and switching back works.
    page.goto("/members/")
    expect(page.locator("hgroup p")).to_have_text("2 people in Globex Research")
    switcher.locator("summary").click()
    switcher.get_by_role("button", name=re.compile("Acme Analytics")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Analytics")


# --- g. changing a member's role through htmx ------------------------------------

def test_owner_changes_a_members_role(page, make_user, make_org, sign_in, shot):
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    member = add_member(org, make_user("max@acme.example.com", name="Max Member"), "member")

    dialogs = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    sign_in(page, "olga@acme.example.com")
    page.locator("ul.mainnav").get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Members")
    row = page.locator(f"#member-{member.id}")
    expect(row).to_contain_text("max@acme.example.com")
    role = page.get_by_label("Role of max@acme.example.com")
    expect(role).to_have_value("member")
    # The owner's own row has no select: nobody changes their own role.
    expect(page.get_by_label("Role of olga@acme.example.com")).to_have_count(0)
    shot(page, "1-members")

    page.evaluate("window.__noReload = true")
    page.wait_for_load_state("domcontentloaded")  # htmx (deferred) binds the select's change then
    with page.expect_response(lambda r: r.url.endswith(f"/members/{member.id}/role")) as info:
        role.select_option("admin")
    assert info.value.status == 200
    assert dialogs == ["Change this member's role?"]
    expect(_toast(page, "Max Member is now admin.")).to_be_visible()
    expect(page.get_by_label("Role of max@acme.example.com")).to_have_value("admin")
    assert page.evaluate("window.__noReload") is True
    shot(page, "2-role-changed")

    page.reload()
    expect(page.get_by_label("Role of max@acme.example.com")).to_have_value("admin")

    page.locator("ul.mainnav").get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    entry = page.locator("#audit-rows tr", has=page.locator("code", has_text="member.role_changed"))
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text("Olga Owner")
    expect(entry).to_contain_text("max@acme.example.com")
    expect(entry.locator("td.detail")).to_contain_text("old_role member")
    expect(entry.locator("td.detail")).to_contain_text("new_role admin")
    shot(page, "3-audit-log")

"""The team journey: an owner invites three addresses (one fails on its
line), a new and an existing user accept in their own browsers, the owner
assigns roles and departments, and the viewer sees but cannot change."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.support import PASSWORD

LINK = re.compile(r"https?://[^\s]+/invitations/accept/[A-Za-z0-9_-]+")


def _accept_link(email: str) -> str:
    from costguardian.models import OutboxMessage

    message = (OutboxMessage.select().where(OutboxMessage.to_address == email)
               .order_by(OutboxMessage.id.desc()).first())
    assert message is not None, f"no email to {email}"
    return LINK.search(message.text_body).group(0)


def _toast(page, text: str):
    return page.locator("#toasts .toast", has_text=text)


def test_owner_invites_two_colleagues_who_join_and_get_roles(page, new_context, make_user, make_org, sign_in,
                                                             shot):
    from costguardian.models import Department, Membership, User

    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    make_user("ben@acme.example.com", name="Ben Existing")
    research = Department.create(organization=org, name="Research")

    dialogs = []

    def accept_dialog(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept_dialog)

    # 1. The owner invites three addresses; the wrong one fails on its own line.
    sign_in(page, "olga@acme.example.com")
    page.locator("ul.mainnav").get_by_role("link", name="Members").click()
    page.get_by_role("button", name="Invitations").or_(page.get_by_role("link", name="Invitations")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Invitations")
    page.get_by_label("Email addresses").fill("ana@acme.example.com\nben@acme.example.com\nnot-an-address@")
    page.get_by_label("Role", exact=True).select_option("member")
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/invitations/")) as info:
        page.get_by_role("button", name="Send invitations").click()
    assert info.value.status == 200
    # The toast first: it goes after 5 s, which the checks below took once on a busy machine.
    expect(_toast(page, "2 invitations sent; 1 not sent")).to_be_visible()
    results = page.locator(".invite-results")
    expect(results.locator('[data-status="invited"]')).to_have_count(2)
    bad = results.locator('[data-status="invalid"]')
    expect(bad).to_contain_text("not-an-address@")
    expect(bad).to_contain_text("Invalid address")
    expect(page.get_by_label("Email addresses")).to_have_value("not-an-address@")  # left to fix
    expect(page.locator("#invitations tbody tr", has_text="ana@acme.example.com")).to_contain_text("Pending")
    shot(page, "1-invited")

    ana_link, ben_link = _accept_link("ana@acme.example.com"), _accept_link("ben@acme.example.com")

    # 2. A brand-new user signs up through the link, in a browser of their own.
    ana = new_context().new_page()
    ana.goto(ana_link)
    expect(ana.get_by_role("heading", level=1)).to_have_text("Join Acme Analytics")
    expect(ana.locator(".invitation-summary")).to_contain_text("Olga Owner invited you")
    expect(ana.locator("#invited-email")).to_have_value("ana@acme.example.com")
    shot(ana, "2-accept-new-user")
    ana.get_by_label("Your name").fill("Ana Analyst")
    ana.get_by_label("Password", exact=True).fill(PASSWORD)
    ana.get_by_label("Repeat password").fill(PASSWORD)
    ana.get_by_role("button", name="Create account and join").click()
    expect(ana.get_by_role("heading", level=1)).to_have_text("Welcome to Acme Analytics")  # members: the welcome page
    expect(ana.locator(".welcome-role")).to_contain_text("Your role: member")
    expect(ana.locator(".flash")).to_contain_text("Welcome to Acme Analytics. You joined as member.")
    shot(ana, "3-new-user-joined")

    # 3. An existing user signs in through the link, in a third browser.
    ben = new_context().new_page()
    ben.goto(ben_link)
    expect(ben.get_by_text("You already have a Cost Guardian account.")).to_be_visible()
    ben.get_by_label("Password", exact=True).fill(PASSWORD)
    ben.get_by_role("button", name="Sign in and join").click()
    expect(ben.get_by_role("heading", level=1)).to_contain_text("Acme Analytics")
    # The used link says so, clearly.
    ben.goto(ben_link)
    expect(ben.get_by_role("heading", level=1)).to_have_text("This invitation cannot be used")
    expect(ben.locator(".form-error")).to_contain_text("already been used")

    # 4. The owner makes Ana a viewer and puts Ben in Research.
    ana_m = Membership.of(User.by_email("ana@acme.example.com"), org)
    ben_m = Membership.of(User.by_email("ben@acme.example.com"), org)
    page.goto("/members/")
    expect(page.locator("hgroup p")).to_have_text("3 people in Acme Analytics")
    with page.expect_response(lambda r: r.url.endswith(f"/members/{ana_m.id}/role")) as info:
        page.get_by_label("Role of ana@acme.example.com").select_option("viewer")
    assert info.value.status == 200
    expect(_toast(page, "Ana Analyst is now viewer.")).to_be_visible()
    with page.expect_response(lambda r: r.url.endswith(f"/members/{ben_m.id}/department")) as info:
        page.get_by_label("Department of ben@acme.example.com").select_option(str(research.id))
    assert info.value.status == 200
    expect(_toast(page, "Ben Existing moved to Research.")).to_be_visible()
    assert "Change this member's role?" in dialogs
    # Active search narrows the list and keeps the address.
    page.get_by_label("Search members").fill("ben")
    expect(page.locator("#members tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/members/\?q=ben"))
    page.get_by_label("Search members").fill("")
    expect(page.locator("#members tbody tr")).to_have_count(3)
    shot(page, "4-roles-and-departments")
    assert Membership.get_by_id(ana_m.id).role == "viewer"
    assert Membership.get_by_id(ben_m.id).department_id == research.id

    # 5. The viewer sees the members but has no controls; a forged POST is refused.
    ana.goto("/members/")
    expect(ana.locator("#members tbody tr")).to_have_count(3)
    expect(ana.locator("#members")).to_contain_text("Research")
    expect(ana.locator("#bulk-form")).to_have_count(0)
    expect(ana.get_by_label("Role of ben@acme.example.com")).to_have_count(0)
    expect(ana.get_by_role("link", name="Invitations")).to_have_count(0)
    shot(ana, "5-viewer-members")
    token = ana.locator('meta[name="csrf-token"]').get_attribute("content")
    forged = ana.request.post(f"/members/{ben_m.id}/role", form={"role": "viewer", "csrf_token": token})
    assert forged.status == 403
    forged = ana.request.post("/members/bulk", form={"action": "remove", "ids": str(ben_m.id), "confirm": "1",
                                                     "csrf_token": token})
    assert forged.status == 403
    assert Membership.get_by_id(ben_m.id).role == "member"

    # 6. The activity feed tells the story.
    page.goto("/team/activity")
    feed = page.locator("main")
    expect(feed).to_contain_text("invited ana@acme.example.com as member")
    expect(feed).to_contain_text("invited ben@acme.example.com as member")
    expect(feed).to_contain_text("joined")
    expect(feed).to_contain_text("role from member to viewer")
    expect(feed).to_contain_text("in Research")
    shot(page, "6-activity")

    # 7. Bulk: select everyone on the page and move them to Research at once.
    page.goto("/members/")
    page.get_by_label("Select all on this page").check()
    expect(page.get_by_label("Select ana@acme.example.com")).to_be_checked()
    page.get_by_label("Department for the selected members").select_option(str(research.id))
    with page.expect_response(lambda r: r.url.endswith("/members/bulk")) as info:
        page.get_by_role("button", name="Move", exact=True).click()
    assert info.value.status == 200
    expect(page.locator(".bulk-results")).to_contain_text("Ana Analyst moved to Research.")
    expect(page.locator(".bulk-results")).to_contain_text("Ben Existing moved to Research.")
    shot(page, "7-bulk-move")
    assert Membership.get_by_id(ana_m.id).department_id == research.id

"""Journeys through accounts: sign-up and onboarding, signing out and in,
password reset."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.support import PASSWORD

NEW_PASSWORD = "a brand new passphrase 42"


def _submit(page, button: str, url_part: str):
    """Click a plain form's submit button; returns the POST's response."""
    with page.expect_response(lambda r: r.request.method == "POST" and url_part in r.url) as info:
        page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_load_state()
    return info.value


# --- a. sign up, create the organization, land on the empty dashboard ----------

def test_sign_up_then_create_organization_lands_on_empty_dashboard(page, app_ctx, shot):
    from costguardian.models import Organization, User

    page.goto("/login")
    page.get_by_role("link", name="Create an account").click()
    expect(page).to_have_url(re.compile(r"/signup$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Create your account")

    # Bad input first: the passwords differ.
    page.get_by_label("Your name").fill("Nina Newcomer")
    page.get_by_label("Work email").fill("nina@nimbus.example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD + " typo")
    response = _submit(page, "Create account", "/signup")
    assert response.status == 422
    expect(page).to_have_url(re.compile(r"/signup$"))
    expect(page.locator("#confirm-help")).to_have_text("The passwords do not match.")
    expect(page.get_by_label("Repeat password")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Work email")).to_have_value("nina@nimbus.example.com")
    expect(page.get_by_label("Your name")).to_have_value("Nina Newcomer")
    shot(page, "1-passwords-differ")

    # A password that is too short.
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Repeat password").fill("short")
    response = _submit(page, "Create account", "/signup")
    assert response.status == 422
    expect(page.locator("#password-help")).to_have_text("Use between 10 and 256 characters.")
    expect(page.get_by_label("Password", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#confirm-help")).to_have_count(0)
    shot(page, "2-password-too-short")
    assert User.select().count() == 0

    # Now right.
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()

    expect(page).to_have_url(re.compile(r"/orgs/new$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Create your organization")
    expect(page.locator(".flash-success")).to_contain_text("Welcome to Cost Guardian")
    expect(page.locator("details.user-menu summary")).to_have_text("Nina Newcomer")
    shot(page, "3-onboarding")

    page.get_by_label("Organization name").fill("Nimbus Labs")
    page.get_by_role("button", name="Create organization").click()

    expect(page).to_have_url(re.compile(r"/onboarding/organization$"))  # the setup wizard opens
    expect(page.locator("details.org-switcher summary")).to_have_text("Nimbus Labs")
    expect(page.locator(".flash-success")).to_have_text("Nimbus Labs is ready. A few steps take it to its first "
                                                        "priced call.")
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Nimbus Labs")
    expect(page.get_by_test_id("setup-checklist")).to_be_visible()
    empty = page.get_by_test_id("empty-dashboard")
    expect(empty).to_be_visible()
    expect(empty.get_by_role("heading", name="No usage yet")).to_be_visible()
    expect(page.locator("hgroup p")).to_contain_text("1 member · you are owner")
    shot(page, "4-dashboard")

    user = User.get(User.email == "nina@nimbus.example.com")
    assert user.name == "Nina Newcomer"
    assert [o.name for o in Organization.select()] == ["Nimbus Labs"]


# --- b. sign out, then back in ------------------------------------------------

def test_sign_out_and_sign_back_in(page, make_user, make_org, sign_in, sign_out, shot):
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    make_org("Acme Analytics", owner=owner)

    sign_in(page, "olga@acme.example.com")
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Analytics")

    sign_out(page)
    expect(page.locator(".flash-info")).to_have_text("You are signed out.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(page.locator("details.user-menu")).to_have_count(0)
    shot(page, "1-signed-out")

    # Signed out means signed out: the dashboard asks to sign in again.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))

    page.get_by_label("Email").fill("olga@acme.example.com")
    page.get_by_label("Password", exact=True).fill("not the password")
    response = _submit(page, "Sign in", "/login")
    assert response.status == 422
    expect(page.locator(".form-error")).to_have_text("That email and password do not match an account.")
    expect(page.get_by_label("Email")).to_have_value("olga@acme.example.com")
    expect(page.get_by_label("Password", exact=True)).to_have_value("")
    shot(page, "2-wrong-password")

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Analytics")
    expect(page.locator("details.user-menu summary")).to_have_text("Olga Owner")
    shot(page, "3-signed-in-again")


# --- e. password reset ----------------------------------------------------------

def _reset_link(email: str) -> str:
    from costguardian.models import OutboxMessage

    message = (OutboxMessage.select().where(OutboxMessage.to_address == email)
               .order_by(OutboxMessage.id.desc()).first())
    assert message is not None, f"no email was sent to {email}"
    assert message.status == "sent"
    match = re.search(r"https?://\S+/reset-password/\S+", message.text_body)
    assert match, message.text_body
    return match.group(0)


def test_password_reset(page, make_user, make_org, sign_out, live_server, shot):
    from costguardian.models import OutboxMessage

    user = make_user("rita@acme.example.com", name="Rita Reset")
    make_org("Acme Analytics", owner=user)

    page.goto("/login")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Reset your password")
    page.get_by_label("Email").fill("rita@acme.example.com")
    page.get_by_role("button", name="Send the reset link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    expect(page.locator("article")).to_contain_text("rita@acme.example.com")
    shot(page, "1-check-your-email")

    link = _reset_link("rita@acme.example.com")
    assert link.startswith(live_server + "/reset-password/")
    assert OutboxMessage.get(OutboxMessage.to_address == "rita@acme.example.com").subject

    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a new password")
    # Bad input first: the two fields differ.
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD + "!")
    response = _submit(page, "Save the new password", "/reset-password/")
    assert response.status == 422
    expect(page.locator("#confirm-help")).to_have_text("The passwords do not match.")
    shot(page, "2-passwords-differ")

    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Save the new password").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator(".flash-success")).to_have_text(
        "Your password is changed, and every other session is signed out.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Analytics")
    expect(page.locator("details.user-menu summary")).to_have_text("Rita Reset")
    shot(page, "3-signed-in")

    # The old password no longer works; the new one does.
    sign_out(page)
    page.get_by_label("Email").fill("rita@acme.example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    response = _submit(page, "Sign in", "/login")
    assert response.status == 422
    expect(page.locator(".form-error")).to_have_text("That email and password do not match an account.")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Analytics")

    # The link worked once.
    sign_out(page)
    response = page.goto(link)
    assert response.status == 410
    expect(page.get_by_role("heading", level=1)).to_have_text("This link no longer works")
    expect(page.get_by_role("button", name="Send a new link")).to_be_visible()
    shot(page, "4-link-used")

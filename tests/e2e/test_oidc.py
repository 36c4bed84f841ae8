"""d. "Sign in with Google" against the fake OIDC provider (oidc-provider-mock on
localhost; the app on 127.0.0.1, whose callback URL follows the request host)."""
from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect


def _sign_in_with_google(page, oidc_provider, sub: str, shot=None):
    page.goto("/login")
    page.get_by_role("button", name="Sign in with Google").click()

    # The provider's consent form.
    expect(page).to_have_url(re.compile("^" + re.escape(oidc_provider.url) + "/oauth2/authorize"))
    expect(page.get_by_role("heading", name="Authorize Client")).to_be_visible()
    if shot:
        shot(page, "1-provider")
    page.locator("input[name=sub]").fill(sub)
    page.get_by_role("button", name="Authorize", exact=True).click()
    expect(page).to_have_url(re.compile(r"^http://127\.0\.0\.1:\d+/"))


def test_first_google_sign_in_creates_the_account_and_starts_onboarding(page, oidc_provider, app_ctx, shot):
    from costguardian.models import ExternalIdentity, User

    sub = f"google-{uuid.uuid4().hex[:10]}"
    oidc_provider.set_user(sub, email="gina@gmail.example.com", email_verified=True, name="Gina Google")

    _sign_in_with_google(page, oidc_provider, sub, shot)

    expect(page).to_have_url(re.compile(r"/orgs/new$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Create your organization")
    expect(page.locator("details.user-menu summary")).to_have_text("Gina Google")
    shot(page, "2-onboarding")

    user = User.get(User.email == "gina@gmail.example.com")
    assert user.name == "Gina Google"
    assert user.password_hash is None
    identity = ExternalIdentity.get(ExternalIdentity.user == user)
    assert identity.subject == sub
    assert identity.issuer == oidc_provider.url


def test_google_sign_in_links_an_existing_password_account(page, oidc_provider, make_user, make_org, shot):
    from costguardian.models import ExternalIdentity, User
    from costguardian.services.team import accounts
    from costguardian.services.actor import Actor

    user = make_user("paula@acme.example.com", name="Paula Password")
    # confirmed: linking an unconfirmed account would end its password (tests/test_oidc.py)
    accounts.mark_email_verified(user, Actor.system(), method="link")
    make_org("Acme Analytics", owner=user)
    sub = f"google-{uuid.uuid4().hex[:10]}"
    oidc_provider.set_user(sub, email="Paula@acme.example.com", email_verified=True, name="Paula P.")

    _sign_in_with_google(page, oidc_provider, sub)

    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Analytics")
    expect(page.locator("details.org-switcher summary")).to_have_text("Acme Analytics")
    expect(page.locator("details.user-menu summary")).to_have_text("Paula Password")
    shot(page, "dashboard")

    assert User.select().count() == 1
    identity = ExternalIdentity.get(ExternalIdentity.subject == sub)
    assert identity.user_id == user.id
    assert User.get_by_id(user.id).password_hash == user.password_hash  # the password still works

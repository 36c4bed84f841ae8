"""The platform's sign-up policy (console Configuration, or CG_SIGNUPS /
CG_SIGNUP_DOMAINS): open, invite only or closed, and the allowed domains,
on every path that creates an account (the sign-up page, a first OIDC
sign-in, an invitation's page). Existing accounts are never affected, and
operators (the CLI) still create accounts."""
from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

from costguardian.models import AuditLog, ExternalIdentity, Membership, OutboxMessage, User
from costguardian.services.actor import Actor
from costguardian.services.errors import ValidationError
from costguardian.services.platform import settings
from costguardian.services.team import accounts, invitations
from tests.support import PASSWORD, SYSTEM, Client, other_app

LINK = re.compile(r"/invitations/accept/([A-Za-z0-9_-]+)")
NEW = {"name": "Nina New", "email": "nina@example.com", "password": PASSWORD, "confirm": PASSWORD}


def _policy(mode: str = "open", domains: str = "") -> None:
    settings.put("signups", mode, SYSTEM)
    settings.put("signup_domains", domains, SYSTEM)


def _invite(org, owner, email: str) -> str:
    invitations.invite(org, email, "member", Actor(user=owner))
    message = (OutboxMessage.select().where(OutboxMessage.to_address == email)
               .order_by(OutboxMessage.id.desc()).first())
    return LINK.search(message.text_body).group(1)


def _oidc(client: Client, oidc_provider, sub: str, email: str):
    oidc_provider.set_user(sub, email=email, email_verified=True, name="Oscar")
    start = client.get("/login/oidc")
    callback = urlparse(oidc_provider.authorize(start.headers["Location"], sub))
    return client.get(f"{callback.path}?{callback.query}")


@pytest.fixture
def acme(make_user, make_org):
    owner = make_user("owner@acme.example.com")
    return make_org("Acme", owner=owner), owner


# --- open (the default) --------------------------------------------------------------------

def test_open_by_default(client, app_ctx):
    assert settings.signup_mode() == "open"
    assert client.post("/signup", NEW).status_code == 302
    assert User.by_email("nina@example.com") is not None


# --- closed ------------------------------------------------------------------------------

def test_closed_refuses_the_sign_up_page(client, app_ctx):
    _policy("closed")
    page = client.get("/signup")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Sign-ups are closed" in html and 'data-testid="signups-refused"' in html and 'name="password"' not in html
    response = client.post("/signup", NEW)
    assert response.status_code == 403 and "Sign-ups are closed" in response.get_data(as_text=True)
    assert User.by_email("nina@example.com") is None


def test_closed_still_lets_existing_people_sign_in(client, make_user, oidc_provider):
    make_user("kept@example.com")
    linked = Client(client.app)
    assert _oidc(linked, oidc_provider, "g-keep", "linked@example.com").headers["Location"] == "/"
    linked.sign_out()
    _policy("closed")
    client.sign_in("kept@example.com")  # password
    assert client.get("/account/").status_code == 200
    again = _oidc(linked, oidc_provider, "g-keep", "linked@example.com")  # OIDC, already linked
    assert again.headers["Location"] == "/" and linked.get("/account/").status_code == 200


def test_closed_refuses_a_first_oidc_sign_in_with_a_clear_message(client, app_ctx, oidc_provider):
    _policy("closed")
    response = _oidc(client, oidc_provider, "g-new", "stranger@example.com")
    assert response.headers["Location"] == "/login"
    html = client.get("/login").get_data(as_text=True)
    assert "There is no account for stranger@example.com here. Sign-ups are closed" in html
    assert User.by_email("stranger@example.com") is None and ExternalIdentity.select().count() == 0


def test_closed_refuses_new_accounts_from_invitations_but_members_can_still_join(app, acme, make_user):
    org, owner = acme
    _policy("closed")
    token = _invite(org, owner, "ana@acme.example.com")
    client = Client(app)
    page = client.get(f"/invitations/accept/{token}").get_data(as_text=True)
    assert "Sign-ups are closed on this installation" in page  # said before the form is filled
    response = client.post(f"/invitations/accept/{token}", {"signup-name": "Ana", "signup-password": PASSWORD,
                                                            "signup-confirm": PASSWORD})
    assert response.status_code == 422 and "Sign-ups are closed" in response.get_data(as_text=True)
    assert User.by_email("ana@acme.example.com") is None

    ben = make_user("ben@elsewhere.example.org")  # an existing account accepts as ever
    token = _invite(org, owner, "ben@elsewhere.example.org")
    other = Client(app)
    assert other.post(f"/invitations/accept/{token}", {"signin-password": PASSWORD}).status_code == 302
    assert Membership.of(ben, org).role == "member"


def test_operators_still_create_accounts(app_ctx):
    _policy("closed", "example.com")
    user = accounts.sign_up("ops@elsewhere.example.org", "Ops", PASSWORD, SYSTEM)  # the CLI's path
    assert user.id and AuditLog.get(AuditLog.action == "user.signed_up").target_id == str(user.id)
    with pytest.raises(ValidationError) as refused:
        accounts.sign_up("two@example.com", "", PASSWORD, SYSTEM, channel="signup")
    assert "closed" in refused.value.errors["email"]


# --- invite only --------------------------------------------------------------------------

def test_invite_only_refuses_the_sign_up_page(client, app_ctx):
    _policy("invite_only")
    html = client.get("/signup").get_data(as_text=True)
    assert "Sign-ups are by invitation" in html and 'name="password"' not in html
    assert client.post("/signup", NEW).status_code == 403
    assert User.by_email("nina@example.com") is None


def test_invite_only_creates_accounts_through_an_invitation(app, acme):
    org, owner = acme
    _policy("invite_only")
    token = _invite(org, owner, "ana@acme.example.com")
    client = Client(app)
    page = client.get(f"/invitations/accept/{token}").get_data(as_text=True)
    assert "Create account and join" in page and "invitation only" not in page
    response = client.post(f"/invitations/accept/{token}", {"signup-name": "Ana", "signup-password": PASSWORD,
                                                            "signup-confirm": PASSWORD})
    assert response.status_code == 302
    assert Membership.of(User.by_email("ana@acme.example.com"), org).role == "member"


def test_invite_only_oidc_sign_up_needs_a_pending_invitation_for_that_address(app, acme, oidc_provider):
    org, owner = acme
    _policy("invite_only")
    # No invitation: refused
    stranger = Client(app)
    assert _oidc(stranger, oidc_provider, "g-1", "stranger@example.com").headers["Location"] == "/login"
    assert "by invitation only" in stranger.get("/login").get_data(as_text=True)
    assert User.by_email("stranger@example.com") is None

    # An invitation for another address pending in the session: refused as well
    token = _invite(org, owner, "ana@acme.example.com")
    other = Client(app)
    other.get(f"/invitations/accept/{token}")
    assert _oidc(other, oidc_provider, "g-2", "mallory@example.com").headers["Location"] == "/login"
    assert User.by_email("mallory@example.com") is None

    # The invited address, from its invitation's page: the account is created and joins
    invited = Client(app)
    invited.get(f"/invitations/accept/{token}")
    response = _oidc(invited, oidc_provider, "g-3", "ana@acme.example.com")
    assert response.headers["Location"] == "/"
    ana = User.by_email("ana@acme.example.com")
    assert ana is not None and Membership.of(ana, org).role == "member"


def test_invite_only_refuses_a_revoked_invitation_in_the_session(app, acme, oidc_provider):
    org, owner = acme
    _policy("invite_only")
    token = _invite(org, owner, "ana@acme.example.com")
    client = Client(app)
    client.get(f"/invitations/accept/{token}")
    invitations.revoke(invitations.by_token(token), Actor(user=owner))
    assert _oidc(client, oidc_provider, "g-4", "ana@acme.example.com").headers["Location"] == "/login"
    assert User.by_email("ana@acme.example.com") is None


# --- allowed domains ----------------------------------------------------------------------

def test_allowed_domains_limit_the_sign_up_page_exactly(client, app_ctx):
    _policy("open", "example.com\nacme.example.org")
    form = client.get("/signup").get_data(as_text=True)
    assert "Only addresses at example.com, acme.example.org may create an account here." in form
    for email in ("nina@other.example.net", "nina@eu.example.com"):  # a subdomain is not the domain
        response = client.post("/signup", {**NEW, "email": email})
        assert response.status_code == 422, email
        assert "Only addresses at example.com, acme.example.org" in response.get_data(as_text=True)
        assert User.by_email(email) is None
    assert client.post("/signup", {**NEW, "email": "Nina@Example.com"}).status_code == 302
    assert User.by_email("nina@example.com") is not None


def test_allowed_domains_apply_to_invitations_and_oidc(app, acme, oidc_provider, make_user):
    org, owner = acme
    make_user("old@elsewhere.example.org")  # created before the rule
    _policy("open", "acme.example.com")
    token = _invite(org, owner, "ana@gmail.example.net")
    client = Client(app)
    assert "Only addresses at acme.example.com" in client.get(f"/invitations/accept/{token}").get_data(as_text=True)
    refused = client.post(f"/invitations/accept/{token}", {"signup-name": "Ana", "signup-password": PASSWORD,
                                                           "signup-confirm": PASSWORD})
    assert refused.status_code == 422 and User.by_email("ana@gmail.example.net") is None

    outsider = Client(app)
    assert _oidc(outsider, oidc_provider, "g-5", "oscar@gmail.example.net").headers["Location"] == "/login"
    assert "Only addresses at acme.example.com" in outsider.get("/login").get_data(as_text=True)
    insider = Client(app)
    assert _oidc(insider, oidc_provider, "g-6", "ina@acme.example.com").headers["Location"] == "/"
    assert User.by_email("ina@acme.example.com") is not None

    # existing accounts at other domains are not affected
    Client(app).sign_in("old@elsewhere.example.org")


# --- from the environment -----------------------------------------------------------------

def test_the_environment_sets_the_policy(app_ctx):
    with other_app(CG_SIGNUPS="Invite_Only", CG_SIGNUP_DOMAINS="corp.example.com, Example.org") as app:
        client = Client(app)
        assert "Sign-ups are by invitation" in client.get("/signup").get_data(as_text=True)
        with app.app_context():
            assert settings.get("signup_domains") == ["corp.example.com", "example.org"]
            assert settings.signup_refusal("a@corp.example.com", "invitation") is None
            assert "Only addresses" in settings.signup_refusal("a@example.com", "invitation")
    with other_app(CG_SIGNUPS="nobody") as app, app.app_context():
        assert settings.signup_mode() == "closed"  # a typo refuses rather than opens

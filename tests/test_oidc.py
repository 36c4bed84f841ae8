"""'Sign in with Google' through Authlib against a real OIDC provider on localhost."""
from __future__ import annotations

from urllib.parse import urlparse

from costguardian.models import AuditLog, ExternalIdentity, Membership, Organization, User
from costguardian.services.team import accounts, orgs
from tests.support import PASSWORD, SYSTEM, Client, other_app


def _sign_in_at_provider(client: Client, oidc_provider, sub: str, next_path: str | None = None):
    start = client.get("/login/oidc" + (f"?next={next_path}" if next_path else ""))
    assert start.status_code == 302
    authorize_url = start.headers["Location"]
    assert authorize_url.startswith(oidc_provider.url + "/oauth2/authorize")
    callback = oidc_provider.authorize(authorize_url, sub)
    parts = urlparse(callback)
    assert parts.path == "/login/oidc/callback"
    return client.get(f"{parts.path}?{parts.query}")


def test_login_page_offers_the_provider(client):
    assert "Sign in with Google" in client.get("/login").get_data(as_text=True)


def test_first_sign_in_creates_the_account_and_goes_to_onboarding(client, oidc_provider, app_ctx):
    oidc_provider.set_user("g-100", email="Gina@Example.com", email_verified=True, name="Gina G")
    response = _sign_in_at_provider(client, oidc_provider, "g-100")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/").headers["Location"] == "/orgs/new"
    user = User.by_email("gina@example.com")
    assert user.name == "Gina G" and user.password_hash is None
    identity = ExternalIdentity.get(ExternalIdentity.user == user)
    assert identity.subject == "g-100" and identity.issuer == oidc_provider.url
    assert AuditLog.select().where(AuditLog.action == "auth.signed_in", AuditLog.actor == user).count() == 1


def test_returning_user_is_recognised_by_subject(client, oidc_provider, app_ctx):
    oidc_provider.set_user("g-200", email="hal@example.com", email_verified=True)
    _sign_in_at_provider(client, oidc_provider, "g-200")
    client.sign_out()
    oidc_provider.set_user("g-200", email="hal.new@example.com", email_verified=True)  # email changed upstream
    response = _sign_in_at_provider(client, oidc_provider, "g-200", next_path="/account/")
    assert response.headers["Location"] == "/account/"
    assert User.select().count() == 1


def test_verified_email_links_an_existing_password_account(client, oidc_provider, make_user, make_org):
    user = make_user("ivy@example.com")
    make_org("Ivy Co", owner=user)
    oidc_provider.set_user("g-300", email="ivy@example.com", email_verified=True)
    _sign_in_at_provider(client, oidc_provider, "g-300")
    assert "<h1>Ivy Co</h1>" in client.get("/").get_data(as_text=True)
    assert ExternalIdentity.get(ExternalIdentity.subject == "g-300").user_id == user.id


def test_unverified_email_does_not_take_over_an_existing_account(client, oidc_provider, make_user):
    make_user("jon@example.com")
    oidc_provider.set_user("g-400", email="jon@example.com", email_verified=False)
    response = _sign_in_at_provider(client, oidc_provider, "g-400")
    assert response.headers["Location"] == "/login"
    assert "did not confirm" in client.get("/login").get_data(as_text=True)
    assert ExternalIdentity.select().count() == 0
    assert client.get("/account/").status_code == 302


def test_denied_consent_returns_to_login_with_a_message(client, oidc_provider):
    import requests

    start = client.get("/login/oidc")
    denied = requests.post(start.headers["Location"], data={"action": "deny"}, allow_redirects=False, timeout=5)
    parts = urlparse(denied.headers["Location"])
    response = client.get(f"{parts.path}?{parts.query}")
    assert response.headers["Location"] == "/login"
    assert "did not complete" in client.get("/login").get_data(as_text=True)


def test_callback_with_forged_state_is_refused(client, app_ctx):
    response = client.get("/login/oidc/callback?code=abc&state=forged")
    assert response.headers["Location"] == "/login"
    assert User.select().count() == 0


def test_without_configuration_the_provider_is_hidden():
    with other_app(GOOGLE_CLIENT_ID="") as app:
        client = Client(app)
        assert "Sign in with" not in client.get("/login").get_data(as_text=True)
        assert client.get("/login/oidc").status_code == 404


def test_unreachable_provider_is_explained():
    with other_app(GOOGLE_CLIENT_ID="x",
                   OIDC_SERVER_METADATA_URL="http://127.0.0.1:9/.well-known/openid-configuration") as app:
        client = Client(app)
        response = client.get("/login/oidc")
        assert response.headers["Location"] == "/login"
        assert "sign-in is unavailable right now" in client.get("/login").get_data(as_text=True)


def test_password_still_works_after_linking_a_confirmed_account(client, oidc_provider, make_user):
    kim = make_user("kim@example.com")
    accounts.mark_email_verified(kim, SYSTEM, method="link")
    password_client = Client(client.app)
    password_client.sign_in("kim@example.com", PASSWORD)
    oidc_provider.set_user("g-500", email="kim@example.com", email_verified=True)
    _sign_in_at_provider(client, oidc_provider, "g-500")
    assert password_client.get("/account/").status_code == 200  # the other session goes on
    client.sign_out()
    client.sign_in("kim@example.com", PASSWORD)
    assert AuditLog.select().where(AuditLog.action == "auth.unproven_account_claimed").count() == 0


def test_linking_takes_an_unconfirmed_account_from_whoever_set_its_password(app, oidc_provider, make_user, make_org):
    """An attacker signs up as victim@corp.com with their own password; the
    victim later signs in with the provider, which vouches for the address.
    The attacker's password and sessions must not survive into the now
    confirmed account, which domain join puts in Corp's organization."""
    boss = make_user("boss@corp.com")
    corp = make_org("Corp", owner=boss)
    orgs.update_join_domain(corp, SYSTEM, "corp.com", "member")
    orgs.verify_join_domain(Organization.get_by_id(corp.id), "corp.com", SYSTEM)
    attacker = Client(app)
    attacker_password = "the attacker's own password"
    response = attacker.post("/signup", {"name": "Victim", "email": "victim@corp.com", "password": attacker_password,
                                         "confirm": attacker_password})
    assert response.status_code == 302 and attacker.get("/account/").status_code == 200

    victim = Client(app)
    oidc_provider.set_user("g-victim", email="victim@corp.com", email_verified=True)
    _sign_in_at_provider(victim, oidc_provider, "g-victim")
    account = User.by_email("victim@corp.com")
    assert account.password_hash is None and account.session_version == 1
    assert account.email_verified_at is not None and Membership.of(account, corp).role == "member"
    assert victim.get("/account/").status_code == 200  # the victim's own session works
    # the attacker's session has ended, and their password opens nothing
    assert attacker.get("/account/").status_code == 302
    retry = Client(app).post("/login", {"email": "victim@corp.com", "password": attacker_password})
    assert retry.status_code == 422
    claimed = AuditLog.get(AuditLog.action == "auth.unproven_account_claimed")
    assert claimed.target_id == str(account.id) and claimed.actor_id == account.id
    assert claimed.detail == {"issuer": oidc_provider.url, "password_removed": True}
    # the victim sets a password of their own (no current password to give) and signs in with it
    assert "set a password to sign in with your email too" in victim.get("/account/").get_data(as_text=True)
    response = victim.post("/account/password", {"new_password": "the victim's password", "confirm":
                                                 "the victim's password"})
    assert response.status_code in (200, 302)
    victim.sign_out()
    victim.sign_in("victim@corp.com", "the victim's password")

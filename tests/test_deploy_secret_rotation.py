"""Rotating SECRET_KEY: with the old key in SECRET_KEY_FALLBACKS, everything
signed before the restart still verifies (session and remember-me cookies,
CSRF tokens, emailed links); without it, none of it does."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from costguardian.services.notifications import email as notification_email
from costguardian.services.team import accounts
from tests.support import PASSWORD, Client, other_app

OLD_KEY = "old-secret-key-0123456789abcdefghijklmnopqrstuv"
NEW_KEY = "new-secret-key-9876543210zyxwvutsrqponmlkjihgfe"


@dataclass
class SignedBefore:
    """What a browser and a mailbox hold from before the rotation."""
    session: str  # the session cookie (signed in, with a CSRF token in it)
    remember: str  # the remember-me cookie
    csrf: str  # a CSRF token from a page
    unsubscribe: str  # an unsubscribe link's token
    verify: str  # an email-verification link's token


@pytest.fixture
def signed_before(app_ctx, make_user, make_org):
    user = make_user("rosa@example.com")
    org = make_org("Acme", owner=user)
    with other_app(SECRET_KEY=OLD_KEY) as old:
        browser = Client(old)
        browser.post("/login", {"email": user.email, "password": PASSWORD, "remember": "y"})
        csrf = browser.csrf_token()
        with old.app_context():
            unsubscribe = notification_email.unsubscribe_token(org.id, user.id, notification_email.ALL_TYPES)
            verify = accounts.verification_token(user)
        jar = browser.http
        cookie_name = old.config["SESSION_COOKIE_NAME"]
        yield SignedBefore(jar.get_cookie(cookie_name).value, jar.get_cookie("remember_token").value,
                           csrf, unsubscribe, verify)


def _browser(app, session: str | None = None, remember: str | None = None) -> Client:
    client = Client(app)
    if session:
        client.http.set_cookie(app.config["SESSION_COOKIE_NAME"], session)
    if remember:
        client.http.set_cookie("remember_token", remember)
    return client


def test_everything_signed_with_the_old_key_still_works_with_it_in_the_fallbacks(signed_before):
    with other_app(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=f" {OLD_KEY} , ") as app:  # as the environment gives it
        assert app.config["SECRET_KEY_FALLBACKS"] == [OLD_KEY]
        assert _browser(app, session=signed_before.session).get("/account/").status_code == 200
        assert _browser(app, remember=signed_before.remember).get("/account/").status_code == 200

        unsubscribe = Client(app).get(f"/notifications/unsubscribe/{signed_before.unsubscribe}")
        assert unsubscribe.status_code == 200, unsubscribe.get_data(as_text=True)
        assert Client(app).get(f"/account/verify-email/{signed_before.verify}").status_code == 200

        browser = _browser(app, session=signed_before.session)
        browser._token = signed_before.csrf  # the token a page rendered before the restart
        assert browser.post("/logout").status_code == 302
        # new signatures use the new key: the new token verifies without the fallback
        fresh = _browser(app, session=signed_before.session)
        assert fresh.csrf_token() != signed_before.csrf


def test_without_the_fallback_the_old_signatures_are_refused(signed_before):
    with other_app(SECRET_KEY=NEW_KEY) as app:
        assert _browser(app, session=signed_before.session).get("/account/").status_code == 302
        assert _browser(app, remember=signed_before.remember).get("/account/").status_code == 302
        assert Client(app).get(f"/notifications/unsubscribe/{signed_before.unsubscribe}").status_code == 400
        assert Client(app).get(f"/account/verify-email/{signed_before.verify}").status_code == 400

        browser = Client(app)
        browser._token = signed_before.csrf
        assert browser.post("/login", {"email": "rosa@example.com", "password": PASSWORD}).status_code == 400

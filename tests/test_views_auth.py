"""Sign-up, sign-in, sign-out and password reset through HTTP."""
from __future__ import annotations

import re

from costguardian.models import AuditLog, OutboxMessage, User
from tests.support import PASSWORD, Client


def _signup(client, **overrides):
    data = {"name": "Sam Signup", "email": "sam@example.com", "password": PASSWORD, "confirm": PASSWORD}
    data.update(overrides)
    return client.post("/signup", data)


def test_signup_signs_in_and_asks_for_an_organization(client, app_ctx):
    response = _signup(client)
    assert response.status_code == 302 and response.headers["Location"] == "/orgs/new"
    assert User.by_email("sam@example.com").name == "Sam Signup"
    page = client.get("/").headers["Location"]
    assert page == "/orgs/new"  # no organization yet: the dashboard sends to onboarding
    assert "Create your organization" in client.get("/orgs/new").get_data(as_text=True)


def test_signup_with_bad_input_answers_422_with_field_messages(client, app_ctx):
    response = _signup(client, email="not-an-email", password="short", confirm="different")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Use between 10 and 256 characters." in html
    assert "The passwords do not match." in html
    assert User.select().count() == 0


def test_signup_with_taken_email_says_so(client, make_user):
    make_user("sam@example.com")
    response = _signup(client, email="SAM@example.com")
    assert response.status_code == 422
    assert "already exists" in response.get_data(as_text=True)


def test_signup_rejects_invalid_email_from_the_service(client, app_ctx):
    response = _signup(client, email="sam@@example")
    assert response.status_code == 422
    assert User.select().count() == 0


def test_login_and_logout(client, make_user):
    make_user("lee@example.com")
    response = client.post("/login", {"email": "Lee@Example.com", "password": PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/account/").status_code == 200
    response = client.sign_out()
    assert response.headers["Location"] == "/login"
    assert client.get("/account/").status_code == 302
    actions = [row.action for row in AuditLog.select().order_by(AuditLog.id)]
    assert "auth.signed_in" in actions and "auth.signed_out" in actions


def test_login_with_wrong_password_is_422_and_generic(client, make_user):
    make_user("lee@example.com")
    for email in ("lee@example.com", "nobody@example.com"):
        response = client.post("/login", {"email": email, "password": "wrong password!"})
        assert response.status_code == 422
        assert "That email and password do not match an account." in response.get_data(as_text=True)


def test_login_redirects_to_safe_next_only(client, make_user):
    make_user("lee@example.com")
    response = client.post("/login?next=/members/", {"email": "lee@example.com", "password": PASSWORD})
    assert response.headers["Location"] == "/members/"
    client.sign_out()
    response = client.post("/login?next=https://evil.example/", {"email": "lee@example.com", "password": PASSWORD})
    assert response.headers["Location"] == "/"
    client.sign_out()
    response = client.post("/login?next=//evil.example/", {"email": "lee@example.com", "password": PASSWORD})
    assert response.headers["Location"] == "/"


def test_signed_in_user_visiting_login_goes_to_dashboard(owner_client):
    client, _, _ = owner_client
    assert client.get("/login").headers["Location"] == "/"
    assert client.get("/signup").headers["Location"] == "/"


def test_disabled_user_cannot_sign_in_and_loses_session(client, make_user):
    user = make_user("lee@example.com")
    client.sign_in("lee@example.com")
    user.is_disabled = True
    user.save()
    assert client.get("/account/").status_code == 302
    response = client.post("/login", {"email": "lee@example.com", "password": PASSWORD})
    assert response.status_code == 422


def _reset_link() -> str:
    message = OutboxMessage.select().order_by(OutboxMessage.id.desc()).first()
    return re.search(r"http://localhost(/reset-password/\S+)", message.text_body).group(1)


def test_password_reset_flow(client, make_user):
    make_user("rae@example.com")
    other = Client(client.app)
    other.sign_in("rae@example.com")
    response = client.post("/forgot-password", {"email": "rae@example.com"})
    assert response.status_code == 200 and "Check your email" in response.get_data(as_text=True)
    link = _reset_link()
    assert client.get(link).status_code == 200

    response = client.post(link, {"password": "new password 123", "confirm": "mismatch 12345"})
    assert response.status_code == 422 and "The passwords do not match." in response.get_data(as_text=True)

    response = client.post(link, {"password": "new password 123", "confirm": "new password 123"})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/account/").status_code == 200  # signed in by the reset
    assert other.get("/account/").status_code == 302  # every other session is gone

    assert client.get(link).status_code == 410  # single use
    client.sign_out()
    assert client.post("/login", {"email": "rae@example.com", "password": PASSWORD}).status_code == 422
    client.sign_in("rae@example.com", "new password 123")


def test_forgot_password_for_unknown_email_looks_the_same_and_sends_nothing(client, app_ctx):
    response = client.post("/forgot-password", {"email": "ghost@example.com"})
    assert response.status_code == 200 and "Check your email" in response.get_data(as_text=True)
    assert OutboxMessage.select().count() == 0


def test_reset_with_garbage_token_is_gone(client, app_ctx):
    assert client.get("/reset-password/not-a-token").status_code == 410
    assert client.post("/reset-password/not-a-token", {"password": "x" * 12, "confirm": "x" * 12}).status_code == 410


def test_external_links_use_the_configured_base_url_not_the_host_header(app):
    from costguardian.rendering import external_url

    with app.test_request_context("/", headers={"Host": "evil.example"}):
        assert external_url("auth.reset_password", token="t") == "http://evil.example/reset-password/t"
        app.config["CG_BASE_URL"] = "https://costguardian.example.com/"
        try:
            assert external_url("auth.reset_password", token="t") == \
                "https://costguardian.example.com/reset-password/t"
            assert external_url("auth.oidc_callback") == "https://costguardian.example.com/login/oidc/callback"
        finally:
            app.config["CG_BASE_URL"] = None

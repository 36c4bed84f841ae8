"""Signed-in sessions: each browser's row, listed on the account page, ended
from another browser, by sign-out, by a password change, or all at once."""
from __future__ import annotations

from costguardian.models import AuditLog, User, UserSession
from costguardian.services.actor import Actor
from costguardian.services.platform import sessions
from tests.support import PASSWORD, Client


def _browser(app, user) -> Client:
    client = Client(app)
    client.sign_in(user.email)
    return client


def test_each_sign_in_is_a_session_listed_on_the_account_page(app, make_user):
    user = make_user("ann@example.com")
    laptop, phone = _browser(app, user), _browser(app, user)
    rows = list(UserSession.select().where(UserSession.user == user).order_by(UserSession.id))
    assert [(r.method, r.ended_at) for r in rows] == [("password", None), ("password", None)]
    page = phone.get("/account/").get_data(as_text=True)
    assert page.count("data-session=") == 2 and "This browser" in page
    assert laptop.get("/account/").status_code == 200


def test_signing_another_browser_out_ends_it_at_its_next_request(app, make_user):
    user = make_user("ann@example.com")
    laptop, phone = _browser(app, user), _browser(app, user)
    laptop_row, phone_row = UserSession.select().where(UserSession.user == user).order_by(UserSession.id)

    assert phone.post(f"/account/sessions/{laptop_row.id}/end").status_code == 302
    response = laptop.get("/account/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert "Your session was ended" in laptop.get("/login").get_data(as_text=True)
    assert phone.get("/account/").status_code == 200
    assert UserSession.get_by_id(laptop_row.id).ended_reason == "ended_by_user"
    assert AuditLog.select().where(AuditLog.action == "user.session_ended").count() == 1
    # your own session is ended by signing out, not from the list
    assert phone.post(f"/account/sessions/{phone_row.id}/end").status_code == 409


def test_nobody_ends_someone_elses_session(app, make_user):
    ann, bob = make_user("ann@example.com"), make_user("bob@example.com")
    _browser(app, ann)
    bob_client = _browser(app, bob)
    ann_row = UserSession.get(UserSession.user == ann)
    assert bob_client.post(f"/account/sessions/{ann_row.id}/end").status_code == 404
    assert UserSession.get_by_id(ann_row.id).ended_at is None


def test_sign_out_every_other_session(app, make_user):
    user = make_user("ann@example.com")
    others = [_browser(app, user) for _ in range(2)]
    mine = _browser(app, user)
    assert mine.post("/account/sessions/end-others").status_code == 302
    for other in others:
        assert other.get("/account/").status_code == 302
    assert mine.get("/account/").status_code == 200
    assert UserSession.select().where(UserSession.user == user, UserSession.ended_at.is_null()).count() == 1
    # remember-me cookies name the old session version: they are ended too
    assert User.get_by_id(user.id).session_version == 1


def test_sign_out_ends_the_row(app, make_user):
    user = make_user("ann@example.com")
    client = _browser(app, user)
    client.sign_out()
    assert UserSession.get(UserSession.user == user).ended_reason == "signed_out"


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(app, make_user):
    user = make_user("ann@example.com")
    other, mine = _browser(app, user), _browser(app, user)
    new = "a much longer passphrase 42"
    response = mine.post("/account/password", {"current_password": PASSWORD, "new_password": new, "confirm": new})
    assert response.status_code == 200
    assert mine.get("/account/").status_code == 200
    assert other.get("/account/").status_code == 302
    live = UserSession.select().where(UserSession.user == user, UserSession.ended_at.is_null())
    assert [r.method for r in live] == ["password"] and live.count() == 1


def test_a_browser_without_a_session_row_gets_one(app, make_user):
    """A browser restored by its remember-me cookie (or signed in before rows
    were kept) carries no session key: it gets a row, and can then be ended."""
    user = make_user("ann@example.com")
    client = _browser(app, user)
    with client.http.session_transaction() as cookie:
        del cookie["sid"]
    assert client.get("/account/").status_code == 200
    rows = list(UserSession.select().where(UserSession.user == user).order_by(UserSession.id))
    assert [r.method for r in rows] == ["password", "remembered"]


def test_end_all_ends_remembered_browsers_too(app, make_user):
    user = make_user("ann@example.com")
    client = _browser(app, user)
    version = User.get_by_id(user.id).session_version
    assert sessions.end_all(user, "disabled", Actor(user=None)) == 1
    assert User.get_by_id(user.id).session_version == version + 1  # remember-me cookies name the old version
    assert client.get("/account/").status_code == 302


def _remembered_browser(app, user) -> Client:
    client = Client(app)
    response = client.post("/login", {"email": user.email, "password": PASSWORD, "remember": "y"})
    assert response.status_code == 302
    assert client.http.get_cookie("remember_token") is not None
    return client


def test_signing_out_a_remembered_browser_deletes_its_remember_me_cookie(app, make_user):
    user = make_user("ann@example.com")
    client = _remembered_browser(app, user)
    client.sign_out()
    assert client.http.get_cookie("remember_token") is None
    assert client.get("/account/").status_code == 302
    assert client.get("/account/").status_code == 302  # and it stays signed out


def test_a_remembered_browser_ended_elsewhere_stays_signed_out(app, make_user):
    user = make_user("ann@example.com")
    laptop = _remembered_browser(app, user)
    phone = _browser(app, user)
    laptop_row = UserSession.select().where(UserSession.user == user).order_by(UserSession.id).first()
    assert phone.post(f"/account/sessions/{laptop_row.id}/end").status_code == 302
    assert laptop.get("/account/").status_code == 302
    assert laptop.http.get_cookie("remember_token") is None
    assert laptop.get("/account/").status_code == 302
    assert UserSession.select().where(UserSession.user == user, UserSession.method == "remembered").count() == 0


def test_a_client_without_a_session_cookie_makes_at_most_one_row_a_minute(app, make_user):
    user = make_user("ann@example.com")
    client = _remembered_browser(app, user)
    for _ in range(3):
        client.http.delete_cookie("cg_session")  # keeps only its remember-me cookie
        assert client.get("/account/").status_code == 200
    assert UserSession.select().where(UserSession.user == user, UserSession.method == "remembered").count() == 1

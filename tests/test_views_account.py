"""A user's own profile and password."""
from __future__ import annotations

from costguardian.models import User
from tests.support import PASSWORD, Client


def test_profile_name_changes_through_htmx(owner_client):
    client, user, _ = owner_client
    response = client.post("/account/profile", {"name": "Olga O."}, htmx=True)
    assert response.status_code == 200 and "Profile saved." in response.headers["HX-Trigger"]
    assert User.get_by_id(user.id).name == "Olga O."
    response = client.post("/account/profile", {"name": "x" * 121}, htmx=True)
    assert response.status_code == 422 and "Field cannot be longer than 120 characters." in response.get_data(as_text=True)


def test_password_change_keeps_this_session_and_ends_others(app, owner_client):
    client, user, _ = owner_client
    other = Client(app)
    other.sign_in(user.email)
    response = client.post("/account/password", {"current_password": "wrong one!!", "new_password": "brand new pass 1",
                                                 "confirm": "brand new pass 1"}, htmx=True)
    assert response.status_code == 422 and "That is not your current password." in response.get_data(as_text=True)
    response = client.post("/account/password", {"current_password": PASSWORD, "new_password": "brand new pass 1",
                                                 "confirm": "brand new pass 1"}, htmx=True)
    assert response.status_code == 200 and "Password changed" in response.headers["HX-Trigger"]
    assert client.get("/account/").status_code == 200
    assert other.get("/account/").status_code == 302
    client.sign_out()
    client.sign_in(user.email, "brand new pass 1")


def test_password_change_validates_the_new_password(owner_client):
    client, _, _ = owner_client
    response = client.post("/account/password", {"current_password": PASSWORD, "new_password": "short",
                                                 "confirm": "other"}, htmx=True)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Use between 10 and 256 characters." in html and "The passwords do not match." in html


def test_account_page_lists_memberships(owner_client):
    client, _, _ = owner_client
    html = client.get("/account/").get_data(as_text=True)
    assert "Acme — owner" in html and "owner@acme.com" in html

"""Onboarding, switching organizations, settings (htmx), members and the audit log."""
from __future__ import annotations

import json

import pytest

from costguardian.models import AuditLog, Membership, Organization
from tests.support import Client, add_member


def test_creating_an_org_opens_its_setup_wizard_and_its_dashboard(client, make_user):
    make_user("new@example.com")
    client.sign_in("new@example.com")
    page = client.get("/orgs/new").get_data(as_text=True)
    assert "Create your organization" in page and 'value="Europe/Berlin"' in page
    response = client.post("/orgs/new", {"name": "Nimbus Labs", "time_zone": "Europe/Berlin", "currency": "EUR"})
    assert response.status_code == 302 and response.headers["Location"] == "/onboarding/"
    org = Organization.get(Organization.slug == "nimbus-labs")
    assert (org.time_zone, org.currency) == ("Europe/Berlin", "EUR")
    html = client.get("/").get_data(as_text=True)
    assert "Nimbus Labs" in html and 'data-testid="empty-dashboard"' in html
    assert 'data-testid="setup-checklist"' in html  # until the wizard is finished or dismissed


@pytest.mark.parametrize("data, message", [
    ({"name": "", "time_zone": "UTC", "currency": "USD"}, "Give the organization a name."),
    ({"name": "X", "time_zone": "Mars/Olympus", "currency": "USD"}, "Not a valid choice"),
    ({"name": "X", "time_zone": "UTC", "currency": "XYZ"}, "Not a valid choice"),
    ({"name": "x" * 121, "time_zone": "UTC", "currency": "USD"}, "Field cannot be longer than 120 characters."),
])
def test_onboarding_rejects_bad_input_with_422(client, make_user, data, message):
    make_user("new@example.com")
    client.sign_in("new@example.com")
    response = client.post("/orgs/new", data)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert Organization.select().count() == 0


def test_switching_organizations(owner_client, make_org):
    client, user, acme = owner_client
    other = make_org("Globex", owner=user)
    assert "<h1>Acme</h1>" in client.get("/").get_data(as_text=True)
    response = client.post(f"/orgs/switch/{other.slug}")
    assert response.status_code == 302
    assert "<h1>Globex</h1>" in client.get("/").get_data(as_text=True)
    response = client.post(f"/orgs/switch/{acme.slug}", htmx=True)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/"
    assert "<h1>Acme</h1>" in client.get("/").get_data(as_text=True)


def test_cannot_switch_to_an_org_you_do_not_belong_to(owner_client, make_org):
    client, _, _ = owner_client
    stranger = make_org("Initech")
    assert client.post(f"/orgs/switch/{stranger.slug}").status_code == 404
    assert "<h1>Acme</h1>" in client.get("/").get_data(as_text=True)


def test_settings_save_through_htmx(owner_client):
    client, _, org = owner_client
    page = client.get("/settings/").get_data(as_text=True)
    assert 'id="org-settings"' in page and "<html" in page
    fragment = client.get("/settings/", htmx=True).get_data(as_text=True)
    assert fragment.lstrip().startswith("<form") and "<html" not in fragment

    response = client.post("/settings/", {"name": "Acme Corp", "time_zone": "Asia/Tokyo", "currency": "JPY"},
                           htmx=True)
    assert response.status_code == 200
    assert json.loads(response.headers["HX-Trigger"]) == {"showToast": {"message": "Settings saved.",
                                                                       "level": "success"}}
    org = Organization.get_by_id(org.id)
    assert (org.name, org.time_zone, org.currency) == ("Acme Corp", "Asia/Tokyo", "JPY")
    row = AuditLog.select().where(AuditLog.action == "org.updated").get()
    assert row.detail["changes"]["name"] == ["Acme", "Acme Corp"]
    assert row.organization_id == org.id and row.actor.email == "owner@acme.com"


def test_settings_bad_input_is_422_with_the_form_partial(owner_client):
    client, _, org = owner_client
    response = client.post("/settings/", {"name": "", "time_zone": "Nowhere", "currency": "USD"}, htmx=True)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Give the organization a name." in html and "Not a valid choice" in html
    assert 'aria-invalid="true"' in html and "<html" not in html
    assert Organization.get_by_id(org.id).name == "Acme"


def test_settings_inline_validation_never_saves(owner_client):
    client, _, org = owner_client
    response = client.post("/settings/validate", {"name": "", "time_zone": "UTC", "currency": "USD"}, htmx=True)
    assert response.status_code == 422 and "Give the organization a name." in response.get_data(as_text=True)
    response = client.post("/settings/validate", {"name": "Valid", "time_zone": "UTC", "currency": "USD"}, htmx=True)
    assert response.status_code == 200
    assert Organization.get_by_id(org.id).name == "Acme"


def test_settings_without_javascript_posts_a_full_page(owner_client):
    client, _, org = owner_client
    response = client.post("/settings/", {"name": "Plain", "time_zone": "UTC", "currency": "USD"})
    assert response.status_code == 200 and "<html" in response.get_data(as_text=True)
    assert Organization.get_by_id(org.id).name == "Plain"


@pytest.mark.parametrize("role", ["viewer", "member", "billing"])
def test_roles_without_org_settings_get_403(app, owner_client, make_user, role):
    _, _, org = owner_client
    user = make_user(f"{role}@acme.com")
    add_member(org, user, role)
    client = Client(app)
    client.sign_in(user.email)
    page = client.get("/settings/")
    assert page.status_code == 403 and "You don&#39;t have access" in page.get_data(as_text=True)
    assert 'href="/settings/"' not in client.get("/").get_data(as_text=True)
    response = client.post("/settings/", {"name": "Nope", "time_zone": "UTC", "currency": "USD"}, htmx=True)
    assert response.status_code == 403 and "showToast" in response.headers["HX-Trigger"]
    assert Organization.get_by_id(org.id).name == "Acme"


def test_user_without_org_is_sent_to_onboarding(client, make_user):
    make_user("solo@example.com")
    client.sign_in("solo@example.com")
    for path in ("/", "/settings/", "/members/", "/audit/"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"] == "/orgs/new", path
    assert client.get("/members/", htmx=True).status_code == 409


# --- members ------------------------------------------------------------------

def test_members_page_lists_only_this_org(owner_client, make_user, make_org):
    client, _, org = owner_client
    add_member(org, make_user("ana@acme.com", name="Ana"), "member")
    make_org("Other", owner=make_user("boss@other.com"))
    html = client.get("/members/").get_data(as_text=True)
    assert "ana@acme.com" in html and "owner@acme.com" in html and "boss@other.com" not in html


def test_owner_changes_a_role_with_htmx(owner_client, make_user):
    client, _, org = owner_client
    membership = add_member(org, make_user("ana@acme.com"), "viewer")
    response = client.post(f"/members/{membership.id}/role", {"role": "admin"}, htmx=True)
    assert response.status_code == 200
    assert response.get_data(as_text=True).lstrip().startswith(f'<tr id="member-{membership.id}"')
    assert "is now admin" in response.headers["HX-Trigger"]
    assert Membership.get_by_id(membership.id).role == "admin"
    row = AuditLog.get(AuditLog.action == "member.role_changed")
    assert row.detail == {"user": "ana@acme.com", "old_role": "viewer", "new_role": "admin"}


def test_last_owner_cannot_be_demoted_through_the_page(app, owner_client, make_user):
    client, owner, org = owner_client
    admin = make_user("adm@acme.com")
    add_member(org, admin, "admin")
    owner_membership = Membership.of(owner, org)
    admin_client = Client(app)
    admin_client.sign_in(admin.email)
    response = admin_client.post(f"/members/{owner_membership.id}/role", {"role": "member"}, htmx=True)
    assert response.status_code == 422
    assert "Only an owner can change or remove another owner." in response.get_data(as_text=True)
    response = client.post(f"/members/{owner_membership.id}/role", {"role": "admin"}, htmx=True)
    assert response.status_code == 422  # nobody changes their own role
    assert Membership.get_by_id(owner_membership.id).role == "owner"


def test_members_cross_tenant_ids_are_404(owner_client, make_org, make_user):
    client, _, _ = owner_client
    other = make_org("Other", owner=make_user("boss@other.com"))
    victim = add_member(other, make_user("victim@other.com"), "member")
    assert client.post(f"/members/{victim.id}/role", {"role": "viewer"}, htmx=True).status_code == 404
    assert client.post(f"/members/{victim.id}/remove", htmx=True).status_code == 404
    assert Membership.get_by_id(victim.id).role == "member"


def test_remove_member(owner_client, make_user):
    client, _, org = owner_client
    membership = add_member(org, make_user("ana@acme.com"), "member")
    response = client.post(f"/members/{membership.id}/remove", htmx=True)
    assert response.status_code == 200 and "was removed" in response.get_data(as_text=True)
    assert Membership.get_or_none(Membership.id == membership.id) is None
    assert AuditLog.select().where(AuditLog.action == "member.removed").count() == 1


def test_viewer_sees_members_but_cannot_change_them(app, owner_client, make_user):
    _, _, org = owner_client
    viewer = make_user("vi@acme.com")
    add_member(org, viewer, "viewer")
    other = add_member(org, make_user("ana@acme.com"), "member")
    client = Client(app)
    client.sign_in(viewer.email)
    html = client.get("/members/").get_data(as_text=True)
    assert "ana@acme.com" in html and 'aria-label="Role of' not in html and "Remove" not in html
    assert client.post(f"/members/{other.id}/role", {"role": "owner"}, htmx=True).status_code == 403
    assert client.post(f"/members/{other.id}/remove").status_code == 403
    assert Membership.get_by_id(other.id).role == "member"


# --- audit log ----------------------------------------------------------------

def test_audit_log_pages_through_entries(owner_client):
    client, owner, org = owner_client
    for i in range(60):
        AuditLog.create(organization=org, actor=owner, action=f"test.event{i}")
    html = client.get("/audit/").get_data(as_text=True)
    assert "test.event59" in html and "test.event10" in html and "<code>test.event9<" not in html
    assert 'hx-get="/audit/?page=2"' in html
    more = client.get("/audit/?page=2", htmx=True).get_data(as_text=True)
    assert "<html" not in more and "<code>test.event9<" in more and "org.created" in more


def test_audit_log_is_scoped_and_guarded(app, owner_client, make_org, make_user):
    client, _, org = owner_client
    make_org("Other", owner=make_user("boss@other.com"))
    html = client.get("/audit/").get_data(as_text=True)
    assert "org.created" in html and "Other" not in html
    viewer = make_user("vi@acme.com")
    add_member(org, viewer, "viewer")
    viewer_client = Client(app)
    viewer_client.sign_in(viewer.email)
    assert viewer_client.get("/audit/").status_code == 403


def test_huge_or_unknown_ids_are_404_not_errors(owner_client):
    client, _, _ = owner_client
    for member_id in (0, 999999, 2**31, 10**30):
        assert client.post(f"/members/{member_id}/role", {"role": "viewer"}, htmx=True).status_code == 404


def test_audit_log_survives_absurd_page_numbers(owner_client):
    client, _, _ = owner_client
    assert client.get("/audit/?page=999999999999999999999").status_code == 200

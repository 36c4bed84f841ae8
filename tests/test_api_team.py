"""The team JSON API: members, invitations and the organization, with `admin` keys."""
from __future__ import annotations

import json

import pytest

from costguardian.models import AuditLog, Department, Invitation, Membership, Organization
from costguardian.services import keys
from costguardian.services.team import invitations, orgs
from costguardian.services.actor import Actor
from tests.support import SYSTEM, add_member

PROBLEM = "application/problem+json"


@pytest.fixture
def org(make_org, make_user):
    owner = make_user("owner@acme.com", name="Olga Owner")
    return make_org("Acme", owner=owner)


@pytest.fixture
def owner(org):
    return Membership.in_org(org).get().user


@pytest.fixture
def owner_key(org, owner):
    keys._last_written.clear()
    return keys.create_key(org, Actor(user=owner), "directory sync", ["admin"]).plaintext


@pytest.fixture
def api(app):
    client = app.test_client()

    def call(method, path, key=None, body=None, **query):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        data = json.dumps(body) if body is not None else None
        return client.open(path, method=method, headers=headers, data=data, content_type="application/json",
                           query_string=query)

    return call


def test_admin_scope_is_required(api, org, owner):
    read_key = keys.create_key(org, Actor(user=owner), "read only", ["read"]).plaintext
    assert api("GET", "/api/v1/members").status_code == 401
    response = api("GET", "/api/v1/members", read_key)
    assert response.status_code == 403 and response.mimetype == PROBLEM
    assert "admin" in keys.SCOPES


def test_list_members_with_filters_and_pages(api, org, owner_key, make_user):
    research = Department.create(organization=org, name="Research")
    ana = add_member(org, make_user("ana@acme.com", name="Ana"), "viewer")
    Membership.update(department=research).where(Membership.id == ana.id).execute()
    add_member(org, make_user("bob@acme.com", name="Bob"), "member")
    body = api("GET", "/api/v1/members", owner_key).json
    assert body["total"] == 3 and body["page"] == 1 and body["pages"] == 1
    emails = [m["email"] for m in body["members"]]
    assert set(emails) == {"owner@acme.com", "ana@acme.com", "bob@acme.com"}
    ana_json = next(m for m in body["members"] if m["email"] == "ana@acme.com")
    assert ana_json["department"] == {"id": research.id, "name": "Research"}
    assert ana_json["role"] == "viewer" and ana_json["spend_this_month_usd"] == "0"
    assert [m["email"] for m in api("GET", "/api/v1/members", owner_key, role="member").json["members"]] == \
        ["bob@acme.com"]
    assert [m["email"] for m in api("GET", "/api/v1/members", owner_key,
                                    department=str(research.id)).json["members"]] == ["ana@acme.com"]
    assert [m["email"] for m in api("GET", "/api/v1/members", owner_key, q="BOB").json["members"]] == \
        ["bob@acme.com"]
    paged = api("GET", "/api/v1/members", owner_key, per_page=2, page=2).json
    assert len(paged["members"]) == 1 and paged["pages"] == 2
    bad = api("GET", "/api/v1/members", owner_key, per_page=0, role="emperor")
    assert bad.status_code == 422 and bad.mimetype == PROBLEM and set(bad.json["errors"]) == {"per_page", "role"}


def test_update_member_role_and_department(api, org, owner_key, make_user):
    research = Department.create(organization=org, name="Research")
    ana = add_member(org, make_user("ana@acme.com"), "member")
    response = api("PUT", f"/api/v1/members/{ana.id}", owner_key, {"role": "admin", "department": "Research"})
    assert response.status_code == 200, response.json
    assert response.json["role"] == "admin" and response.json["department"]["id"] == research.id
    response = api("PUT", f"/api/v1/members/{ana.id}", owner_key, {"department": None})
    assert response.json["department"] is None
    response = api("PUT", f"/api/v1/members/{ana.id}", owner_key, {"department": research.id})
    assert response.json["department"]["name"] == "Research"
    changed = AuditLog.get(AuditLog.action == "member.role_changed")
    assert changed.actor_id is None and changed.detail["api_key"] == owner_key.split("_")[2]
    bad = api("PUT", f"/api/v1/members/{ana.id}", owner_key, {"role": "emperor", "department": "Nowhere",
                                                               "colour": "red"})
    assert bad.status_code == 422 and bad.mimetype == PROBLEM
    assert set(bad.json["errors"]) == {"role", "department", "colour"}
    assert api("PUT", f"/api/v1/members/{ana.id}", owner_key, {}).status_code == 422
    assert api("PUT", f"/api/v1/members/{ana.id}", owner_key, ["role"]).status_code == 422


def test_last_owner_and_self_rules_through_the_api(api, org, owner, owner_key):
    me = Membership.of(owner, org)
    response = api("PUT", f"/api/v1/members/{me.id}", owner_key, {"role": "admin"})
    assert response.status_code == 403 and "your own role" in response.json["detail"]
    response = api("DELETE", f"/api/v1/members/{me.id}", owner_key)
    assert response.status_code == 409 and response.mimetype == PROBLEM
    assert "last owner" in response.json["detail"]
    assert Membership.get_by_id(me.id).role == "owner"


def test_an_admins_key_cannot_grant_or_touch_owners(api, org, owner, make_user):
    admin = make_user("adm@acme.com")
    add_member(org, admin, "admin")
    key = keys.create_key(org, Actor(user=admin), "admin key", ["admin"]).plaintext
    ana = add_member(org, make_user("ana@acme.com"), "member")
    assert api("PUT", f"/api/v1/members/{ana.id}", key, {"role": "owner"}).status_code == 403
    owner_membership = Membership.of(owner, org)
    assert api("PUT", f"/api/v1/members/{owner_membership.id}", key, {"role": "viewer"}).status_code == 403
    assert api("DELETE", f"/api/v1/members/{owner_membership.id}", key).status_code == 403
    response = api("POST", "/api/v1/invitations", key, {"emails": ["boss@acme.com"], "role": "owner"})
    assert response.status_code == 403 and "owner" in response.json["detail"]
    # the key is worth what its creator's role is worth now
    Membership.update(role="viewer").where(Membership.user == admin).execute()
    assert api("DELETE", f"/api/v1/members/{ana.id}", key).status_code == 403
    cli_key = keys.create_key(org, SYSTEM, "operator key", ["admin"]).plaintext
    assert api("PUT", f"/api/v1/members/{owner_membership.id}", cli_key, {"role": "viewer"}).status_code == 403
    assert api("PUT", f"/api/v1/members/{ana.id}", cli_key, {"role": "viewer"}).status_code == 200


def test_delete_member(api, org, owner_key, make_user):
    ana = add_member(org, make_user("ana@acme.com"), "member")
    assert api("DELETE", f"/api/v1/members/{ana.id}", owner_key).status_code == 204
    assert Membership.get_or_none(Membership.id == ana.id) is None
    assert api("DELETE", f"/api/v1/members/{ana.id}", owner_key).status_code == 404
    removed = AuditLog.get(AuditLog.action == "member.removed")
    assert "api_key" in removed.detail


def test_invitations_through_the_api(api, org, owner_key, make_user):
    add_member(org, make_user("bob@acme.com"), "member")
    Department.create(organization=org, name="Research")
    response = api("POST", "/api/v1/invitations", owner_key,
                   {"emails": ["ana@acme.com", "nope", "ANA@acme.com", "bob@acme.com"], "role": "viewer",
                    "department": "Research"})
    assert response.status_code == 201
    body = response.json
    assert body["invited"] == 1 and body["not_invited"] == 3
    assert [r["status"] for r in body["results"]] == ["invited", "invalid", "duplicate", "member"]
    invitation = body["results"][0]["invitation"]
    assert invitation["status"] == "pending" and invitation["department"]["name"] == "Research"
    again = api("POST", "/api/v1/invitations", owner_key, {"email": "ana@acme.com", "role": "viewer"})
    assert again.status_code == 200 and again.json["results"][0]["status"] == "pending"
    listed = api("GET", "/api/v1/invitations", owner_key).json
    assert listed["total"] == 1 and listed["invitations"][0]["email"] == "ana@acme.com"
    assert api("GET", "/api/v1/invitations", owner_key, status="accepted").json["total"] == 0
    assert api("GET", "/api/v1/invitations", owner_key, status="weird").status_code == 422
    revoked = api("DELETE", f"/api/v1/invitations/{invitation['id']}", owner_key)
    assert revoked.status_code == 200 and revoked.json["status"] == "revoked"
    assert api("DELETE", f"/api/v1/invitations/{invitation['id']}", owner_key).status_code == 409
    sent = AuditLog.get(AuditLog.action == "invitation.sent")
    assert sent.actor_id is None and "api_key" in sent.detail


def test_invitation_input_errors(api, owner_key):
    for body, field in (({"emails": []}, "emails"), ({"emails": "x@acme.com", "role": 3}, "role"),
                        ({"emails": ["a@acme.com"], "department": "Nowhere"}, "department"),
                        ({"emails": ["a@acme.com"], "extra": 1}, "extra")):
        response = api("POST", "/api/v1/invitations", owner_key, body)
        assert response.status_code == 422 and field in response.json["errors"], (body, response.json)
    response = api("POST", "/api/v1/invitations", owner_key, {"emails": ["a@acme.com"], "role": "emperor"})
    assert response.status_code == 422 and "role" in response.json["errors"]


def test_other_organizations_ids_are_404(api, org, owner_key, make_org, make_user):
    boss = make_user("boss@other.com")
    other = make_org("Other", owner=boss)
    victim = add_member(other, make_user("victim@other.com"), "member")
    invitations.invite(other, "x@other.com", "member", Actor(user=boss))
    theirs = Invitation.get(Invitation.email == "x@other.com")
    assert api("PUT", f"/api/v1/members/{victim.id}", owner_key, {"role": "viewer"}).status_code == 404
    assert api("DELETE", f"/api/v1/members/{victim.id}", owner_key).status_code == 404
    assert api("DELETE", f"/api/v1/invitations/{theirs.id}", owner_key).status_code == 404
    assert api("DELETE", "/api/v1/invitations/99999999999", owner_key).status_code == 404
    assert Membership.get_by_id(victim.id).role == "member" and Invitation.get_by_id(theirs.id).status() == "pending"
    listed = api("GET", "/api/v1/members", owner_key).json["members"]
    assert "victim@other.com" not in [m["email"] for m in listed]


def test_update_organization(api, org, owner_key, owner, make_user):
    response = api("PUT", "/api/v1/organization", owner_key, {"name": "Acme Labs", "time_zone": "Europe/Berlin"})
    assert response.status_code == 200 and response.json["time_zone"] == "Europe/Berlin"
    fresh = Organization.get_by_id(org.id)
    assert (fresh.name, fresh.time_zone) == ("Acme Labs", "Europe/Berlin")
    assert AuditLog.get(AuditLog.action == "org.updated").detail["api_key"]
    bad = api("PUT", "/api/v1/organization", owner_key, {"name": "", "time_zone": "Mars/Base"})
    assert bad.status_code == 422 and set(bad.json["errors"]) == {"name", "time_zone"}
    member = make_user("m@acme.com")
    add_member(org, member, "member")
    member_key = keys.create_key(org, Actor(user=member), "mine", ["admin"]).plaintext
    assert api("PUT", "/api/v1/organization", member_key, {"name": "Hijacked"}).status_code == 403


def test_listing_follows_the_key_creators_current_role(api, org, owner, make_user):
    adam = make_user("adam@acme.com")
    membership = add_member(org, adam, "admin")
    keys._last_written.clear()
    key = keys.create_key(org, Actor(user=adam), "adam's sync", ["admin"]).plaintext
    invitations.invite(org, "new@acme.com", "member", Actor(user=owner))
    assert api("GET", "/api/v1/members", key).status_code == 200
    assert api("GET", "/api/v1/invitations", key).json["total"] == 1
    orgs.change_role(membership, "viewer", SYSTEM)  # demoted: may still see members, not invitations
    assert api("GET", "/api/v1/members", key).status_code == 200
    refused = api("GET", "/api/v1/invitations", key)
    assert refused.status_code == 403 and refused.mimetype == PROBLEM
    assert refused.json["detail"] == "This API key's creator cannot see the organization's invitations."
    orgs.remove_member(Membership.get_by_id(membership.id), SYSTEM)  # removed: sees nothing
    for path in ("/api/v1/members", "/api/v1/invitations"):
        response = api("GET", path, key)
        assert response.status_code == 403 and response.mimetype == PROBLEM, path
        assert "new@acme.com" not in response.get_data(as_text=True)
    assert "cannot see the organization's members" in api("GET", "/api/v1/members", key).json["detail"]


def test_department_filter_refuses_non_ascii_digits(api, owner_key):
    for value in ("²", "١", "99999999999"):
        response = api("GET", "/api/v1/members", owner_key, department=value)
        assert response.status_code == 422 and response.json["errors"] == {"department": "A department id, or 'none'."}


def test_openapi_documents_the_team_api(api):
    paths = api("GET", "/api/openapi.json").json["paths"]
    for path in ("/api/v1/members", "/api/v1/members/{membership_id}", "/api/v1/invitations",
                 "/api/v1/invitations/{invitation_id}",
                 "/api/v1/organization"):
        assert path in paths, path

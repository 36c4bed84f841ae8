"""Member and viewer differ: a member manages API keys bound to themselves and
sees their own usage in detail; by default only department totals of everyone
else's (the organization's setting can show them everyone's); a viewer only
reads. Checked in the keys pages, the explorer and its exports, team
analytics, a member's page and the API's usage summary."""
from __future__ import annotations

import re

import pytest

from costguardian import clock
from costguardian.models import ApiKey, AuditLog, Membership, Organization
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.usage import ingest
from tests.support import SYSTEM, Client, add_member

pytestmark = pytest.mark.dated


@pytest.fixture
def team(app, make_user, make_org):
    """An organization with usage by two members (Mia, Max) and a viewer (Vic)."""
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    people = {}
    for name, role in (("mia", "member"), ("max", "member"), ("vic", "viewer")):
        people[name] = make_user(f"{name}@acme.com", name=name.title())
        add_member(org, people[name], role)
    now = clock.now().replace(microsecond=0).isoformat()
    ingest.ingest(org, None, [
        {"event_id": f"e-{who}", "provider": "openai", "model": "gpt-4o", "input_tokens": 1000 * (i + 1),
         "output_tokens": 10, "user": f"{who}@acme.com", "occurred_at": now}
        for i, who in enumerate(("mia", "max"))])

    def client_of(name):
        client = Client(app)
        client.sign_in(f"{name}@acme.com")
        return client

    return org, people, client_of


def form(**overrides) -> dict:
    return {"name": "my laptop", "scopes": ["ingest"], "env": "live", "expires": "never", "expires_on": "",
            "user": "", "department": "", **overrides}


def test_a_member_creates_rotates_and_revokes_keys_bound_to_themselves(team):
    org, people, client_of = team
    mia = client_of("mia")
    others = keys.create_key(org, SYSTEM, "shared-collector", ["ingest"]).key
    page = mia.get("/keys/")
    assert page.status_code == 200
    page = page.get_data(as_text=True)
    assert 'name="scopes" type="checkbox" value="admin"' not in page  # no admin scope
    assert "shared-collector" not in page  # nobody else's key
    created = mia.post("/keys/", form(user=str(people["max"].id)), htmx=True)  # naming Max changes nothing
    assert created.status_code == 200
    key = ApiKey.get(ApiKey.name == "my laptop")
    assert key.user_id == people["mia"].id and not key.attribution_override
    assert mia.post("/keys/", form(name="admin key", scopes=["admin"]), htmx=True).status_code == 422
    assert mia.post(f"/keys/{key.id}/rotate", {"grace_hours": "0"}, htmx=True).status_code == 200
    assert mia.post(f"/keys/{others.id}/revoke", htmx=True).status_code == 404  # not hers
    assert mia.post(f"/keys/{key.id}/revoke", htmx=True).status_code == 200
    assert ApiKey.get_by_id(key.id).revoked_at is not None and ApiKey.get_by_id(others.id).revoked_at is None


def test_a_viewer_only_reads(team):
    org, _, client_of = team
    vic = client_of("vic")
    assert vic.get("/keys/").status_code == 403
    assert vic.post("/keys/", form(), htmx=True).status_code == 403
    assert 'href="/keys/"' not in vic.get("/").get_data(as_text=True)
    assert vic.get("/usage/?group_by=user").status_code == 200  # but reads everyone's spend


def test_by_default_a_member_sees_totals_by_department_and_their_own_detail(team):
    org, people, client_of = team
    mia = client_of("mia")
    assert mia.get("/usage/?group_by=department").status_code == 200
    refused = mia.get("/usage/?group_by=user")
    assert refused.status_code == 422 and "your own" in refused.get_data(as_text=True)
    assert mia.get("/usage/?user=max@acme.com").status_code == 422
    assert mia.get("/usage/?user=mia@acme.com&group_by=model").status_code == 200
    page = mia.get("/usage/").get_data(as_text=True)
    assert "max@acme.com" not in page  # not even offered as a filter
    assert mia.get("/usage/export/events.csv").status_code == 422
    own = mia.get("/usage/export/events.csv?user=mia@acme.com", buffered=True)
    assert own.status_code == 200 and "max@acme.com" not in own.get_data(as_text=True)
    team_page = mia.get("/team/").get_data(as_text=True)
    assert 'data-testid="team-limited"' in team_page and "Max" not in (
        team_page.split('data-testid="team-members"')[1].split("</article>")[0])
    max_membership = Membership.get(Membership.organization == org, Membership.user == people["max"])
    assert "$" not in mia.get(f"/team/members/{max_membership.id}").get_data(as_text=True).split("<main")[1]


def test_the_setting_lets_members_see_everyone(team):
    org, _, client_of = team
    owner = client_of("owner")
    assert 'id="members_see_everyone"' in owner.get("/settings/").get_data(as_text=True)
    saved = owner.post("/settings/visibility", {"members_see_everyone": "on"}, htmx=True)
    assert saved.status_code == 200 and Organization.get_by_id(org.id).members_see_everyone
    assert AuditLog.select().where(AuditLog.action == "org.member_visibility_changed").exists()
    mia = client_of("mia")
    assert mia.get("/usage/?group_by=user").status_code == 200
    assert "max@acme.com" in mia.get("/usage/export/events.csv", buffered=True).get_data(as_text=True)
    assert client_of("vic").post("/settings/visibility", {}, htmx=True).status_code == 403


def test_the_api_summary_follows_the_setting_for_a_members_key(app, team):
    org, people, _ = team
    members_key = keys.create_key(org, Actor(user=people["mia"]), "mia read", ["read"], personal=True).plaintext
    service_key = keys.create_key(org, SYSTEM, "report job", ["read"]).plaintext
    client = Client(app)

    def summary(key, group_by):
        return client.http.get(f"/api/v1/usage/summary?group_by={group_by}",
                               headers={"Authorization": f"Bearer {key}"})

    refused = summary(members_key, "user")
    assert refused.status_code == 403 and refused.json["type"].endswith("/docs/problems/not-permitted")
    assert summary(members_key, "department").status_code == 200
    assert summary(service_key, "user").status_code == 200
    Organization.update(members_see_everyone=True).where(Organization.id == org.id).execute()
    assert summary(members_key, "user").status_code == 200


def test_a_member_is_offered_only_the_exports_they_may_download(team):
    _, _, client_of = team
    mia = client_of("mia")
    everyone = mia.get("/usage/").get_data(as_text=True)
    assert 'href="/usage/?user=mia@acme.com&amp;group_by=model"' in everyone  # their own usage, one click away
    assert 'data-testid="export-events"' not in everyone and 'data-testid="exports-own-only"' in everyone
    own = mia.get("/usage/?user=mia@acme.com").get_data(as_text=True)
    assert 'data-testid="export-events"' in own
    assert 'data-testid="export-events"' in client_of("vic").get("/usage/").get_data(as_text=True)


def _offered_actions(html: str) -> set[tuple[str, str]]:
    """(method, path) of every form and htmx action a page offers."""
    found = {("POST", m) for m in re.findall(r'<form[^>]*method="post"[^>]*action="([^"?#]+)', html, re.I)}
    found |= {("POST", m) for m in re.findall(r'<form[^>]*action="([^"?#]+)"[^>]*method="post"', html, re.I)}
    for verb in ("post", "put", "delete", "patch"):
        found |= {(verb.upper(), m) for m in re.findall(rf'hx-{verb}="([^"?#]+)', html)}
    found |= {("GET", m) for m in re.findall(r'<a href="(/[^"?#]*)"[^>]*role="button"', html)}
    return found


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_no_page_offers_a_role_an_action_it_may_not_take(app, team, role):
    """Walk every page of the navigation as a member and as a viewer: each form,
    htmx write and button they are shown leads to a route their role may use."""
    from costguardian import permissions

    _, _, client_of = team
    client = client_of("mia" if role == "member" else "vic")
    home = client.get("/").get_data(as_text=True)
    pages = {"/"} | set(re.findall(r'<a href="(/[a-z][^"?#]*)"', home.split('aria-label="Sections"')[1]))
    adapter = app.url_map.bind("localhost")
    refused, checked = [], 0
    for path in sorted(pages):
        response = client.get(path)
        if response.status_code != 200:
            continue
        for method, target in _offered_actions(response.get_data(as_text=True)):
            try:
                endpoint, _ = adapter.match(target, method=method)
            except Exception:  # noqa: BLE001 - not a route of ours (or a method the route lacks)
                continue
            checked += 1
            needed = getattr(app.view_functions[endpoint], "required_permission", None)
            if needed and not permissions.role_can(role, needed):
                refused.append(f"{path}: {method} {target} needs {needed}")
    assert len(pages) > 8 and checked > 10  # the walk saw the pages and their actions
    assert refused == []

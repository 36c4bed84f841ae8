"""Pages that scale to 10,000 members (issue 17 §6): the search-as-you-type
member picker (members.pick, usage.users) on the budget, key, department and
explorer forms, and the pages of team analytics and of a department."""
from __future__ import annotations

import re

import pytest

from costguardian import clock
from costguardian.models import ApiKey, Budget, Department, Membership, User
from costguardian.services.team import members as members_service
from tests.support import Client, add_member

MEMBERS = 60  # more than one page of 50


@pytest.fixture
def acme(app, make_user, make_org):
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    platform = Department.create(organization=org, name="Platform")
    now = clock.now()
    User.insert_many([{"email": f"p{i:02d}@acme.com", "name": f"Person {i:02d}", "password_hash": owner.password_hash,
                       "created_at": now} for i in range(MEMBERS)]).execute()
    Membership.insert_many([{"organization": org.id, "user": u.id, "role": "member", "department": platform.id,
                             "created_at": now} for u in User.select().where(User.email.startswith("p"))]).execute()
    gina = make_user("gina@globex.com", name="Person Globex")
    make_org("Globex", owner=gina)
    client = Client(app)
    client.sign_in("owner@acme.com")
    return client, org, platform


def _options(html: str) -> list[str]:
    return re.findall(r'<option value="([^"]*)"', html)


def test_the_picker_offers_at_most_20_matching_members_of_this_org_only(acme):
    client, org, _ = acme
    response = client.get("/members/pick?field=owner&owner=person", htmx=True)
    assert response.status_code == 200
    emails = _options(response.get_data(as_text=True))
    assert len(emails) == members_service.PICK_LIMIT and all(e.endswith("@acme.com") for e in emails)
    assert _options(client.get("/members/pick?q=p07@", htmx=True).get_data(as_text=True)) == ["p07@acme.com"]
    # another organization's user never appears, whatever is typed
    for text in ("gina", "globex", "Person Globex", "@globex.com"):
        assert _options(client.get(f"/members/pick?q={text}", htmx=True).get_data(as_text=True)) == []
    html = client.get("/members/pick?q=p07@", htmx=True).get_data(as_text=True)
    member = Membership.in_org(org).join(User).where(User.email == "p07@acme.com").get()
    assert f'data-user-id="{member.user_id}"' in html and f'data-membership-id="{member.id}"' in html


def test_the_explorers_user_picker_offers_members_and_end_user_ids_but_no_other_org(acme):
    client, org, _ = acme
    from costguardian.services.usage import ingest
    assert ingest.ingest(org, None, [{"event_id": "e1", "provider": "openai", "model": "gpt-4o", "input_tokens": 5,
                                      "output_tokens": 1, "user": "customer-4711"}]).count("accepted") == 1
    assert _options(client.get("/usage/users?field=user&user=4711", htmx=True).get_data(as_text=True)) \
        == ["customer-4711"]
    assert _options(client.get("/usage/users?field=user&user=globex", htmx=True).get_data(as_text=True)) == []
    assert len(_options(client.get("/usage/users?field=user&user=", htmx=True).get_data(as_text=True))) == 20
    page = client.get("/usage/").get_data(as_text=True)
    assert 'id="filter-user"' in page and "p07@acme.com" not in page  # a picker, not every member
    assert client.get("/usage/?user=customer-4711").status_code == 200  # the typed value is the filter


def test_a_member_who_sees_only_their_own_usage_is_offered_only_themselves(acme, app):
    _client, _org, _ = acme
    mia = Client(app)
    mia.sign_in("p03@acme.com")  # the inserted members share the owner's password
    assert _options(mia.get("/usage/users?field=user&user=acme", htmx=True).get_data(as_text=True)) \
        == ["p03@acme.com"]


def test_budget_owner_by_email_and_a_422_when_nobody_matches(acme):
    client, _org, _ = acme
    base = {"name": "Team", "amount_usd": "100", "period": "monthly", "enforcement": "soft",
            "notify_roles": ["owner"], "owner_id": ""}
    assert client.post("/budgets/", {**base, "owner": "P07@acme.com"}, htmx=True).status_code == 204
    assert Budget.get(Budget.name == "Team").owner.email == "p07@acme.com"
    for email in ("nobody@acme.com", "gina@globex.com"):
        response = client.post("/budgets/", {**base, "name": "Other", "owner": email}, htmx=True)
        assert response.status_code == 422
        assert "The owner must be a member of this organization." in response.get_data(as_text=True)
    # a stale hidden id loses to the typed email (no script to clear it)
    gina = User.get(User.email == "gina@globex.com")
    client.post("/budgets/", {**base, "name": "Stale", "owner_id": str(gina.id), "owner": "p08@acme.com"}, htmx=True)
    assert Budget.get(Budget.name == "Stale").owner.email == "p08@acme.com"
    form = client.get("/budgets/new").get_data(as_text=True)
    assert 'name="owner"' in form and 'name="owner_id"' in form and "p07@acme.com" not in form


def test_key_binding_by_email_and_a_422_for_another_orgs_user(acme):
    client, _org, _ = acme
    form = {"name": "job", "scopes": ["ingest"], "env": "live", "expires": "never", "user": "", "department": ""}
    assert client.post("/keys/", {**form, "user_email": "p09@acme.com"}, htmx=True).status_code == 200
    assert ApiKey.get(ApiKey.name == "job").user.email == "p09@acme.com"
    response = client.post("/keys/", {**form, "name": "sneaky", "user_email": "gina@globex.com"}, htmx=True)
    assert response.status_code == 422 and "No member of this organization has this email" in \
        response.get_data(as_text=True)
    assert not ApiKey.select().where(ApiKey.name == "sneaky").exists()


def test_department_assign_and_manager_by_email(acme):
    client, org, _platform = acme
    sales = Department.create(organization=org, name="Sales")
    response = client.post(f"/departments/{sales.id}/members", {"member": "", "member_email": "p10@acme.com"})
    assert response.status_code in (204, 302)
    assert Membership.in_org(org).join(User).where(User.email == "p10@acme.com").get().department_id == sales.id
    response = client.post(f"/departments/{sales.id}/members", {"member": "", "member_email": "gina@globex.com"},
                           htmx=True)
    assert response.status_code == 422 and "No member of this organization has this email" in \
        response.get_data(as_text=True)
    response = client.post("/departments/", {"name": "Ops", "code": "", "parent": "", "manager": "",
                                             "manager_email": "nobody@acme.com"}, htmx=True)
    assert response.status_code == 422 and not Department.select().where(Department.name == "Ops").exists()
    client.post("/departments/", {"name": "Ops", "code": "", "parent": "", "manager": "",
                                  "manager_email": "p11@acme.com"}, htmx=True)
    assert Department.get(Department.name == "Ops").manager.email == "p11@acme.com"
    page = client.get(f"/departments/{sales.id}").get_data(as_text=True)
    assert 'name="member_email"' in page and "p40@acme.com" not in page  # a picker, not every member


def test_the_department_page_lists_50_members_a_page(acme):
    client, _org, platform = acme
    first = client.get(f"/departments/{platform.id}").get_data(as_text=True)
    assert "60 members" in first and first.count('class="outline secondary small">Take out') == 50
    assert f'href="/departments/{platform.id}?page=2"' in first
    second = client.get(f"/departments/{platform.id}?page=2").get_data(as_text=True)
    assert second.count('class="outline secondary small">Take out') == 10
    assert "p59@acme.com" in second and "p00@acme.com" not in second
    assert f'href="/departments/{platform.id}"' in second  # ← Previous


def test_team_analytics_pages_its_members(acme):
    client, org, _ = acme
    from costguardian.services.usage import ingest
    ingest.ingest(org, None, [{"event_id": "t1", "provider": "openai", "model": "gpt-4o", "input_tokens": 5000,
                               "output_tokens": 100, "user": "p42@acme.com"}])
    def rows(html):
        table = html[html.index('data-testid="team-members"'):]
        return re.findall(r'href="/team/members/\d+', table[:table.index("</article>")])

    first = client.get("/team/").get_data(as_text=True)
    assert len(rows(first)) == 50 and "61 / 61" not in first and "1 / 61" in first
    assert first.index("Person 42") < first.index("Person 00")  # spend first, then by name
    assert 'data-testid="team-pager"' in first and "page=2" in first
    second = client.get("/team/?page=2", htmx=True)
    assert second.headers["HX-Push-Url"] == "/team/?page=2"
    html = second.get_data(as_text=True)
    assert len(rows(html)) == 11 and "Person 42" not in html[
        html.index('data-testid="team-members"'):html.index('data-testid="team-new"')]


def test_new_pickers_are_signed_in_only(app):
    anonymous = app.test_client()
    for url in ("/members/pick?q=a", "/usage/users?q=a"):
        response = anonymous.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_add_member_keeps_working_for_the_api_shape(acme, make_user):
    """A form that posts only the hidden id (an older page, a script) still works."""
    client, org, _platform = acme
    sales = Department.create(organization=org, name="Sales")
    bob = add_member(org, make_user("bob@acme.com", name="Bob"), "member")
    assert client.post(f"/departments/{sales.id}/members", {"member": str(bob.id)}).status_code in (204, 302)
    assert Membership.get_by_id(bob.id).department_id == sales.id

"""The members page: search, filters, pagination, spend this month, last
active, department moves and bulk actions with per-member refusals."""
from __future__ import annotations

from datetime import timedelta

from costguardian import clock
from costguardian.models import AuditLog, Department, Membership, User
from costguardian.services.team import members
from costguardian.services.usage import ingest
from tests.support import Client, add_member


def test_search_filters_and_push_url(owner_client, make_user):
    client, _, org = owner_client
    research = Department.create(organization=org, name="Research")
    ana = add_member(org, make_user("ana@acme.com", name="Ana Analyst"), "viewer")
    add_member(org, make_user("bob@acme.com", name="Bob Builder"), "member")
    Membership.update(department=research).where(Membership.id == ana.id).execute()
    html = client.get("/members/").get_data(as_text=True)
    assert 'hx-trigger="input changed delay:300ms' in html and 'hx-push-url="true"' in html
    assert "Invitations" in html  # the link to invitations lives on this page
    found = client.get("/members/?q=analyst", htmx=True, headers={"HX-Target": "members-table"})
    body = found.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="members-table">')
    assert "ana@acme.com" in body and "bob@acme.com" not in body and "<html" not in body
    assert "bob@acme.com" in client.get("/members/?q=BOB").get_data(as_text=True)
    by_role = client.get("/members/?role=member").get_data(as_text=True)
    assert "bob@acme.com" in by_role and "ana@acme.com" not in by_role.split('id="members-table"')[1]
    by_dept = client.get(f"/members/?department={research.id}").get_data(as_text=True).split('id="members-table"')[1]
    assert "ana@acme.com" in by_dept and "bob@acme.com" not in by_dept
    no_dept = client.get("/members/?department=none").get_data(as_text=True).split('id="members-table"')[1]
    assert "bob@acme.com" in no_dept and "ana@acme.com" not in no_dept
    wildcard = client.get("/members/?q=%25").get_data(as_text=True).split('id="members-table"')[1]
    assert "No members match." in wildcard  # % is a character here, not a wildcard


def test_pagination_at_a_thousand_members(app_ctx, make_org):
    org = make_org("Big")
    users = [User(email=f"p{i:04d}@big.com", name=f"Person {i:04d}") for i in range(1000)]
    User.bulk_create(users, batch_size=200)
    created = list(User.select().where(User.email.startswith("p")))
    Membership.bulk_create([Membership(organization=org, user=u, role="member") for u in created], batch_size=200)
    query = members.MemberQuery(page=3)
    page = members.page_of_members(org, query)
    assert page.total == 1001 and page.pages == 21 and len(page.rows) == 50
    assert page.rows[0].user.name == "Person 0099"  # the owner (no name) sorts first
    last = members.page_of_members(org, members.MemberQuery(page=99))
    assert last.page == 21 and len(last.rows) == 1


def test_pagination_links_on_the_page(owner_client, make_user):
    client, _, org = owner_client
    for i in range(55):
        User.create(email=f"x{i:02d}@acme.com", name=f"X {i:02d}")
    Membership.bulk_create([Membership(organization=org, user=u, role="viewer")
                            for u in User.select().where(User.email.startswith("x"))])
    html = client.get("/members/").get_data(as_text=True)
    assert "page 1 of 2" in html and 'href="/members/?page=2"' in html
    second = client.get("/members/?page=2", htmx=True, headers={"HX-Target": "members-table"}).get_data(as_text=True)
    assert "page 2 of 2" in second and "Previous" in second


def test_spend_this_month_comes_from_the_rollups(owner_client, make_user):
    client, _, org = owner_client
    ana = add_member(org, make_user("ana@acme.com", name="Ana"), "member")
    event = {"event_id": "e1", "provider": "openai", "model": "gpt-4o", "input_tokens": 1_000_000,
             "output_tokens": 0, "user": "ana@acme.com"}
    assert ingest.ingest(org, None, [event]).results[0].status == "accepted"
    old = dict(event, event_id="e0", occurred_at=(clock.now() - timedelta(days=70)).isoformat() + "Z")
    ingest.ingest(org, None, [old])
    spend = members.spend_this_month(org, [Membership.get_by_id(ana.id)])
    assert spend == {ana.user_id: 2_500_000_000}  # $2.50: this month's event only
    html = client.get("/members/").get_data(as_text=True)
    assert "$2.50" in html


def test_last_seen_is_written_at_most_every_five_minutes(owner_client):
    client, owner, _ = owner_client
    client.get("/members/")
    first = User.get_by_id(owner.id).last_seen_at
    assert first is not None
    client.get("/members/")
    assert User.get_by_id(owner.id).last_seen_at == first  # coalesced
    User.update(last_seen_at=first - timedelta(minutes=6)).where(User.id == owner.id).execute()
    client.get("/members/")
    assert User.get_by_id(owner.id).last_seen_at > first - timedelta(minutes=6)
    assert members.touch_last_seen(User.get_by_id(owner.id)) is False


def test_department_move_is_audited_and_tenant_scoped(owner_client, make_user, make_org):
    client, _, org = owner_client
    research = Department.create(organization=org, name="Research")
    ana = add_member(org, make_user("ana@acme.com"), "member")
    response = client.post(f"/members/{ana.id}/department", {"department": research.id}, htmx=True)
    assert response.status_code == 200 and "moved to Research" in response.headers["HX-Trigger"]
    assert Membership.get_by_id(ana.id).department_id == research.id
    row = AuditLog.get(AuditLog.action == "member.department_changed")
    assert row.detail["new_department"] == "Research"
    other = make_org("Other", owner=make_user("boss@other.com"))
    theirs = Department.create(organization=other, name="Theirs")
    assert client.post(f"/members/{ana.id}/department", {"department": theirs.id}, htmx=True).status_code == 404
    assert Membership.get_by_id(ana.id).department_id == research.id


def test_bulk_role_change_reports_each_refusal(app, owner_client, make_user):
    client, owner, org = owner_client
    admin = make_user("adm@acme.com")
    add_member(org, admin, "admin")
    co_owner = add_member(org, make_user("co@acme.com", name="Co Owner"), "owner")
    ana = add_member(org, make_user("ana@acme.com", name="Ana"), "member")
    bob = add_member(org, make_user("bob@acme.com", name="Bob"), "member")
    admin_client = Client(app)
    admin_client.sign_in(admin.email)
    admin_membership = Membership.of(admin, org)
    response = admin_client.post("/members/bulk", {"action": "role", "role": "viewer", "confirm": "1",
                                                   "ids": [ana.id, bob.id, co_owner.id, admin_membership.id]},
                                 htmx=True)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Ana is now viewer." in html and "Bob is now viewer." in html
    assert "Co Owner: Only an owner can change or remove another owner." in html
    assert "adm@acme.com: You cannot change your own role" in html
    assert "2 changed, 2 refused" in response.headers["HX-Trigger"]
    assert [Membership.get_by_id(m.id).role for m in (ana, bob, co_owner)] == ["viewer", "viewer", "owner"]
    # admin cannot grant owner in bulk either
    response = admin_client.post("/members/bulk", {"action": "role", "role": "owner", "confirm": "1",
                                                   "ids": [ana.id]}, htmx=True)
    assert "cannot grant the owner role" in response.get_data(as_text=True)
    assert Membership.get_by_id(ana.id).role == "viewer"


def test_bulk_removal_keeps_the_last_owner(owner_client, make_user):
    client, owner, org = owner_client
    ana = add_member(org, make_user("ana@acme.com", name="Ana"), "member")
    owner_membership = Membership.of(owner, org)
    response = client.post("/members/bulk", {"action": "remove", "confirm": "1",
                                             "ids": [ana.id, owner_membership.id]}, htmx=True)
    html = response.get_data(as_text=True)
    assert "Ana was removed." in html and "The last owner cannot leave or be removed" in html
    assert Membership.get_or_none(Membership.id == ana.id) is None
    assert Membership.get_by_id(owner_membership.id).role == "owner"


def test_bulk_without_javascript_asks_for_confirmation_first(owner_client, make_user):
    client, _, org = owner_client
    ana = add_member(org, make_user("ana@acme.com", name="Ana"), "member")
    page = client.post("/members/bulk", {"action": "remove", "ids": [ana.id]})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Remove 1 member?" in html and 'name="confirm" value="1"' in html
    assert Membership.get_or_none(Membership.id == ana.id) is not None
    done = client.post("/members/bulk", {"action": "remove", "ids": [ana.id], "confirm": "1"})
    assert done.status_code == 200 and "Ana was removed." in done.get_data(as_text=True)
    assert Membership.get_or_none(Membership.id == ana.id) is None


def test_bulk_move_and_bad_input(owner_client, make_user, make_org):
    client, _, org = owner_client
    research = Department.create(organization=org, name="Research")
    ana = add_member(org, make_user("ana@acme.com", name="Ana"), "member")
    response = client.post("/members/bulk", {"action": "department", "department": research.id, "confirm": "1",
                                             "ids": [ana.id]}, htmx=True)
    assert "Ana moved to Research." in response.get_data(as_text=True)
    assert Membership.get_by_id(ana.id).department_id == research.id
    assert client.post("/members/bulk", {"action": "role", "role": "viewer", "confirm": "1"},
                       htmx=True).status_code == 422
    assert client.post("/members/bulk", {"action": "explode", "ids": [ana.id], "confirm": "1"},
                       htmx=True).status_code == 422
    # another organization's member ids are ignored
    boss = make_user("boss@other.com")
    other = make_org("Other", owner=boss)
    victim = add_member(other, make_user("victim@other.com"), "member")
    client.post("/members/bulk", {"action": "remove", "confirm": "1", "ids": [victim.id]}, htmx=True)
    assert Membership.get_or_none(Membership.id == victim.id) is not None


def test_viewer_has_no_controls_and_bulk_is_forbidden(app, owner_client, make_user):
    _, _, org = owner_client
    viewer = make_user("vi@acme.com")
    add_member(org, viewer, "viewer")
    ana = add_member(org, make_user("ana@acme.com"), "member")
    client = Client(app)
    client.sign_in(viewer.email)
    html = client.get("/members/").get_data(as_text=True)
    assert "ana@acme.com" in html and "bulk-form" not in html and 'aria-label="Department of' not in html
    assert "Invitations" not in html
    assert client.post("/members/bulk", {"action": "remove", "confirm": "1", "ids": [ana.id]}).status_code == 403
    assert client.post(f"/members/{ana.id}/department", {"department": ""}).status_code == 403
    assert Membership.get_or_none(Membership.id == ana.id) is not None


def test_bulk_keeps_the_lists_filters(owner_client, make_user):
    client, _, org = owner_client
    research = Department.create(organization=org, name="Research")
    ana = add_member(org, make_user("ana@acme.com", name="Ana"), "member")
    add_member(org, make_user("bob@acme.com", name="Bob"), "member")
    response = client.post("/members/bulk?q=ana", {"action": "department", "department": research.id,
                                                    "confirm": "1", "ids": [ana.id]}, htmx=True)
    table = response.get_data(as_text=True)
    assert "Ana moved to Research." in table and "bob@acme.com" not in table  # still searching for "ana"
    assert 'action="/members/bulk?q=ana"' in table


def test_digits_that_are_not_ascii_are_ignored_not_a_crash(owner_client, make_user):
    """'²' passes str.isdigit() but int() refuses it: filters and bulk ids ignore it."""
    client, _, org = owner_client
    ana = add_member(org, make_user("ana@acme.com", name="Ana"), "member")
    for value in ("²", "١", "99999999999", "-1", " 1"):
        assert members.MemberQuery.from_args({"department": value}).department == ""
        assert list(members.selected(org, [value])) == []
    assert members.parse_id("42") == 42 and members.parse_id(7) == 7
    page = client.get("/members/?department=%C2%B2")
    assert page.status_code == 200 and "ana@acme.com" in page.get_data(as_text=True)
    assert members.page_of_members(org, members.MemberQuery(department="²")).total == 0  # not every member
    response = client.post("/members/bulk", {"action": "role", "role": "viewer", "confirm": "1",
                                             "ids": ["²", str(ana.id)]}, htmx=True)
    assert response.status_code == 200 and "Ana is now viewer." in response.get_data(as_text=True)
    confirm_page = client.post("/members/bulk", {"action": "remove", "ids": ["²"]}, htmx=True)
    assert confirm_page.status_code == 200 and Membership.get_by_id(ana.id).role == "viewer"

"""Departments: the tree, create/rename/move (no cycles), merge with history
following (totals unchanged, only counted under the target), delete rules,
the pages and the JSON API."""
from __future__ import annotations

from datetime import date

import pytest

from costguardian.models import ApiKey, AuditLog, Department, Membership, UsageEvent, UsageRollup, UsageTagRollup
from costguardian.services import keys
from costguardian.services.team import departments
from costguardian.services.usage import ingest, queries as usage_queries
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.services.usage.queries import UsageFilter
from tests.support import SYSTEM, Client, add_member

APRIL = UsageFilter(date(2025, 4, 1), date(2025, 4, 30))


@pytest.fixture
def org(make_user, make_org):
    owner = make_user("owner@acme.com", name="Olga Owner")
    return make_org("Acme", owner=owner)


def _tree(org):
    return [(n.path, n.depth) for n in departments.tree(org)]


def test_create_and_tree_order(org):
    eng = departments.create(org, SYSTEM, "Engineering", code="CC-100")
    departments.create(org, SYSTEM, "Platform", parent=eng)
    departments.create(org, SYSTEM, "Sales")
    departments.create(org, SYSTEM, "Apps", parent=eng)
    assert _tree(org) == [("Engineering", 0), ("Engineering › Apps", 1), ("Engineering › Platform", 1),
                          ("Sales", 0)]
    row = AuditLog.select().where(AuditLog.action == "department.created").order_by(AuditLog.id).first()
    assert row.detail["name"] == "Engineering" and row.detail["code"] == "CC-100"


def test_names_and_codes_are_unique_ignoring_case(org, make_org):
    departments.create(org, SYSTEM, "Engineering", code="CC-100")
    with pytest.raises(ValidationError) as exc:
        departments.create(org, SYSTEM, "engineering ", code="cc-100")
    assert set(exc.value.errors) == {"name", "code"}
    with pytest.raises(ValidationError):
        departments.create(org, SYSTEM, "  ")
    # two departments without a code are fine; another organization may reuse both
    departments.create(org, SYSTEM, "Sales")
    departments.create(org, SYSTEM, "Support", code="")
    other = make_org("Globex")
    departments.create(other, SYSTEM, "Engineering", code="CC-100")
    assert Department.in_org(org).where(Department.code.is_null()).count() == 2


@pytest.mark.parametrize("first, second", [
    ("Émile", "Émile"), ("émile", "ÉMILE"), ("Ünterwegs", "üNTERWEGS"), ("Straße", "STRASSE"),
    ("Émile", "E\u0301mile"),  # the same letter precomposed and as e + combining accent
])
def test_non_ascii_names_and_codes_are_unique_ignoring_case(org, first, second):
    """SQLite's LOWER() folds ASCII only: a second "Émile" once reached the
    unique index (a 500) and "ÉMILE" passed as a new name. Both databases
    compare one Python-folded key."""
    departments.create(org, SYSTEM, first, code=first.upper())
    with pytest.raises(ValidationError) as exc:
        departments.create(org, SYSTEM, second, code=second.lower())
    assert set(exc.value.errors) == {"name", "code"}
    other = departments.create(org, SYSTEM, "Other", code="O-1")
    with pytest.raises(ValidationError) as exc:
        departments.update(other, SYSTEM, second, second, None, None)
    assert set(exc.value.errors) == {"name", "code"}
    assert Department.in_org(org).count() == 2


def test_the_folded_keys_follow_every_save(org):
    dept = departments.create(org, SYSTEM, "ÉQUIPE Ünd", code="CÖDE")
    assert (dept.name_key, dept.code_key) == ("équipe ünd", "cöde")
    departments.update(dept, SYSTEM, "Straße", None, None, None)
    stored = Department.get_by_id(dept.id)
    assert (stored.name_key, stored.code_key) == ("strasse", None)
    departments.create(org, SYSTEM, "ÉQUIPE Ünd", code="cöde")  # both free again


def test_manager_must_be_a_member(org, make_user):
    outsider = make_user("out@example.com")
    with pytest.raises(ValidationError) as exc:
        departments.create(org, SYSTEM, "Ops", manager=outsider)
    assert "manager" in exc.value.errors
    ann = make_user("ann@acme.com", name="Ann")
    add_member(org, ann, "member")
    dept = departments.create(org, SYSTEM, "Ops", manager=ann)
    assert dept.manager_id == ann.id


def test_rename_and_move_refuse_cycles(org):
    eng = departments.create(org, SYSTEM, "Engineering")
    platform = departments.create(org, SYSTEM, "Platform", parent=eng)
    infra = departments.create(org, SYSTEM, "Infra", parent=platform)
    for bad_parent in (eng, platform, infra):
        with pytest.raises(ValidationError) as exc:
            departments.move(eng, SYSTEM, bad_parent)
        assert "parent" in exc.value.errors
    departments.move(infra, SYSTEM, None)
    departments.update(platform, SYSTEM, "Platform Team", "PT", eng, None)
    assert _tree(org) == [("Engineering", 0), ("Engineering › Platform Team", 1), ("Infra", 0)]
    actions = [a for a, in AuditLog.select(AuditLog.action).where(AuditLog.action.startswith("department."))
               .order_by(AuditLog.id).tuples()]
    assert actions[-2:] == ["department.moved", "department.updated"]
    assert departments.descendant_ids(org, eng) == sorted([eng.id, platform.id])


def _events(prefix, department, n, user="alice@acme.com", tags=None):
    return [{"event_id": f"{prefix}-{i}", "occurred_at": f"2025-04-{1 + i % 20:02d}T1{i % 10}:00:00Z",
             "provider": "openai", "model": "gpt-4o" if i % 2 else "gpt-4o-mini", "input_tokens": 1000 * (i + 1),
             "output_tokens": 100 * (i + 1), "user": user, "department": department, "tags": tags or ["env:prod"]}
            for i in range(n)]


@pytest.fixture
def history(org, make_user):
    """Sales and Marketing with usage in the same hours, models, users and
    tags (so merging must add rollup rows together), and an API key, a
    member and a sub-department in Marketing."""
    alice = make_user("alice@acme.com", name="Alice")
    alice_m = add_member(org, alice, "member")
    sales = departments.create(org, SYSTEM, "Sales")
    marketing = departments.create(org, SYSTEM, "Marketing")
    events_team = departments.create(org, SYSTEM, "Events", parent=marketing)
    departments.create(org, SYSTEM, "Research")
    Membership.update(department=marketing).where(Membership.id == alice_m.id).execute()
    key = keys.create_key(org, SYSTEM, "mkt", ["ingest"], department=marketing).key
    for batch in (_events("s", "Sales", 12), _events("m", "Marketing", 12), _events("e", "Events", 3),
                  _events("x", None, 4, user="bob@acme.com")):
        batch = [{k: v for k, v in e.items() if v is not None} for e in batch]
        assert ingest.ingest(org, None, batch).count("accepted") == len(batch)
    assert ingest.ingest(org, key, _events("k", None, 5, tags=["team:ads"])).count("accepted") == 5
    return {"sales": sales, "marketing": marketing, "events": events_team, "key": key, "alice": alice_m}


def test_ingest_names_a_department_ignoring_case_beyond_ascii(org):
    emile = departments.create(org, SYSTEM, "Émile")
    straße = departments.create(org, SYSTEM, "Straße")
    batch = _events("u", "ÉMILE", 1) + _events("v", "STRASSE", 1) + _events("w", "E\u0301mile", 1)
    assert ingest.ingest(org, None, batch).count("accepted") == 3
    by_event = dict(UsageEvent.select(UsageEvent.event_id, UsageEvent.department).tuples())
    assert by_event == {"u-0": emile.id, "v-0": straße.id, "w-0": emile.id}


def _by_department(org, group="department", flt=APRIL):
    return {r.key: (r.cost_nanos, r.requests, r.input_tokens, r.output_tokens, r.unpriced_requests)
            for r in usage_queries.summarize(org, flt, group_by=group)}


def _event_sums(org):
    sums = {}
    for event in UsageEvent.in_org(org):
        acc = sums.setdefault(event.department_id or 0, [0, 0])
        acc[0] += event.cost_nanos or 0
        acc[1] += 1
    return {k: tuple(v) for k, v in sums.items()}


def _added(a, b):
    return tuple(x + y for x, y in zip(a, b))


def test_merge_moves_members_keys_children_and_history(org, history):
    sales, marketing = history["sales"], history["marketing"]
    before = _by_department(org)
    before_tags = {(r.key): (r.cost_nanos, r.requests) for r in
                   usage_queries.summarize(org, UsageFilter(APRIL.start, APRIL.end, tags=["env:prod"]),
                                           group_by="department")}
    before_total = usage_queries.total(org, APRIL)
    before_users = _by_department(org, "user")
    before_models = _by_department(org, "model")
    rollup_rows = UsageRollup.select().where(UsageRollup.department_id == marketing.id).count()
    assert rollup_rows and before[marketing.id] and before[sales.id]

    result = departments.merge(marketing, sales, SYSTEM)

    assert result.members == 1 and result.api_keys == 1 and result.children == 1
    assert result.events == 12 + 5
    assert Department.get_or_none(Department.id == marketing.id) is None
    assert Membership.get_by_id(history["alice"].id).department_id == sales.id
    assert ApiKey.get_by_id(history["key"].id).department_id == sales.id
    assert Department.get_by_id(history["events"].id).parent_id == sales.id
    after = _by_department(org)
    assert marketing.id not in after
    assert after[sales.id] == _added(before[sales.id], before[marketing.id])
    assert {k: v for k, v in after.items() if k != sales.id} == \
        {k: v for k, v in before.items() if k not in (sales.id, marketing.id)}
    # rows of the same hour/model/user were added together, not duplicated
    assert not UsageRollup.select().where(UsageRollup.department_id == marketing.id).exists()
    assert not UsageTagRollup.select().where(UsageTagRollup.department_id == marketing.id).exists()
    after_tags = {(r.key): (r.cost_nanos, r.requests) for r in
                  usage_queries.summarize(org, UsageFilter(APRIL.start, APRIL.end, tags=["env:prod"]),
                                          group_by="department")}
    assert after_tags[sales.id] == _added(before_tags[sales.id], before_tags[marketing.id])
    # every other view of the same usage is unchanged
    assert usage_queries.total(org, APRIL) == before_total
    assert _by_department(org, "user") == before_users
    assert _by_department(org, "model") == before_models
    # the rollups still equal the events, department by department
    events = _event_sums(org)
    assert {k: (v[0], v[1]) for k, v in after.items()} == events
    # and the daily rollups (what the pages read) still equal the hourly ones
    from costguardian.services.usage import days

    assert days.differences(org) == [] and days.ready(org)
    # new usage naming the merged department's children keeps working; the merged name is gone
    result = ingest.ingest(org, None, _events("late", "Marketing", 1))
    assert result.count("rejected") == 1
    row = AuditLog.select().where(AuditLog.action == "department.merged").first()
    assert row.detail["name"] == "Marketing" and row.detail["into"] == "Sales"


def test_merge_into_a_sub_department_lifts_it_first(org, history):
    marketing, events_team = history["marketing"], history["events"]
    before = _by_department(org)
    departments.merge(marketing, events_team, SYSTEM)
    assert Department.get_by_id(events_team.id).parent_id is None
    after = _by_department(org)
    assert after[events_team.id] == _added(before[events_team.id], before[marketing.id])


def test_merge_refuses_itself_and_other_tenants(org, history, make_org):
    with pytest.raises(ValidationError):
        departments.merge(history["sales"], history["sales"], SYSTEM)
    other = departments.create(make_org("Globex"), SYSTEM, "Sales")
    with pytest.raises(ValidationError):
        departments.merge(history["sales"], other, SYSTEM)


def test_delete_rules(org, history):
    sales, marketing = history["sales"], history["marketing"]
    research = Department.in_org(org).where(Department.name == "Research").get()
    with pytest.raises(RuleViolation, match="1 member and 1 sub-department"):
        departments.delete(marketing, SYSTEM)
    departments.delete(research, SYSTEM)  # empty, no history
    assert Department.get_or_none(Department.id == research.id) is None
    # with history but no members: the history counts as "no department"
    before = _by_department(org)
    departments.delete(sales, SYSTEM)
    after = _by_department(org)
    assert after[0] == _added(before[0], before[sales.id])
    # moving members and history elsewhere
    target = departments.create(org, SYSTEM, "Growth")
    departments.delete(marketing, SYSTEM, move_to=target)
    assert Membership.get_by_id(history["alice"].id).department_id == target.id
    assert _by_department(org)[target.id] == before[marketing.id]
    assert usage_queries.total(org, APRIL).requests == sum(v[1] for v in before.values())


# --- pages -------------------------------------------------------------------------

def test_pages_create_edit_assign_merge_delete(owner_client, make_user):
    client, owner, org = owner_client
    ann = make_user("ann@acme.com", name="Ann Analyst")
    ann_m = add_member(org, ann, "member")
    assert client.get("/departments/").status_code == 200
    response = client.post("/departments/", {"name": "Engineering", "code": "ENG", "parent": "",
                                             "manager": str(owner.id)}, htmx=True)
    assert response.status_code == 200 and "Engineering" in response.get_data(as_text=True)
    eng = Department.in_org(org).where(Department.name == "Engineering").get()
    assert eng.manager_id == owner.id and eng.code == "ENG"
    response = client.post("/departments/", {"name": "engineering"}, htmx=True)
    assert response.status_code == 422 and "already a department" in response.get_data(as_text=True)
    client.post("/departments/", {"name": "Platform", "parent": str(eng.id)}, htmx=True)
    platform = Department.in_org(org).where(Department.name == "Platform").get()
    page = client.get("/departments/").get_data(as_text=True)
    assert "dept-depth-1" in page and "Platform" in page

    # a cycle is refused with a message in the form
    response = client.post(f"/departments/{eng.id}", {"name": "Engineering", "parent": str(platform.id)}, htmx=True)
    assert response.status_code == 422 and "cannot sit inside itself" in response.get_data(as_text=True)
    response = client.post(f"/departments/{platform.id}", {"name": "Platform Team", "parent": ""}, htmx=True)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == f"/departments/{platform.id}"
    assert Department.get_by_id(platform.id).parent_id is None

    response = client.post(f"/departments/{platform.id}/members", {"member": str(ann_m.id)}, htmx=True)
    assert response.status_code == 204
    assert Membership.get_by_id(ann_m.id).department_id == platform.id
    assert "Ann Analyst" in client.get(f"/departments/{platform.id}").get_data(as_text=True)

    response = client.post(f"/departments/{eng.id}/delete", {"delete-target": ""}, htmx=True)
    assert response.status_code == 204  # empty
    response = client.post(f"/departments/{platform.id}/delete", {"delete-target": ""}, htmx=True)
    assert response.status_code == 422 and "still has 1 member" in response.get_data(as_text=True)
    client.post("/departments/", {"name": "Data"}, htmx=True)
    data = Department.in_org(org).where(Department.name == "Data").get()
    response = client.post(f"/departments/{platform.id}/merge", {"merge-target": str(data.id)}, htmx=True)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == f"/departments/{data.id}"
    assert Membership.get_by_id(ann_m.id).department_id == data.id


PARENT_ERROR = '<small id="parent-help" class="field-error">Choose a department of this organization.</small>'


@pytest.fixture(params=["unknown id", "another organization's id"])
def foreign_parent_id(request, make_org) -> str:
    """A parent id the form must refuse: no such department, or one of another tenant."""
    if request.param == "unknown id":
        return "999999"
    return str(departments.create(make_org("Globex"), SYSTEM, "Secret").id)


@pytest.mark.parametrize("htmx", [True, False])
def test_form_create_with_a_foreign_parent_is_422_and_saves_nothing(owner_client, foreign_parent_id, htmx):
    client, _, org = owner_client
    departments.create(org, SYSTEM, "Engineering")
    audit_rows = AuditLog.select().count()
    response = client.post("/departments/", {"name": "Data", "parent": foreign_parent_id}, htmx=htmx)
    assert response.status_code == 422
    assert PARENT_ERROR in response.get_data(as_text=True)
    assert not Department.in_org(org).where(Department.name == "Data").exists()
    assert AuditLog.select().count() == audit_rows


@pytest.mark.parametrize("htmx", [True, False])
def test_form_edit_with_a_foreign_parent_is_422_and_keeps_the_department_where_it_was(owner_client, foreign_parent_id,
                                                                                       htmx):
    client, _, org = owner_client
    eng = departments.create(org, SYSTEM, "Engineering")
    platform = departments.create(org, SYSTEM, "Platform", parent=eng)
    audit_rows = AuditLog.select().count()
    response = client.post(f"/departments/{platform.id}", {"name": "Platform Team", "parent": foreign_parent_id},
                           htmx=htmx)
    assert response.status_code == 422
    assert PARENT_ERROR in response.get_data(as_text=True)
    fresh = Department.get_by_id(platform.id)
    assert (fresh.name, fresh.parent_id) == ("Platform", eng.id)
    assert AuditLog.select().count() == audit_rows


def test_viewer_reads_but_cannot_change(app, owner_client, make_user):
    _, _, org = owner_client
    viewer = make_user("vic@acme.com")
    add_member(org, viewer, "viewer")
    dept = departments.create(org, SYSTEM, "Sales")
    client = Client(app)
    client.sign_in(viewer.email)
    page = client.get("/departments/").get_data(as_text=True)
    assert "Sales" in page and "Create a department" not in page
    assert "Merge" not in client.get(f"/departments/{dept.id}").get_data(as_text=True)
    assert client.post("/departments/", {"name": "X"}).status_code == 403
    assert client.post(f"/departments/{dept.id}/delete", {}).status_code == 403
    assert Department.in_org(org).count() == 1


def test_other_tenants_department_is_404(owner_client, make_org):
    client, _, _ = owner_client
    other = departments.create(make_org("Globex"), SYSTEM, "Secret")
    assert client.get(f"/departments/{other.id}").status_code == 404
    assert client.post(f"/departments/{other.id}/delete", {}).status_code == 404


# --- API -------------------------------------------------------------------------------

def _key(org, scopes, created_by=None):
    from costguardian.services.actor import Actor
    return keys.create_key(org, Actor(user=created_by), "automation", scopes).plaintext


def test_api_list_and_create(app, owner_client, make_user):
    _, owner, org = owner_client
    http = app.test_client()
    admin_key = {"Authorization": f"Bearer {_key(org, ['admin'], owner)}"}
    read_key = {"Authorization": f"Bearer {_key(org, ['read'], owner)}"}
    response = http.post("/api/v1/departments", json={"name": "Engineering", "code": "ENG", "manager": owner.email},
                         headers=admin_key)
    assert response.status_code == 201, response.json
    eng = response.json
    assert eng["name"] == "Engineering" and eng["manager"] == owner.email and eng["parent_id"] is None
    response = http.post("/api/v1/departments", json={"name": "Platform", "parent": "Engineering"}, headers=admin_key)
    assert response.status_code == 201 and response.json["parent_id"] == eng["id"]
    assert response.json["path"] == "Engineering › Platform"

    listed = http.get("/api/v1/departments", headers=read_key).json["departments"]
    assert [d["path"] for d in listed] == ["Engineering", "Engineering › Platform"]
    assert listed[0]["spend_this_month_usd"] == "0" and listed[0]["members"] == 0

    # bad input: problem+json with field errors
    response = http.post("/api/v1/departments", json={"name": "engineering", "code": "ENG", "colour": "red"},
                         headers=admin_key)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert "colour" in response.json["errors"]
    response = http.post("/api/v1/departments", json={"name": "engineering", "code": "ENG"}, headers=admin_key)
    assert set(response.json["errors"]) == {"name", "code"}
    response = http.post("/api/v1/departments", json={"name": "X", "manager": "nobody@example.com"}, headers=admin_key)
    assert response.status_code == 422 and "manager" in response.json["errors"]
    response = http.post("/api/v1/departments", data="nope", headers=admin_key)
    assert response.status_code == 415
    # a read key cannot create; no key at all is 401
    assert http.post("/api/v1/departments", json={"name": "Y"}, headers=read_key).status_code == 403
    assert http.get("/api/v1/departments").status_code == 401
    row = AuditLog.select().where(AuditLog.action == "department.created").order_by(AuditLog.id.desc()).first()
    assert row.detail.get("api_key")


def test_api_refuses_a_non_ascii_duplicate_with_422(app, owner_client):
    _, owner, org = owner_client
    http = app.test_client()
    admin_key = {"Authorization": f"Bearer {_key(org, ['admin'], owner)}"}
    response = http.post("/api/v1/departments", json={"name": "Émile", "code": "ÉM-1"}, headers=admin_key)
    assert response.status_code == 201, response.json
    for name, code in (("Émile", "ÉM-1"), ("ÉMILE", "ém-1"), ("émile", "Ém-1")):
        response = http.post("/api/v1/departments", json={"name": name, "code": code}, headers=admin_key)
        assert response.status_code == 422 and response.mimetype == "application/problem+json", (name, response)
        assert set(response.json["errors"]) == {"name", "code"}
    assert Department.in_org(org).count() == 1


def test_the_page_refuses_a_non_ascii_duplicate_with_422(owner_client):
    client, _, org = owner_client
    departments.create(org, SYSTEM, "Émile")
    response = client.post("/departments/", {"name": "ÉMILE", "code": "", "parent": "", "manager": ""})
    assert response.status_code == 422
    assert "There is already a department named" in response.get_data(as_text=True)
    assert Department.in_org(org).count() == 1


def test_api_key_of_a_demoted_creator_cannot_create(app, owner_client, make_user):
    _, _, org = owner_client
    ann = make_user("ann@acme.com")
    membership = add_member(org, ann, "admin")
    key = _key(org, ["admin"], ann)
    Membership.update(role="viewer").where(Membership.id == membership.id).execute()
    response = app.test_client().post("/api/v1/departments", json={"name": "Z"},
                                      headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403


@pytest.mark.parametrize("manager", ["999999", "abc"])
def test_form_with_an_unknown_manager_is_422_and_saves_nothing(owner_client, manager):
    client, _, org = owner_client
    response = client.post("/departments/", {"name": "Data", "manager": manager}, htmx=True)
    assert response.status_code == 422
    assert "Choose a member of this organization." in response.get_data(as_text=True)
    assert not Department.in_org(org).where(Department.name == "Data").exists()

"""The activity feed: audit rows as sentences, filters by member and action,
pagination, links to targets, the per-member tab, and its permission."""
from __future__ import annotations

import re

import pytest

from costguardian.models import AuditLog, Membership
from costguardian.services import keys
from costguardian.services.team import activity, audit, departments, orgs
from costguardian.services.actor import Actor
from tests.support import SYSTEM, Client, add_member


@pytest.fixture
def story(make_user, make_org):
    """An owner who invites, adds, promotes and demotes, makes a key and departments."""
    olga = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=olga)
    as_olga = Actor(user=olga, ip="10.0.0.1")
    ann = make_user("ann@acme.com", name="Ann")
    audit.record(as_olga, "invitation.sent", org=org, email="bob@example.com", role="member", department=None)
    ann_m = orgs.add_member(org, ann, "member", as_olga)
    orgs.change_role(ann_m, "viewer", as_olga)
    key = keys.create_key(org, as_olga, "ci", ["ingest"]).key
    keys.revoke_key(key, as_olga)
    eng = departments.create(org, as_olga, "Engineering")
    sales = departments.create(org, as_olga, "Sales", parent=eng)
    departments.move(sales, as_olga, None)
    orgs.move_to_department(Membership.get_by_id(ann_m.id), sales, as_olga)
    data = departments.create(org, as_olga, "Data")
    departments.merge(data, eng, as_olga)
    audit.record(Actor(user=ann), "member.joined", org=org, target=ann_m, user=ann.email, role="viewer",
                 via="invitation")
    audit.record(as_olga, "budget.frozen", org=org, target=eng)  # an action without a sentence of its own
    return {"org": org, "olga": olga, "ann": ann, "ann_m": ann_m, "key": key, "eng": eng, "sales": sales}


def _links(kind, target_id):
    return f"/{kind}/{target_id}" if target_id is not None else f"/{kind}"


def _sentences(org, **filters):
    rows, _ = activity.feed(org, **filters)
    return [e.text for e in activity.describe(org, rows, _links)]


def test_sentences(story):
    org = story["org"]
    sentences = _sentences(org)
    assert sentences[0] == "Olga Owner did “budget.frozen” on a department"
    for expected in (
        "Olga Owner invited bob@example.com as member",
        "Olga Owner added Ann as member",
        "Olga Owner changed Ann's role from member to viewer",
        "Olga Owner created API key “ci”",
        "Olga Owner revoked API key “ci”",
        "Olga Owner created the department Engineering",
        "Olga Owner created the department Sales under Engineering",
        "Olga Owner moved the department Sales from Engineering to the top level",
        "Olga Owner put Ann in Sales",
        "Olga Owner merged the department Data into Engineering",
        "Ann joined as viewer by invitation",
        "Cost Guardian created the organization “Acme”",
    ):
        assert expected in sentences, (expected, sentences)
    # the owner was added at creation by the system (the test factory)
    assert "Cost Guardian added Olga Owner as owner" in sentences


def test_every_recorded_action_has_a_sentence_of_its_own():
    """Each action the code records (grep of audit.record calls) is in the
    mapping, so none reads as the generic fallback."""
    import pathlib

    source = pathlib.Path(activity.__file__).read_text()
    root = pathlib.Path(activity.__file__).resolve().parents[1]
    recorded = set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        recorded |= set(re.findall(r'audit\.record\([^,]+,\s*"([a-z_]+\.[a-z_]+)"', text))
        recorded |= set(re.findall(r'action="([a-z_]+\.[a-z_]+)"', text))  # add_member(..., action="member.joined")
    org_level = {a for a in recorded if not a.startswith(("auth.", "user."))}  # account events have no organization
    missing = sorted(a for a in org_level if f'"{a}"' not in source)
    assert missing == []
    assert {"member.role_changed", "key.created", "department.merged", "member.joined"} <= org_level


def test_links_to_targets(story):
    org = story["org"]
    rows, _ = activity.feed(org)
    entries = activity.describe(org, rows, _links)
    by_text = {e.text: e for e in entries}
    role = by_text["Olga Owner changed Ann's role from member to viewer"]
    assert ("Ann", f"/membership/{story['ann_m'].id}") in role.parts
    key = by_text["Olga Owner created API key “ci”"]
    assert ("“ci”", f"/key/{story['key'].id}") in key.parts
    merged = by_text["Olga Owner merged the department Data into Engineering"]
    assert ("Engineering", f"/department/{story['eng'].id}") in merged.parts
    created_data = by_text["Olga Owner created the department Data"]
    assert all(url is None for _, url in created_data.parts)  # Data is gone: no link


def test_filters_by_member_and_action(story):
    org = story["org"]
    by_ann = _sentences(org, actor_id=story["ann"].id)
    assert by_ann == ["Ann joined as viewer by invitation"]
    departments_only = _sentences(org, action="department")
    assert departments_only and all("department" in s for s in departments_only)
    assert _sentences(org, action="key.revoked") == ["Olga Owner revoked API key “ci”"]
    assert _sentences(org, action="nothing.like.this") == []
    about_ann = _sentences(org, membership=story["ann_m"])
    assert "Olga Owner changed Ann's role from member to viewer" in about_ann
    assert "Ann joined as viewer by invitation" in about_ann
    assert "Olga Owner created API key “ci”" not in about_ann


def test_pagination(story):
    org = story["org"]
    for i in range(30):
        audit.record(SYSTEM, "org.updated", org=org, target=org, changes={"name": [f"A{i}", f"A{i + 1}"]})
    first, more = activity.feed(org, page=1)
    second, more_after = activity.feed(org, page=2)
    assert len(first) == activity.PER_PAGE and more
    assert not {r.id for r in first} & {r.id for r in second}
    total = AuditLog.select().where(AuditLog.organization == org).count()
    assert len(first) + len(second) == total and not more_after


def test_page_filters_push_the_url_and_page(app, story):
    client = Client(app)
    client.sign_in("owner@acme.com")
    html = client.get("/team/activity").get_data(as_text=True)
    assert "changed <a href=\"/team/members/" in html  # a link to Ann's page
    assert "invited bob@example.com as member" in html
    response = client.get(f"/team/activity?member={story['ann'].id}&action=member", htmx=True)
    assert response.status_code == 200
    assert response.headers["HX-Push-Url"] == f"/team/activity?member={story['ann'].id}&action=member"
    text = response.get_data(as_text=True)
    assert "joined" in text and "created the department" not in text and "<html" not in text
    assert "Nothing matches" in client.get("/team/activity?action=key.rotated").get_data(as_text=True)
    assert client.get("/team/activity?member=abc&page=-4").status_code == 200

    member = client.get(f"/team/members/{story['ann_m'].id}").get_data(as_text=True)
    assert "&#39;s role from member to viewer" in member and "joined" in member


def test_only_audit_readers_see_the_feed(app, story, make_user):
    viewer = make_user("vic@acme.com")
    add_member(story["org"], viewer, "viewer")
    client = Client(app)
    client.sign_in(viewer.email)
    assert client.get("/team/activity").status_code == 403
    member = client.get(f"/team/members/{story['ann_m'].id}").get_data(as_text=True)
    assert "Recent activity" not in member
    assert 'href="/team/activity"' not in client.get("/team/").get_data(as_text=True)

"""Team analytics: every number equals a brute-force sum over the stored
usage events of the period (in the organization's time zone); new and
inactive members; the page, its period picker and its permission."""
from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import date, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from costguardian import clock
from costguardian.models import Membership, UsageEvent, User
from costguardian.services.team import analytics as team_analytics
from costguardian.services.usage import ingest, queries as usage_queries
from tests.support import Client, add_member
from tests.test_usage_queries import APRIL, build_usage_data

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)


@pytest.fixture
def usage_data(make_user, make_org):
    data = build_usage_data(make_user, make_org)
    bob = make_user("bob@acme.com", name="Bob Builder")
    add_member(data.org, bob, "viewer")
    Membership.update(department=data.departments["Sales"]).where(Membership.user == bob).execute()
    return data


def _brute_force(org, start: date, end: date):
    """Sums over the raw events whose local day is in [start, end]."""
    tz = ZoneInfo(org.time_zone)
    by_user, by_dept = defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0])
    by_dept_model = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    total = [0, 0]
    for e in UsageEvent.in_org(org):
        local = e.occurred_at.replace(tzinfo=timezone.utc).astimezone(tz).date()
        if not start <= local <= end:
            continue
        cost = e.cost_nanos or 0
        for acc in (by_user[e.user_ref.lower()], by_dept[e.department_id or 0],
                    by_dept_model[e.department_id or 0][e.model], total):
            acc[0] += cost
            acc[1] += 1
    return total, by_user, by_dept, by_dept_model


def test_report_equals_a_brute_force_sum_over_events(usage_data):
    org = usage_data.org
    report = team_analytics.report(org, APRIL.start, APRIL.end)
    total, by_user, by_dept, by_dept_model = _brute_force(org, APRIL.start, APRIL.end)
    assert total[1] == 6  # the period really holds usage (see test_usage_queries)
    assert (report.total.cost_nanos, report.total.requests) == tuple(total)

    members = {r.user.email: (r.cost_nanos, r.requests) for r in report.members}
    assert set(members) == {"owner@acme.com", "alice@acme.com", "bob@acme.com"}
    for email, sums in members.items():
        assert sums == tuple(by_user.get(email, [0, 0])), email
    assert members["alice@acme.com"][1] == 2 and members["bob@acme.com"] == (0, 1)
    # members first by spend, then the rest (non-members and "no user") add up to the total
    assert [r.cost_nanos for r in report.members] == sorted((r.cost_nanos for r in report.members), reverse=True)
    others = [sum(v[i] for k, v in by_user.items() if k not in members) for i in (0, 1)]
    assert (report.others.cost_nanos, report.others.requests) == tuple(others)

    departments = {r.department_id: r for r in report.departments}
    assert {k: (r.cost_nanos, r.requests) for k, r in departments.items()} == \
        {k: tuple(v) for k, v in by_dept.items()}
    assert departments[0].label == "(no department)"
    assert departments[usage_data.departments["Platform"].id].label == "Engineering › Platform"
    for dept_id, row in departments.items():
        expected = sorted(by_dept_model[dept_id].items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:3]
        assert [(m, (s.cost_nanos, s.requests)) for m, s in row.top_models] == [(m, tuple(v)) for m, v in expected]
    assert [r.cost_nanos for r in report.departments] == sorted((r.cost_nanos for r in report.departments),
                                                                reverse=True)


def test_report_never_counts_another_tenant(usage_data):
    report = team_analytics.report(usage_data.org, APRIL.start, APRIL.end)
    other = team_analytics.report(usage_data.other_org, APRIL.start, APRIL.end)
    assert other.total.requests == 3 and report.total.requests == 6
    # Globex's events name alice@acme.com, who is no member there
    assert other.others.requests == 3 and all(r.requests == 0 for r in other.members)


def test_new_and_inactive_members(make_user, make_org):
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    long_ago = clock.now() - timedelta(days=120)
    Membership.update(created_at=long_ago).execute()
    User.update(last_login_at=clock.now()).where(User.id == owner.id).execute()
    people = {}
    for email in ("alice@acme.com", "bob@acme.com", "carol@acme.com", "dan@acme.com"):
        people[email] = add_member(org, make_user(email, name=email.split("@")[0].title()), "member")
    # alice: usage today; bob: signed in today; carol: nothing for 60 days; dan: never signed in, new
    Membership.update(created_at=long_ago).where(Membership.id.in_(
        [people["alice@acme.com"].id, people["bob@acme.com"].id, people["carol@acme.com"].id])).execute()
    User.update(last_login_at=clock.now()).where(User.email == "bob@acme.com").execute()
    User.update(last_login_at=clock.now() - timedelta(days=60)).where(User.email == "carol@acme.com").execute()
    # Alice's call halfway through today so far: usage is read from hourly rollups, and in a
    # half-hour zone (Asia/Kolkata) the last 30 minutes of a local day count on the next one.
    today = clock.today(org)
    midnight, _ = usage_queries.exact_bounds(org, today, today)
    used_at = (midnight + (clock.now() - midnight) / 2).replace(microsecond=0)
    assert ingest.ingest(org, None, [{"event_id": "a1", "provider": "openai", "model": "gpt-4o",
                                      "occurred_at": used_at.isoformat() + "Z",
                                      "input_tokens": 10, "output_tokens": 5, "user": "Alice@Acme.com"}]
                         ).count("accepted") == 1
    report = team_analytics.report(org, today - timedelta(days=29), today)
    assert [r.user.email for r in report.new_members] == ["dan@acme.com"]
    assert sorted(r.user.email for r in report.inactive_members) == ["carol@acme.com", "dan@acme.com"]
    alice = next(r for r in report.members if r.user.email == "alice@acme.com")
    assert alice.requests == 1  # the user reference matched whatever its case
    assert report.members[0].user.email == "alice@acme.com"


def test_page_period_picker_and_chart(app, usage_data):
    client = Client(app)
    client.sign_in("owner@acme.com")
    response = client.get("/team/?from=2025-04-01&to=2025-04-30")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'href="/team/"' in html  # the nav link
    chart = json.loads(re.search(r'<template id="team-daily-data" class="chart-data">(.*?)</template>', html,
                                 re.S).group(1).replace("&#34;", '"'))
    assert len(chart["labels"]) == 30 and chart["datasets"]
    alice = Membership.in_org(usage_data.org).join(User).where(User.email == "alice@acme.com").get()
    assert f'/team/members/{alice.id}?from=2025-04-01' in html
    assert "Engineering › Platform" in html and "Alice Analyst" in html

    partial = client.get("/team/?preset=last_month", htmx=True)
    assert partial.status_code == 200 and "<html" not in partial.get_data(as_text=True)
    assert partial.headers["HX-Push-Url"] == "/team/?preset=last_month"
    bad = client.get("/team/?from=2025-04-30&to=2025-04-01", htmx=True)
    assert bad.status_code == 422 and "before the start date" in bad.get_data(as_text=True)

    member = client.get(f"/team/members/{alice.id}?from=2025-04-01&to=2025-04-30").get_data(as_text=True)
    assert "Alice Analyst" in member and "gpt-4o" in member and "Recent activity" in member


def test_page_needs_sign_in_and_a_member_page_of_this_org(app, usage_data):
    client = Client(app)
    assert client.get("/team/").status_code == 302
    client.sign_in("owner@acme.com")
    other = Membership.in_org(usage_data.other_org).get()
    assert client.get(f"/team/members/{other.id}").status_code == 404
    assert client.get("/team/members/99999999999").status_code == 404


def _statements(caplog, work) -> int:
    import logging

    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        work()
    return sum(1 for r in caplog.records if r.name == "peewee")


def test_queries_do_not_grow_with_members(usage_data, make_user, caplog):
    org = usage_data.org
    few = _statements(caplog, lambda: team_analytics.report(org, APRIL.start, APRIL.end))
    for i in range(4):
        user = make_user(f"person{i}@acme.com", name=f"Person {i}")
        add_member(org, user, "member")
    many = _statements(caplog, lambda: team_analytics.report(org, APRIL.start, APRIL.end))
    # rollups, members with usage, the count and a page of the others, new and inactive (count + first
    # few each), department names: a fixed number, however many members (bench/members.py: 10,000)
    assert 0 < few == many <= 10

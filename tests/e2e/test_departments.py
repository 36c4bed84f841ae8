"""Journey through the team area: an owner creates a department and a
sub-department, moves a member into the sub-department, merges it away,
looks at the analytics and finds every step in the activity feed."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from costguardian.services.usage import ingest
from tests.support import add_member


def test_departments_merge_and_activity(page, make_user, make_org, sign_in, shot):
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    ann = make_user("ann@acme.example.com", name="Ann Analyst")
    add_member(org, ann, "member")
    result = ingest.ingest(org, None, [{"event_id": f"e{i}", "provider": "openai", "model": "gpt-4o",
                                        "input_tokens": 10_000, "output_tokens": 1_000,
                                        "user": "ann@acme.example.com"} for i in range(3)])
    assert result.count("accepted") == 3

    sign_in(page, "olga@acme.example.com")
    page.locator("ul.mainnav").get_by_role("link", name="Team").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Team analytics")
    expect(page.get_by_test_id("team-members")).to_contain_text("Ann Analyst")
    shot(page, "1-analytics")

    page.get_by_role("navigation", name="Team").get_by_role("link", name="Departments").click()
    expect(page).to_have_url(re.compile(r"/departments/$"))
    page.get_by_label("Name").fill("Engineering")
    page.get_by_label("Cost-centre code").fill("CC-100")
    page.get_by_role("button", name="Create department").click()
    expect(page.get_by_test_id("department-tree")).to_contain_text("Engineering")
    page.locator("details.dept-create summary").click()
    page.get_by_label("Name").fill("Platform")
    page.get_by_label("Parent department").select_option(label="Engineering")
    page.get_by_role("button", name="Create department").click()
    expect(page.get_by_test_id("department-tree")).to_contain_text("Platform")
    expect(page.locator("th.dept-depth-1")).to_contain_text("Platform")
    shot(page, "2-tree")

    page.get_by_test_id("department-tree").get_by_role("link", name="Platform").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Platform")
    picker = page.get_by_label("Member", exact=True)  # a search-as-you-type picker: suggestions as one types
    picker.press_sequentially("ann@")
    expect(page.locator("#member_email-matches option[value='ann@acme.example.com']")).to_have_count(1)
    picker.fill("ann@acme.example.com")
    expect(page.locator("input[name=member]")).not_to_have_value("")  # picker.js copied the chosen id
    page.get_by_role("button", name="Move into Platform").click()
    expect(page.get_by_test_id("department-members")).to_contain_text("Ann Analyst")
    shot(page, "3-sub-department")

    page.get_by_label("Merge into").select_option(label="Engineering")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Merge into this department").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Engineering")
    expect(page.get_by_test_id("department-members")).to_contain_text("Ann Analyst")
    expect(page.locator(".flash")).to_contain_text("merged into")
    shot(page, "4-merged")

    page.get_by_role("navigation", name="Team").get_by_role("link", name="Activity").click()
    feed = page.get_by_test_id("activity-feed")
    expect(feed).to_contain_text("Olga Owner created the department Engineering")
    expect(feed).to_contain_text("Olga Owner created the department Platform under Engineering")
    expect(feed).to_contain_text("Olga Owner put Ann Analyst in Platform")
    expect(feed).to_contain_text("Olga Owner merged the department Platform into Engineering")
    page.get_by_label("What").select_option(label="Departments")
    expect(page).to_have_url(re.compile(r"action=department"))
    expect(feed).not_to_contain_text("put Ann Analyst")
    shot(page, "5-activity")

    page.get_by_role("navigation", name="Team").get_by_role("link", name="Roles & permissions").click()
    expect(page.get_by_test_id("permission-matrix")).to_contain_text("members:manage")
    shot(page, "6-roles")
    page.get_by_role("navigation", name="Team").get_by_role("link", name="Analytics").click()
    page.get_by_test_id("team-members").get_by_role("link", name="Ann Analyst").click()
    expect(page.get_by_test_id("member-profile")).to_contain_text("Engineering")
    expect(page.get_by_test_id("member-activity")).to_contain_text("put Ann Analyst in Platform")
    shot(page, "7-member")

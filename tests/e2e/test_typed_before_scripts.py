"""What a person types before the page's scripts have run is not lost: the
live search fires once htmx is bound (static/js/app.js replays the typed
field's event)."""
from __future__ import annotations

import re

from playwright.sync_api import expect


class _HeldScripts:
    """htmx held back, as a slow network would, until release(): the typing
    comes first, deterministically."""

    def __init__(self, page):
        self.page, self.held = page, []
        page.route(re.compile(r".*/static/vendor/htmx\.min\.js.*"), lambda route: self.held.append(route))

    def release(self):
        for route in self.held:
            route.continue_()
        self.page.unroute(re.compile(r".*/static/vendor/htmx\.min\.js.*"))


def test_a_search_typed_before_htmx_loads_still_filters(page, make_user, make_org, sign_in):
    from tests.support import add_member

    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    add_member(org, make_user("ben@acme.example.com", name="Ben Builder"), "member")
    add_member(org, make_user("cara@acme.example.com", name="Cara Coder"), "viewer")
    sign_in(page, "olga@acme.example.com")

    scripts = _HeldScripts(page)
    page.goto("/members/", wait_until="commit")
    search = page.get_by_label("Search members")
    search.fill("ben")  # the page is parsed, htmx is not there yet
    assert page.evaluate("typeof window.htmx") == "undefined"
    scripts.release()
    expect(page.locator("#members tbody tr")).to_have_count(1)
    expect(page.locator("#members tbody")).to_contain_text("Ben Builder")
    expect(page).to_have_url(re.compile(r"/members/\?q=ben"))


def test_a_filter_chosen_before_htmx_loads_still_applies(page, make_user, make_org, sign_in):
    """A select with no hx-trigger (htmx's default: change), chosen first."""
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    make_org("Acme Analytics", owner=owner)
    sign_in(page, "olga@acme.example.com")

    scripts = _HeldScripts(page)
    page.goto("/usage/", wait_until="commit")
    page.get_by_label("Source").select_option("gateway")
    assert page.evaluate("typeof window.htmx") == "undefined"
    scripts.release()
    expect(page.get_by_test_id("usage-heading")).to_have_text("All usage, through the gateway")


def test_a_member_picker_typed_into_before_htmx_loads_still_suggests(page, make_user, make_org, sign_in):
    """The picker's datalist listens with `from:#field`: the typed field is that one."""
    from costguardian.models import Department
    from tests.support import add_member

    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    add_member(org, make_user("ann@acme.example.com", name="Ann Analyst"), "member")
    platform = Department.create(organization=org, name="Platform")
    sign_in(page, "olga@acme.example.com")

    scripts = _HeldScripts(page)
    page.goto(f"/departments/{platform.id}", wait_until="commit")
    page.get_by_label("Member", exact=True).fill("ann@")
    assert page.evaluate("typeof window.htmx") == "undefined"
    scripts.release()
    expect(page.locator("#member_email-matches option[value='ann@acme.example.com']")).to_have_count(1)

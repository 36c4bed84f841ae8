"""What a person types before the page's scripts have run is not lost: the
live search fires once htmx is bound (static/js/app.js replays the typed
field's event)."""
from __future__ import annotations

import re
import time

from playwright.sync_api import expect


def _slow_scripts(page, seconds: float):
    """Hold htmx back as a slow network would, so the typing comes first."""
    def hold(route):
        time.sleep(seconds)
        route.continue_()
    page.route(re.compile(r".*/static/vendor/htmx\.min\.js.*"), hold)


def test_a_search_typed_before_htmx_loads_still_filters(page, make_user, make_org, sign_in):
    from tests.support import add_member

    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    add_member(org, make_user("ben@acme.example.com", name="Ben Builder"), "member")
    add_member(org, make_user("cara@acme.example.com", name="Cara Coder"), "viewer")
    sign_in(page, "olga@acme.example.com")

    _slow_scripts(page, 1.5)
    page.goto("/members/", wait_until="commit")
    search = page.get_by_label("Search members")
    search.fill("ben")  # the page is parsed, htmx is not there yet
    assert page.evaluate("typeof window.htmx") == "undefined"
    expect(page.locator("#members tbody tr")).to_have_count(1)
    expect(page.locator("#members tbody")).to_contain_text("Ben Builder")
    expect(page).to_have_url(re.compile(r"/members/\?q=ben"))

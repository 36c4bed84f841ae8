"""Every page of the navigation, as owner, member and viewer, at 1366 px and
at 390 px (issue 18): the page body never gets wider than the window, nothing
is logged to the console as an error, the Content-Security-Policy is never
violated, and axe-core finds no WCAG 2.2 AA violation.

One browser context per role and width; the pages are the header's links
(sections, "More", menus, bell) plus the detail pages behind them that the
role can open (a budget, a key, a webhook, a department, ...). Screenshots of
the dashboard, a budget, the explorer and the deliveries go to
/tmp/e2e-shots/every-page/ (every page with CG_E2E_SHOTS=all).
"""
from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import SHOTS_DIR
from tests.e2e.pages_support import (CSP_WATCH, WIDTHS, PageWatch, axe_source, check_page, header_links,
                                     reachable, seed_demo_org)

ROLES = {"owner": "owner@example.com", "member": "member@example.com", "viewer": "viewer@example.com"}
PUBLIC = ["/login", "/signup", "/forgot-password"]
FITS_AT_DESKTOP = {"/notifications/deliveries"}
SHOWN = re.compile(r"^/($|budgets/\d+$|usage/|notifications/webhooks/\d+$|notifications/deliveries$)")


def _shot_name(role: str, width: str, path: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-") or "dashboard"
    return f"{role}-{width}-{slug}.png"


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("role", list(ROLES))
def test_every_page_fits_is_accessible_and_clean(app, browser, live_server, app_ctx, tmp_path, webhook_receiver,
                                                  monkeypatch, role, width):
    # The browser keeps the static files for the test instead of asking again on every page.
    monkeypatch.setitem(app.config, "SEND_FILE_MAX_AGE_DEFAULT", 600)
    demo = seed_demo_org(tmp_path / "instance", webhook_receiver.url("/hook"))
    axe = axe_source()
    folder = SHOTS_DIR / "every-page"
    folder.mkdir(parents=True, exist_ok=True)
    every_shot = os.environ.get("CG_E2E_SHOTS") == "all"
    only = re.compile(os.environ.get("CG_E2E_ONLY", ""))  # e.g. CG_E2E_ONLY=keys while fixing one page
    w, h = WIDTHS[width]
    context = browser.new_context(base_url=live_server, viewport={"width": w, "height": h})
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    watch = PageWatch(page)
    problems: list[str] = []
    try:
        if role == "owner":  # the signed-out pages once per width
            for path in filter(only.search, PUBLIC):
                problems += check_page(page, watch, path, axe)
        page.goto("/login")
        page.get_by_label("Email").fill(ROLES[role])
        page.get_by_label("Password", exact=True).fill(demo.password)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page).not_to_have_url(re.compile(r"/login"))
        watch.take()

        page.goto("/")
        paths = ["/"] + [p for p in header_links(page) if p != "/"]
        paths += reachable(context, [p for p in demo.pages.values() if p not in paths])
        assert len(paths) >= (25 if role == "owner" else 12), paths
        for path in filter(only.search, paths):
            problems += check_page(page, watch, path, axe)
            if width == "desktop" and path in FITS_AT_DESKTOP and page.locator(".overflow-auto.scrolls").count():
                problems.append(f"{path}: its table does not fit at {w} px")
            if every_shot or SHOWN.match(path):
                page.screenshot(path=str(folder / _shot_name(role, width, path)), full_page=True)
    finally:
        context.close()
    assert not problems, f"{len(problems)} problems on {role}'s pages at {width} width:\n" + "\n".join(problems)


def test_keyboard_skip_link_menus_and_form_errors_after_a_swap(page, make_user, make_org, sign_in):
    """The first Tab reaches "Skip to content", which moves focus into the page;
    "More" opens from the keyboard; at 390 px the sections fold into "Menu"; a form answered 422 by htmx puts focus on
    the field to fix and says what is wrong."""
    make_org("Acme", owner=make_user("olga@acme.example.com", name="Olga Owner"))
    (SHOTS_DIR / "every-page").mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1366, "height": 860})
    sign_in(page, "olga@acme.example.com")
    page.goto("/keys/")

    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main#content")).to_be_focused()

    more = page.get_by_test_id("nav-more")
    more.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(more.get_by_role("link", name="Prices")).to_be_visible()
    page.keyboard.press("Enter")  # closes again
    expect(more.get_by_role("link", name="Prices")).to_be_hidden()

    page.set_viewport_size({"width": 390, "height": 844})  # the sections fold into "Menu"
    expect(page.locator("ul.mainnav")).to_be_hidden()
    menu = page.get_by_test_id("sections-menu")
    expect(menu.locator("summary")).to_contain_text("API keys")  # where one is
    menu.locator("summary").click()
    expect(menu.get_by_role("link", name="Reconciliation")).to_be_visible()
    page.screenshot(path=str(SHOTS_DIR / "every-page" / "phone-menu-open.png"))
    menu.locator("summary").click()

    page.locator("#key-create").evaluate("details => { details.open = true; }")
    page.get_by_role("button", name="Create key").click()
    name = page.get_by_label("Name", exact=True)
    expect(name).to_be_focused()
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#a11y-status")).to_contain_text("The form has")

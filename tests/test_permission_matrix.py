"""The role × permission matrix: the page shows exactly the data the code
enforces, every permission guards at least one route, and every mutating
route declares what guards it."""
from __future__ import annotations

import re

import pytest

from costguardian.authz import PUBLIC_ENDPOINTS
from costguardian.permissions import PERMISSIONS, ROLE_PERMISSIONS, ROLES
from tests.support import Client, add_member

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def _routes(app):
    for rule in app.url_map.iter_rules():
        yield rule, app.view_functions[rule.endpoint]


def test_every_permission_guards_at_least_one_route(app):
    guarded = {getattr(view, "required_permission", None) for _, view in _routes(app)}
    unused = sorted(set(PERMISSIONS) - guarded)
    assert unused == [], f"permissions that guard no route (remove them until their feature exists): {unused}"


def test_every_mutating_route_declares_a_permission(app):
    undeclared = []
    for rule, view in _routes(app):
        if not rule.methods & MUTATING or rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        if getattr(view, "api_key_auth", False):
            assert getattr(view, "required_scope", None), rule.endpoint  # checked by the key's scope
            continue
        if getattr(view, "personal", False):
            continue  # the user's own account
        if getattr(view, "platform", None):
            continue  # a platform console page (authz.platform_required; 403 to everyone else)
        if getattr(view, "required_permission", None) not in PERMISSIONS:
            undeclared.append(f"{sorted(rule.methods & MUTATING)} {rule.rule} ({rule.endpoint})")
    assert undeclared == []


def test_the_route_test_sees_the_real_routes(app):
    """The checks above are not vacuous: writes of several areas are among them."""
    permissions_of_writes = {getattr(view, "required_permission", None) for rule, view in _routes(app)
                             if rule.methods & MUTATING}
    assert {"members:manage", "keys:manage", "org:settings", "prices:manage"} <= permissions_of_writes


def test_the_page_is_the_same_data(app, make_user, make_org):
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    viewer = make_user("vic@acme.com")
    add_member(org, viewer, "viewer")
    client = Client(app)
    client.sign_in(viewer.email)  # members:read is enough
    html = client.get("/team/roles").get_data(as_text=True)
    rows = re.findall(r'<tr data-permission="([^"]+)">(.*?)</tr>', html, re.S)
    assert [p for p, _ in rows] == list(PERMISSIONS)
    for permission, row in rows:
        assert PERMISSIONS[permission].replace("'", "&#39;") in row
        cells = re.findall(r'<td class="center" data-role="([^"]+)">(.*?)</td>', row, re.S)
        assert [role for role, _ in cells] == list(ROLES)
        for role, cell in cells:
            assert ("granted" in cell) == (permission in ROLE_PERMISSIONS[role]), (permission, role)
    for description in ROLES.values():
        assert description.replace("'", "&#39;") in html


@pytest.mark.parametrize("path", ["/team/roles", "/departments/"])
def test_team_pages_link_each_other(app, make_user, make_org, path):
    owner = make_user("owner@acme.com")
    make_org("Acme", owner=owner)
    client = Client(app)
    client.sign_in(owner.email)
    html = client.get(path).get_data(as_text=True)
    for href in ("/team/", "/team/activity", "/departments/", "/team/roles"):
        assert f'href="{href}"' in html

"""Every platform console route, whatever section it belongs to: closed to
anonymous visitors and to organization owners who are not platform admins,
closed to support where it writes or configures, and read pages leave an
audit row."""
from __future__ import annotations

import pytest

from costguardian.models import AuditLog
from tests.support import Client


def _console_rules(app):
    """(url, method, level) for every console route, arguments filled with 1."""
    found = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        level = getattr(view, "platform", None)
        if level is None:
            continue
        url = rule.rule
        for argument in rule.arguments:
            url = url.replace(f"<int:{argument}>", "1").replace(f"<{argument}>", "1")
            url = url.replace(f"<string:{argument}>", "1")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((url, method, level))
    return found


@pytest.fixture
def clients(app, make_user, make_org):
    owner = make_user("owner@acme.com")
    make_org("Acme", owner=owner)
    support = make_user("help@example.com", platform_role="support")
    result = {}
    for name, user in (("owner", owner), ("support", support)):
        client = Client(app)
        client.sign_in(user.email)
        result[name] = client
    result["anonymous"] = Client(app)
    return result


def test_the_console_has_routes_at_every_level(app):
    levels = {level for _, _, level in _console_rules(app)}
    assert {"read", "write"} <= levels


def test_anonymous_visitors_are_sent_to_sign_in(app, clients):
    for url, method, _ in _console_rules(app):
        if method == "GET":
            response = clients["anonymous"].get(url)
            assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_organization_owners_get_403_everywhere(app, clients):
    for url, method, _ in _console_rules(app):
        if method == "GET":
            response = clients["owner"].get(url)
        else:
            response = clients["owner"].post(url)
        assert response.status_code == 403, (method, url, response.status_code)


def test_support_cannot_write_or_configure(app, clients):
    for url, method, level in _console_rules(app):
        if level != "write":
            continue
        response = clients["support"].get(url) if method == "GET" else clients["support"].post(url)
        assert response.status_code == 403, (method, url, response.status_code)


def test_reading_a_console_page_leaves_an_audit_row(app, clients):
    assert clients["support"].get("/admin/billing/").status_code == 200
    row = AuditLog.select().where(AuditLog.action == "platform.viewed").order_by(AuditLog.id.desc()).get()
    assert row.actor.email == "help@example.com" and row.detail["path"] == "/admin/billing/"

"""The superadmins' outbox page: every stored email, filters, pagination,
the detail with both parts (HTML in a sandboxed iframe), and nobody else."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from costguardian import clock
from costguardian.models import OutboxMessage
from costguardian.services.notifications import outbox
from tests.support import Client


@pytest.fixture
def superadmin_client(app, make_user):
    user = make_user("root@example.com", name="Root", superadmin=True)
    client = Client(app)
    client.sign_in(user.email)
    return client


def _message(to="ann@example.com", subject="Hello", status="sent", **fields):
    return OutboxMessage.create(to_address=to, subject=subject, text_body=fields.pop("text", "Plain text body"),
                                html_body=fields.pop("html", "<p style=\"color: red\">HTML body</p>"),
                                status=status, backend=fields.pop("backend", "console"), **fields)


def test_lists_every_message_newest_first(superadmin_client):
    old = _message(subject="Older", created_at=clock.now() - timedelta(hours=1))
    new = _message(to="bob@example.com", subject="Newer", status="failed", backend="smtp", error="535 bad auth")

    html = superadmin_client.get("/admin/outbox/").get_data(as_text=True)

    assert html.index("Newer") < html.index("Older")
    assert "bob@example.com" in html and "ann@example.com" in html
    assert "535 bad auth" in html and "smtp" in html
    assert f"/admin/outbox/{new.id}" in html and f"/admin/outbox/{old.id}" in html


def test_filters_by_status(superadmin_client):
    _message(subject="Went out")
    _message(subject="Bounced", status="failed")

    html = superadmin_client.get("/admin/outbox/?status=failed").get_data(as_text=True)

    assert "Bounced" in html and "Went out" not in html
    assert "No queued emails." in superadmin_client.get("/admin/outbox/?status=queued").get_data(as_text=True)
    assert "Went out" in superadmin_client.get("/admin/outbox/?status=bogus").get_data(as_text=True)


def test_paginates_with_a_show_older_row(superadmin_client):
    for i in range(outbox.PER_PAGE + 3):
        _message(subject=f"Message {i:03d}")

    first = superadmin_client.get("/admin/outbox/").get_data(as_text=True)
    assert "Message 052" in first and "Message 003" in first and "Message 002" not in first
    assert "/admin/outbox/?page=2" in first

    more = superadmin_client.get("/admin/outbox/?page=2", htmx=True)
    html = more.get_data(as_text=True)
    assert "<html" not in html  # the rows only, appended in place
    assert "Message 002" in html and "Message 000" in html and "Message 003" not in html
    assert "page=3" not in html


def test_detail_shows_text_headers_and_the_html_in_a_sandboxed_iframe(superadmin_client):
    message = _message(subject="Budget alert", text="Line one\n<b>not html</b>",
                       headers=json.dumps({"List-Unsubscribe": "<https://cg.example.com/notifications/unsubscribe/t>"}))

    html = superadmin_client.get(f"/admin/outbox/{message.id}").get_data(as_text=True)

    assert "Budget alert" in html
    assert "Line one\n&lt;b&gt;not html&lt;/b&gt;" in html
    assert "List-Unsubscribe" in html
    assert f'<iframe class="mail-html" sandbox src="/admin/outbox/{message.id}/html"' in html

    part = superadmin_client.get(f"/admin/outbox/{message.id}/html")
    assert part.status_code == 200 and part.mimetype == "text/html"
    assert part.get_data(as_text=True) == '<p style="color: red">HTML body</p>'
    csp = part.headers["Content-Security-Policy"]
    assert csp.startswith("sandbox;") and "default-src 'none'" in csp and "frame-ancestors 'self'" in csp
    assert part.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_missing_messages_are_404(superadmin_client):
    assert superadmin_client.get("/admin/outbox/999999").status_code == 404
    plain = _message(html="")
    assert superadmin_client.get(f"/admin/outbox/{plain.id}/html").status_code == 404


def test_the_console_links_it_for_superadmins_only(superadmin_client, owner_client, make_user):
    from tests.support import Client

    assert 'data-testid="console-link"' in superadmin_client.get("/account/").get_data(as_text=True)
    assert "/admin/outbox/" in superadmin_client.get("/admin/billing/").get_data(as_text=True)
    support = Client(superadmin_client.app)
    support.sign_in(make_user("help@example.com", platform_role="support").email)
    console = support.get("/admin/billing/").get_data(as_text=True)
    assert "/admin/billing/" in console and "/admin/outbox/" not in console
    client, _, _ = owner_client
    account = client.get("/account/").get_data(as_text=True)
    assert "/admin/outbox/" not in account and 'data-testid="console-link"' not in account


def test_everyone_else_gets_403_even_organization_owners_and_support(owner_client, make_user):
    from tests.support import Client

    client, _, _ = owner_client
    support = Client(client.app)
    support.sign_in(make_user("help@example.com", platform_role="support").email)
    message = _message()
    for path in ("/admin/outbox/", f"/admin/outbox/{message.id}", f"/admin/outbox/{message.id}/html"):
        assert client.get(path).status_code == 403
        assert support.get(path).status_code == 403  # reset links in mails: superadmins only


def test_anonymous_visitors_are_sent_to_sign_in(app):
    response = Client(app).get("/admin/outbox/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_it_shows_the_emails_the_app_sends(superadmin_client, app_ctx, make_user):
    from costguardian.services.notifications import mail

    mail.send_email("ann@example.com", "Sent for real", "Body text", "<p>Body</p>")

    html = superadmin_client.get("/admin/outbox/?status=sent").get_data(as_text=True)
    assert "Sent for real" in html and "console" in html

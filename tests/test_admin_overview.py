"""The console's Overview and Usage pages: platform admins only (support
reads), and figures equal to a crafted dataset ingested through the real
services with the clock pinned."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta

import pytest
import time_machine

from costguardian.models import AuditLog, Delivery, Organization, UsageEvent, User
from costguardian.services.usage import ingest
from tests.support import Client, make_org, make_user

NOW = datetime(2026, 3, 15, 12, 30)  # UTC; the month began on the 1st
PAGES = ("/admin/", "/admin/usage/", "/admin/usage/provider.csv")


@pytest.fixture
def pinned(app):
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture
def people(app_ctx, pinned):
    """A superadmin, a support agent and an organization owner, each signed in."""
    clients = {}
    for email, role in (("root@example.com", "superadmin"), ("help@example.com", "support"),
                        ("owner@acme.com", "")):
        make_user(email, platform_role=role)
        clients[role or "owner"] = Client(app_ctx)
        clients[role or "owner"].sign_in(email)
    return clients


def _event(event_id: str, moment: datetime, model: str = "gpt-4o-mini", provider: str = "openai") -> dict:
    return {"event_id": event_id, "provider": provider, "model": model, "input_tokens": 1000, "output_tokens": 200,
            "occurred_at": moment.isoformat() + "Z"}


@pytest.fixture
def dataset(people):
    """Acme: 3 events today, 2 earlier this month (one of an unknown model), 1 last
    month. Globex: 1 event today. Users seen 2, 20 and 45 days ago; one failed
    delivery and one failed delivery already sent again."""
    acme = make_org("Acme", owner=User.by_email("owner@acme.com"))
    globex = make_org("Globex")
    today = NOW.replace(minute=0)
    results = [
        ingest.ingest(acme, None, [_event("a1", today - timedelta(hours=1)), _event("a2", today),
                                   _event("a3", today.replace(hour=0, minute=5)),
                                   _event("a4", datetime(2026, 3, 2, 9)),
                                   _event("a5", datetime(2026, 3, 3, 9), "private-model", "acme"),
                                   _event("a6", datetime(2026, 2, 20, 9))]),
        ingest.ingest(globex, None, [_event("g1", today - timedelta(hours=2), "gpt-4o")]),
    ]
    assert all(r.count("rejected") == 0 for r in results)
    User.update(last_seen_at=None).execute()  # nobody seen yet (signing in counted as seen)
    for email, days in (("seen-2@example.com", 2), ("seen-20@example.com", 20), ("seen-45@example.com", 45)):
        user = make_user(email)
        User.update(last_seen_at=NOW - timedelta(days=days)).where(User.id == user.id).execute()
    for event_id, status in (("ev0", "failed"), ("ev1", "failed"), ("ev1", "sent")):  # ev1 was sent again
        Delivery.create(organization=acme, channel="email", event_id=event_id, event_type="budget.threshold",
                        recipient="owner@acme.com", status=status)
    return acme, globex


def _stat(html: str, testid: str) -> str:
    return re.search(rf'data-testid="{testid}"[^>]*>([^<]*)<', html).group(1).strip()


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("path", PAGES)
def test_organization_owners_get_403_and_support_reads(people, path):
    assert people["owner"].get(path).status_code == 403
    assert people["support"].get(path).status_code == 200
    assert people["superadmin"].get(path).status_code == 200


def test_overview_figures_equal_the_dataset(people, dataset):
    month_events = UsageEvent.select().where(UsageEvent.occurred_at >= datetime(2026, 3, 1))
    spend = sum(e.cost_nanos or 0 for e in month_events)
    assert spend > 0

    html = people["support"].get("/admin/").get_data(as_text=True)

    assert _stat(html, "organizations") == "2"
    assert _stat(html, "users") == str(User.select().count()) == "7"  # Globex's owner too
    # Seen 2 and 20 days ago, and the support agent reading the page now.
    assert _stat(html, "active-7") == "2" and _stat(html, "active-30") == "3"
    assert _stat(html, "events-today") == "4"
    assert _stat(html, "events-month") == "6"
    from costguardian.money import format_usd
    assert _stat(html, "spend-month") == format_usd(spend)
    assert "1 event without a known price" in html
    assert _stat(html, "failed-deliveries") == "1"
    assert _stat(html, "queue-depth") == "0"
    # The charts: their JSON for Chart.js (no inline script) and the numbers in tables.
    events = re.search(r'<template id="admin-events-data"[^>]*>(.*?)</template>', html, re.S).group(1)
    assert '"unit": "count"' in events and '"2026-03-15"' in events and '"2026-02-14"' in events
    assert "<script>" not in html
    table = html.split('data-testid="admin-events-data-table"', 1)[1].split("</table>", 1)[0]
    assert re.search(r'2026-03-15</time></th><td>4</td>', table)
    assert re.search(r'2026-03-02</time></th><td>1</td>', table)
    users = html.split('data-testid="admin-new-users-data-table"', 1)[1].split("</table>", 1)[0]
    assert re.search(r'2026-03-15</time></th><td>7</td>', users)


def test_usage_tables_by_provider_model_organization_and_day(people, dataset):
    html = people["support"].get("/admin/usage/?start=2026-03-01&end=2026-03-15").get_data(as_text=True)

    assert _stat(html, "usage-events") == "6"
    for testid, labels in (("usage-by-provider", ("openai", "acme")),
                           ("usage-by-model", ("gpt-4o-mini (openai)", "gpt-4o (openai)", "private-model (acme)")),
                           ("usage-by-organization", ("Acme", "Globex"))):
        section = html.split(f'data-testid="{testid}"', 1)[1].split("</section>", 1)[0]
        for label in labels:
            assert f'<th scope="row">{label}</th>' in section, (testid, label)
    by_day = html.split('data-testid="usage-by-day"', 1)[1].split("</section>", 1)[0]
    assert by_day.count("<tr>") == 1 + 15  # the heading and every day of the range
    assert "2026-02-20" not in html  # last month is outside the range


def test_usage_csv_export_is_exact_and_audit_logged(people, dataset):
    acme, globex = dataset
    response = people["superadmin"].get("/admin/usage/organization.csv?start=2026-03-01&end=2026-03-31")

    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["organization", "events", "input_tokens", "output_tokens", "cost_usd", "unpriced_events"]
    by_name = {r[0]: r for r in rows[1:]}
    acme_spend = sum(e.cost_nanos or 0 for e in UsageEvent.select().where(
        UsageEvent.organization == acme, UsageEvent.occurred_at >= datetime(2026, 3, 1)))
    assert by_name["Acme"][1] == "5" and by_name["Acme"][5] == "1"
    assert by_name["Acme"][4] == f"{acme_spend // 10**9}.{acme_spend % 10**9:09d}"
    assert by_name["Globex"][1] == "1"
    row = AuditLog.select().where(AuditLog.action == "platform.usage_exported").get()
    assert row.detail["table"] == "organization"


def test_only_the_top_rows_are_listed_the_rest_summed(people, dataset):
    from costguardian.services.platform import stats

    report = stats.usage(NOW.date() - timedelta(days=29), NOW.date(), top=1)
    by_org = next(t for t in report.tables if t.name == "organization")
    assert [r.label for r in by_org.rows] == ["Globex"]  # one gpt-4o call costs more than Acme's six
    assert by_org.others.label == "Everything else" and by_org.others.requests == 6
    assert by_org.rows[0].cost_nanos + by_org.others.cost_nanos == report.total.cost_nanos
    assert report.total.requests == 7  # the last 30 days include Acme's event of 20 February


def test_a_wrong_range_answers_422_with_the_field_message(people):
    response = people["support"].get("/admin/usage/?start=2026-03-10&end=2026-03-01")
    assert response.status_code == 422
    assert "The end must not come before the start." in response.get_data(as_text=True)
    response = people["support"].get("/admin/usage/?start=yesterday", htmx=True)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "Enter a date as YYYY-MM-DD." in body and 'id="usage-report"' in body and "<html" not in body
    assert people["support"].get("/admin/usage/model.csv?start=2025-01-01&end=2026-03-01").status_code == 422
    assert people["support"].get("/admin/usage/nothing.csv").status_code == 404


def test_the_console_nav_lists_the_sections(people):
    html = people["support"].get("/admin/").get_data(as_text=True)
    nav = html.split('data-testid="console-nav"', 1)[1].split("</nav>", 1)[0]
    assert "/admin/usage/" in nav and "/admin/health/" in nav
    assert Organization.select().count() == 0  # nothing made by looking

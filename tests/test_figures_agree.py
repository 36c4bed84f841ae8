"""The same figure is the same everywhere (issue 18 §1): a budget's spend,
limit, percent and forecast read alike in the list, on its page and in its
alert; unpriced usage is never $0.00 and is counted alike on the dashboard
and in the explorer; list times follow the organization's zone, CSV stays UTC."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone

import pytest
import time_machine

from costguardian.models import Notification
from costguardian.money import format_usd
from costguardian.services.budgets import budgets
from costguardian.services.usage import ingest
from tests.support import SYSTEM, Client

MID_MONTH = datetime(2026, 11, 18, 15, 30, tzinfo=timezone.utc)


@pytest.fixture
def acme(app, make_user, make_org):
    """A signed-in owner, the clock stopped in the middle of a month (so "this month" has days before today)."""
    with time_machine.travel(MID_MONTH, tick=False):
        user = make_user("owner@acme.com", name="Olga Owner")
        org = make_org("Acme", owner=user)
        client = Client(app)
        client.sign_in(user.email)
        yield client, user, org


def _text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def _event(event_id, minutes_ago=60, provider="openai", model="gpt-4o", tokens=1_000_000):
    """gpt-4o input: $2.50 per million tokens."""
    at = MID_MONTH.replace(tzinfo=None) - timedelta(minutes=minutes_ago)
    return {"event_id": event_id, "provider": provider, "model": model, "input_tokens": tokens,
            "occurred_at": at.isoformat() + "Z"}


def test_a_budget_reads_the_same_in_the_list_its_page_and_its_alert(acme):
    client, _, org = acme
    ingest.ingest(org, None, [_event("a")])  # $2.50
    budget = budgets.create(org, SYSTEM, {"name": "Tight", "amount_usd": "2.986", "thresholds": "80"})
    st = budgets.status(budget)
    assert st.spend == 2_500_000_000 and st.forecast is not None
    # 83.72%: rounding would say 84% on a page while the alert said 83%; one rule says 83% everywhere.
    listing, page = _text(client.get("/budgets/")), _text(client.get(f"/budgets/{budget.id}"))
    alert = Notification.select().where(Notification.organization == org).get()
    forecast = format_usd(st.forecast)
    assert "83%" in listing and "84%" not in listing
    assert "83% of the limit" in page and "84%" not in page
    assert "$2.50 of $2.99 (83%)" in alert.body
    assert f"forecast {forecast}" in listing
    assert f'data-testid="budget-forecast">{forecast}<' in page
    # Minutes later a fresh projection would differ by a cent; the page shows the stored forecast.
    with time_machine.travel(MID_MONTH + timedelta(minutes=20), tick=False):
        later = _text(client.get(f"/budgets/{budget.id}"))
    assert f'data-testid="budget-forecast">{forecast}<' in later


def test_small_amounts_keep_their_digits_on_every_screen(acme):
    client, _, org = acme
    ingest.ingest(org, None, [_event("tiny", tokens=3_000)])  # 3,000 tokens of gpt-4o input: $0.0075
    dashboard, explorer = _text(client.get("/")), _text(client.get("/usage/?group_by=model"))
    assert "$0.0075" in dashboard and "$0.0075" in explorer
    assert ">$0.01<" not in dashboard and ">$0.01<" not in explorer


def test_unpriced_usage_is_never_zero_dollars_and_counts_agree(acme):
    client, _, org = acme
    ingest.ingest(org, None, [_event("p1"), _event("u1", provider="acme-ai", model="rocket-1"),
                              _event("u2", provider="acme-ai", model="rocket-1")])
    ingest.ingest(org, None, [_event("u3", provider="acme-ai", model="rocket-1")])
    ingest.ingest(org, None, [_event("old", minutes_ago=60 * 24 * 40, provider="acme-ai", model="rocket-1")])
    explorer = _text(client.get("/usage/?group_by=model"))
    table = explorer[explorer.index('data-testid="usage-table"'):]
    row = re.search(r'<tr>\s*<th scope="row">(?:(?!</tr>).)*?rocket-1.*?</tr>', table, re.S).group(0)
    assert 'data-testid="unpriced-cost">unpriced<' in row and "$0.00" not in row
    assert "<td>3</td>" in row  # its requests are shown
    assert re.search(r'data-testid="unpriced-note">2026-11-01 – 2026-11-18: 3 requests', explorer)
    dashboard = _text(client.get("/"))
    assert 'data-testid="unpriced-period">2026-11-01 – 2026-11-18<' in dashboard
    assert 'data-testid="unpriced-count">3<' in dashboard  # this month, as the explorer counts it
    note = Notification.select().where(Notification.organization == org,
                                       Notification.event_type == "usage.unpriced_model").get()
    assert "The first 2 call(s) to acme-ai/rocket-1" in note.body  # says what it counted: the first batch


def test_overlapping_sums_say_so_where_the_total_is(acme):
    client, _, org = acme
    ingest.ingest(org, None, [{**_event("t"), "tags": ["team:a", "env:prod"]}])
    budgets.create(org, SYSTEM, {"name": "Org", "amount_usd": "100"})
    budgets.create(org, SYSTEM, {"name": "OpenAI", "amount_usd": "50", "provider": "openai"})
    assert 'data-testid="tag-overlap-note"' in _text(client.get("/usage/?group_by=tag"))
    assert 'data-testid="report-overlap-note"' in _text(client.get("/budgets/report?period=monthly"))


def test_list_times_follow_the_organization_zone_and_csv_stays_utc(acme):
    client, owner, org = acme
    org.time_zone = "America/New_York"
    org.save()
    ingest.ingest(org, None, [_event("z", minutes_ago=30)])  # 15:00 UTC = 10:00 in New York
    budget = budgets.create(org, SYSTEM, {"name": "Small", "amount_usd": "1"})  # exceeded: an alert now
    audit = _text(client.get("/audit/"))
    assert "2026-11-18 10:30:00 EST" in audit  # the budget's creation, 15:30 UTC
    page = _text(client.get(f"/budgets/{budget.id}"))
    assert "2026-11-18 10:30 EST" in page  # its alert history
    notifications = _text(client.get("/notifications/"))
    assert "10:30 EST" in notifications and "15:30 UTC" not in notifications
    exported = client.get("/usage/export/events.csv?from=2026-11-01&to=2026-11-30", buffered=True)
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert rows[0]["occurred_at_utc"] == "2026-11-18T15:00:00Z"

"""The dashboard: this month against the same days of last month, today,
top lists, the 30-day chart and its htmx toggle, the unpriced warning, the
empty state; in the organization's time zone, never another tenant's data.

Events are placed relative to the real "now" in Los Angeles (one second
after local midnight, so they are never in the future), and every expected
number is computed from the events sent and the cost ingest reported."""
from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from costguardian.models import Department
from costguardian.money import format_usd, usd_decimal
from costguardian.services import keys
from costguardian.services.usage import ingest, queries as usage_queries
from tests.support import SYSTEM, Client, add_member

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)

LA = ZoneInfo("America/Los_Angeles")


def _at(day: date) -> str:
    """One second after midnight of `day` in Los Angeles, as UTC."""
    moment = datetime.combine(day, time(0, 0, 1), LA).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Dashboard:
    def __init__(self, org, key, sent):
        self.org, self.key, self.sent = org, key, sent  # sent: [(local day, event, cost)]

    def cost(self, start: date, end: date, **where) -> int:
        return sum(c or 0 for d, e, c in self.sent if start <= d <= end
                   and all(e.get(k, "") == v for k, v in where.items()))

    def requests(self, start: date, end: date) -> int:
        return sum(1 for d, _, _ in self.sent if start <= d <= end)


@pytest.fixture
def dashboard(app, make_user, make_org):
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner, time_zone="America/Los_Angeles")
    add_member(org, make_user("alice@acme.com", name="Alice Analyst"), "member")
    Department.create(organization=org, name="Research")
    key = keys.create_key(org, SYSTEM, "search-prod", ["ingest"]).key
    today = usage_queries.today(org)
    first = today.replace(day=1)
    last_first, last_end = usage_queries.month_range(first - timedelta(days=1))
    plan = [  # (local day, provider, model, input, output, user, department, with key)
        (today, "openai", "gpt-4o", 1_000_000, 100_000, "alice@acme.com", "Research", True),
        (today, "anthropic", "claude-3-5-sonnet", 400_000, 10_000, "cust-7", "", False),
        (first, "openai", "gpt-4o-mini", 2_000_000, 200_000, "alice@acme.com", "", True),
        (first, "openai", "my-finetune-xyz", 1_000, 10, "", "", False),
        (last_first, "openai", "gpt-4o", 300_000, 30_000, "cust-7", "", False),
        (last_end, "google", "gemini-2.0-flash", 5_000_000, 500_000, "", "", False),
        (today - timedelta(days=45), "openai", "gpt-4o", 50_000, 5_000, "", "", False),
    ]
    sent = []
    for n, (day, provider, model, inp, out, user, department, with_key) in enumerate(plan):
        event = {"event_id": f"d{n}", "occurred_at": _at(day), "provider": provider, "model": model,
                 "input_tokens": inp, "output_tokens": out}
        if user:
            event["user"] = user
        if department:
            event["department"] = department
        result = ingest.ingest(org, key if with_key else None, [event])
        assert result.count("accepted") == 1, result.as_json()
        sent.append((day, event, result.results[0].cost_nanos))
    # Another tenant spending a lot today: never on Acme's dashboard.
    other = make_org("Globex", owner=make_user("owner@globex.com"))
    ingest.ingest(other, None, [{"event_id": "g1", "provider": "openai", "model": "gpt-4o",
                                 "input_tokens": 90_000_000, "output_tokens": 9_000_000}])
    client = Client(app)
    client.sign_in("owner@acme.com")
    return client, Dashboard(org, key, sent), today


def _html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def _testid(html: str, name: str) -> str:
    match = re.search(rf'data-testid="{name}"[^>]*>(.*?)</(?:p|span)>', html, re.S)
    assert match, name
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def test_month_today_and_requests(dashboard):
    client, data, today = dashboard
    html = _html(client.get("/"))
    first = today.replace(day=1)
    this_month = data.cost(first, today)
    assert _testid(html, "spend-this-month") == format_usd(this_month)
    assert _testid(html, "spend-today") == format_usd(data.cost(today, today))
    assert _testid(html, "requests-this-month") == str(data.requests(first, today))
    last_first, last_end = usage_queries.month_range(first - timedelta(days=1))
    assert f"Last month ({last_first.isoformat()[:7]}) in full: {format_usd(data.cost(last_first, last_end))}" in html
    same = usage_queries.same_day_last_month(today)
    before = data.cost(last_first, same)
    change = (this_month - before) * 100 / before
    assert _testid(html, "month-change") == f"{'+' if change > 0 else ''}{change:.1f}%"
    assert f"vs {format_usd(before)} in" in html
    assert 'data-testid="empty-dashboard"' not in html


def test_top_tables_link_into_the_explorer(dashboard):
    client, data, today = dashboard
    html = _html(client.get("/"))
    first = today.replace(day=1)
    models = re.search(r'data-testid="top-model".*?</article>', html, re.S).group(0)
    assert '<a href="/usage/?model=gpt-4o&amp;group_by=day">gpt-4o</a>' in models
    assert format_usd(data.cost(first, today, model="gpt-4o")) in models
    assert "my-finetune-xyz" in models
    users = re.search(r'data-testid="top-user".*?</article>', html, re.S).group(0)
    assert "Alice Analyst (alice@acme.com)" in users and ">cust-7<" in users
    assert format_usd(data.cost(first, today, user="alice@acme.com")) in users
    departments = re.search(r'data-testid="top-department".*?</article>', html, re.S).group(0)
    assert "Research" in departments and "(no department)" in departments
    top_keys = re.search(r'data-testid="top-api_key".*?</article>', html, re.S).group(0)
    assert f'<a href="/usage/?key={data.key.id}&amp;group_by=day">search-prod</a>' in top_keys
    assert '<a href="/usage/?key=0&amp;group_by=day">(no key)</a>' in top_keys
    # Following a top-key link gives that key's history page with the same month total.
    page = _html(client.get(f"/usage/?key={data.key.id}&group_by=day"))
    assert "Usage of key “search-prod”" in page
    assert format_usd(sum(c for d, e, c in data.sent if first <= d <= today and e["event_id"] in ("d0", "d2"))) in page


def test_chart_covers_thirty_local_days(dashboard):
    client, data, today = dashboard
    html = _html(client.get("/"))
    payload = json.loads(re.search(r'<template id="daily-spend-data" class="chart-data">(.*?)</template>',
                                   html, re.S).group(1))
    assert payload["labels"][-1] == today.isoformat() and len(payload["labels"]) == 30
    assert payload["labels"][0] == (today - timedelta(days=29)).isoformat()
    assert {d["label"] for d in payload["datasets"]} <= {"openai", "anthropic", "google"}
    assert '<canvas data-chart="daily-spend-data"' in html
    table = re.search(r'<figure class="chart">.*?</figure>', html, re.S).group(0)
    window = data.cost(today - timedelta(days=29), today)
    assert f"<td>{format_usd(window)}</td></tr></tfoot>" in table
    # Every day's total in the table is the sum of the chart's series that day (to the cent).
    openai_today = data.cost(today, today, provider="openai")
    index = payload["labels"].index(today.isoformat())
    series = {d["label"]: d["data"] for d in payload["datasets"]}
    assert series["openai"][index] == usd_decimal(openai_today)  # exact: charts.js formats by the money rule


def test_stack_toggle_swaps_only_the_chart(dashboard):
    client, data, today = dashboard
    response = client.get("/?stack=model", htmx=True)
    fragment = _html(response)
    assert fragment.lstrip().startswith('<article id="daily-chart"')
    assert "<html" not in fragment and "spend-this-month" not in fragment
    payload = json.loads(re.search(r'id="daily-spend-data" class="chart-data">(.*?)</template>',
                                   fragment, re.S).group(1))
    assert "gpt-4o" in {d["label"] for d in payload["datasets"]}
    assert 'aria-current="true">By model</a>' in fragment
    # The pushed URL works in full, without JavaScript.
    page = _html(client.get("/?stack=model"))
    assert "spend-this-month" in page and 'aria-current="true">By model</a>' in page
    assert _html(client.get("/?stack=nonsense")).count('aria-current="true">By provider</a>') == 1


def test_unpriced_models_warning(app, dashboard):
    client, data, today = dashboard
    html = _html(client.get("/"))
    panel = re.search(r'data-testid="unpriced-models".*?</article>', html, re.S).group(0)
    assert "openai/my-finetune-xyz" in panel
    assert 'data-testid="unpriced-count">1</span> request without a price this month' in panel  # named period
    if "prices.index" in app.view_functions:
        with app.test_request_context():
            from flask import url_for
            assert f'href="{url_for("prices.index")}"' in panel


def test_empty_state_without_usage(app, make_user, make_org):
    make_org("Quiet", owner=make_user("quiet@example.com"), time_zone="Europe/Berlin")
    client = Client(app)
    client.sign_in("quiet@example.com")
    html = _html(client.get("/"))
    assert 'data-testid="empty-dashboard"' in html and "daily-spend-data" not in html


def test_other_tenant_dashboard_is_its_own(app, dashboard):
    client = Client(app)
    client.sign_in("owner@globex.com")
    html = _html(client.get("/"))
    assert "search-prod" not in html and "Alice Analyst" not in html and "claude" not in html
    assert 'data-testid="unpriced-models"' not in html


def test_page_has_no_inline_scripts(dashboard):
    client, _, _ = dashboard
    html = _html(client.get("/"))
    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag, tag
    assert "style=" not in html


def test_history_restore_of_the_toggle_gets_the_whole_page(dashboard):
    client, _, _ = dashboard
    html = _html(client.get("/?stack=model", htmx=True, headers={"HX-History-Restore-Request": "true"}))
    assert "<html" in html and "spend-this-month" in html and 'aria-current="true">By model</a>' in html

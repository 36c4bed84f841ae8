"""Budget screens: list (sort, filter), forms (422 with field messages),
edit, delete, raise, detail (chart data = the services' numbers), the
explainer, the allocation, the report and its CSV, permissions and tenancy."""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest

from costguardian import clock
from costguardian.models import AuditLog, Budget, BudgetAlert, BudgetIncrease, Department, Notification
from costguardian.money import usd_decimal
from costguardian.services.budgets import periods as budget_periods, budgets
from costguardian.services.usage import ingest
from tests.support import SYSTEM, Client, add_member

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)

NOW = clock.now()


def _event(event_id, *, tokens=1_000_000, at=None, **extra):
    """gpt-4o input: $2.50 per million tokens."""
    return {"event_id": event_id, "provider": "openai", "model": "gpt-4o", "input_tokens": tokens,
            "occurred_at": (at or NOW - timedelta(minutes=1)).isoformat() + "Z", **extra}


def _spend(org, dollars: float, prefix: str = "e", **extra):
    """Ingest events worth `dollars` (a multiple of $2.50)."""
    count = round(dollars / 2.5)
    ingest.ingest(org, None, [_event(f"{prefix}{i}", **extra) for i in range(count)])


def _budget(org, **data) -> Budget:
    return budgets.create(org, SYSTEM, {"name": "B", "amount_usd": "100", **data})


def _text(response) -> str:
    return response.get_data(as_text=True)


def _names(html: str) -> list[str]:
    return re.findall(r'<a href="/budgets/\d+">([^<]+)</a>', html)


@pytest.fixture
def acme(owner_client):
    client, owner, org = owner_client
    return client, owner, org


# --- list ------------------------------------------------------------------------------------

def test_empty_state_explains_budgets(acme):
    client, _, _ = acme
    html = _text(client.get("/budgets/"))
    assert 'data-testid="budgets-empty"' in html
    assert "threshold" in html and "hard" in html
    assert "New budget" in html


def test_list_shows_every_budget_with_bar_state_and_sorts_and_filters(acme):
    client, _, org = acme
    _spend(org, 25)  # $25 this period
    _budget(org, name="Alpha", amount_usd="20")  # 125%: exceeded
    _budget(org, name="Bravo", amount_usd="40", enforcement="hard")  # 62.5%: warning (50% crossed)
    _budget(org, name="Charlie", amount_usd="1000", period="yearly")  # 2.5%: ok
    _budget(org, name="Delta", amount_usd="30", provider="anthropic")  # nothing spent
    response = client.get("/budgets/")
    assert response.status_code == 200
    html = _text(response)
    assert _names(html) == ["Alpha", "Bravo", "Charlie", "Delta"]
    assert html.count('data-testid="budget-bar"') == 4
    assert "Exceeded" in html and "Warning" in html
    assert "Provider anthropic" in html and "The whole organization" in html
    assert 'style="' not in html  # the CSP forbids inline styles: the bar is SVG attributes
    assert 'data-threshold="80"' in html

    by_percent = _text(client.get("/budgets/?sort=percent&dir=desc", htmx=True))
    assert _names(by_percent) == ["Alpha", "Bravo", "Charlie", "Delta"]
    by_limit = client.get("/budgets/?sort=limit&dir=asc", htmx=True)
    assert _names(_text(by_limit)) == ["Alpha", "Delta", "Bravo", "Charlie"]
    assert by_limit.headers["HX-Push-Url"].startswith("/budgets/?")
    assert "<html" not in _text(by_limit)  # only the results partial
    by_state = _text(client.get("/budgets/?sort=state", htmx=True))
    assert _names(by_state)[0] == "Alpha"

    assert _names(_text(client.get("/budgets/?state=exceeded"))) == ["Alpha"]
    assert _names(_text(client.get("/budgets/?period=yearly"))) == ["Charlie"]
    assert _names(_text(client.get("/budgets/?enforcement=hard"))) == ["Bravo"]
    assert _names(_text(client.get("/budgets/?q=anthropic"))) == ["Delta"]
    assert _names(_text(client.get("/budgets/?q=brav"))) == ["Bravo"]
    none = _text(client.get("/budgets/?q=nothing-like-this"))
    assert 'data-testid="budgets-none-match"' in none
    # Unknown values are ignored, not errors.
    assert client.get("/budgets/?sort=evil&dir=sideways&state=x").status_code == 200


# --- create / edit / delete -------------------------------------------------------------------

GOOD = {"name": "Engineering", "amount_usd": "500", "period": "monthly", "thresholds": "50, 80, 100",
        "enforcement": "soft", "notify_roles": ["owner", "admin"]}


@pytest.mark.parametrize("changes, field, message", [
    ({"name": ""}, "name", "Give the budget a name."),
    ({"amount_usd": ""}, "amount_usd", "Enter an amount in dollars."),
    ({"amount_usd": "lots"}, "amount_usd", "Enter an amount in dollars, like 250 or 99.50."),
    ({"amount_usd": "-5"}, "amount_usd", "The amount must be more than $0."),
    ({"amount_usd": "0"}, "amount_usd", "The amount must be more than $0."),
    ({"period": "fortnightly"}, "period", "Choose a period from the list."),
    ({"period": "custom"}, "custom_start", "Choose a date."),
    ({"period": "custom", "custom_start": "2026-12-10", "custom_end": "2026-12-01"}, "custom_end",
     "The last day cannot be before the first."),
    ({"thresholds": "50, abc"}, "thresholds", "is not a whole percent"),
    ({"thresholds": "5000"}, "thresholds", "between 1 and 1000"),
    ({"enforcement": "maybe"}, "enforcement", "Choose soft or hard."),
    ({"notify_roles": ["owner", "boss"]}, "notify_roles", "Unknown role: boss."),
    ({"owner_id": "999999"}, "owner_id", "The owner must be a member of this organization."),
    ({"department_id": "999999"}, "department_id", "Choose a department of this organization."),
    ({"api_key_id": "abc"}, "api_key_id", "Choose an API key of this organization."),
    ({"tag": "x" * 101}, "tag", "At most 100 characters."),
])
def test_create_with_bad_input_is_422_with_the_field_message_and_saves_nothing(acme, changes, field, message):
    client, _, org = acme
    response = client.post("/budgets/", {**GOOD, **changes}, htmx=True)
    assert response.status_code == 422
    html = _text(response)
    match = re.search(rf'data-testid="error-{field}">([^<]*)<', html)
    assert match, html
    assert message.replace("'", "&#39;") in match.group(1) or message in match.group(1)
    assert 'id="budget-form"' in html and "<html" not in html
    assert 'value="Engineering"' in html or field == "name"  # what was typed stays
    assert Budget.in_org(org).count() == 0


def test_every_error_at_once(acme):
    client, _, org = acme
    response = client.post("/budgets/", {"name": "", "amount_usd": "x", "thresholds": "abc",
                                         "enforcement": "no", "period": "never"})
    assert response.status_code == 422
    html = _text(response)
    for field in ("name", "amount_usd", "thresholds", "enforcement", "period"):
        assert f'data-testid="error-{field}"' in html
    assert "<html" in html  # a plain form post gets the whole page
    assert Budget.in_org(org).count() == 0


def test_create_through_the_form_with_every_scope_field(acme, make_user):
    client, owner, org = acme
    research = Department.create(organization=org, name="Research")
    ann = make_user("ann@acme.com", name="Ann")
    add_member(org, ann, "member")
    from costguardian.services.keys import create_key
    key = create_key(org, SYSTEM, "ci", ["ingest"]).key
    form = _text(client.get("/budgets/new"))
    assert "Research" in form and 'name="owner"' in form and "ci" in form  # owner and user: pickers
    assert 'value="ann@acme.com"' in _text(client.get("/members/pick?field=owner&owner=ann", htmx=True))
    response = client.post("/budgets/", {
        "name": "Research OpenAI", "amount_usd": "$1,250.50", "period": "quarterly", "thresholds": "90 ,25",
        "enforcement": "hard", "notify_resolved": "on", "notify_roles": ["billing"], "owner_id": str(ann.id),
        "department_id": str(research.id), "user": "Ann@Acme.com", "api_key_id": str(key.id),
        "provider": "OpenAI", "model": "gpt-4o", "tag": "team:search"}, htmx=True)
    assert response.status_code == 204, _text(response)
    budget = Budget.in_org(org).get()
    assert response.headers["HX-Redirect"] == f"/budgets/{budget.id}"
    assert (budget.name, budget.amount_nanos, budget.period, budget.thresholds) == \
        ("Research OpenAI", 1_250_500_000_000, "quarterly", "25,90")
    assert (budget.enforcement, budget.notify_resolved, budget.notify_roles, budget.owner_id) == \
        ("hard", True, "billing", ann.id)
    assert (budget.scope_department_id, budget.scope_user, budget.scope_api_key_id, budget.scope_provider,
            budget.scope_model, budget.scope_tag) == (research.id, "ann@acme.com", key.id, "openai", "gpt-4o",
                                                      "team:search")
    assert AuditLog.select().where(AuditLog.action == "budget.created").count() == 1


def test_edit_shows_the_values_and_saves(acme):
    client, _, org = acme
    budget = _budget(org, name="Old", amount_usd="99.5", thresholds="75,100")
    form = _text(client.get(f"/budgets/{budget.id}/edit"))
    assert 'value="Old"' in form and 'value="99.5"' in form and 'value="75, 100"' in form
    bad = client.post(f"/budgets/{budget.id}", {**GOOD, "amount_usd": "abc"}, htmx=True)
    assert bad.status_code == 422 and 'data-testid="error-amount_usd"' in _text(bad)
    assert Budget.get_by_id(budget.id).name == "Old"
    ok = client.post(f"/budgets/{budget.id}", {**GOOD, "name": "New", "amount_usd": "250"}, htmx=True)
    assert ok.status_code == 204 and ok.headers["HX-Redirect"] == f"/budgets/{budget.id}"
    saved = Budget.get_by_id(budget.id)
    assert (saved.name, saved.amount_nanos) == ("New", 250_000_000_000)


def test_delete(acme):
    client, _, org = acme
    budget = _budget(org, name="Doomed")
    assert "Delete “Doomed” permanently" in _text(client.get(f"/budgets/{budget.id}"))
    response = client.post(f"/budgets/{budget.id}/delete")
    assert response.status_code == 302 and response.headers["Location"] == "/budgets/"
    assert Budget.get_or_none(Budget.id == budget.id) is None
    assert client.post(f"/budgets/{budget.id}/delete").status_code == 404


# --- raise, test alert, detail ------------------------------------------------------------------

def test_raise_for_this_period(acme):
    client, _, org = acme
    budget = _budget(org, amount_usd="100")
    bad = client.post(f"/budgets/{budget.id}/raise", {"increase_usd": "nope"}, htmx=True)
    assert bad.status_code == 422 and 'data-testid="error-increase_usd"' in _text(bad)
    assert 'id="raise-form"' in _text(bad)
    too_long = client.post(f"/budgets/{budget.id}/raise", {"increase_usd": "5", "reason": "x" * 201}, htmx=True)
    assert too_long.status_code == 422 and 'data-testid="error-reason"' in _text(too_long)
    assert BudgetIncrease.select().count() == 0
    ok = client.post(f"/budgets/{budget.id}/raise", {"increase_usd": "50", "reason": "launch"}, htmx=True)
    assert ok.status_code == 204
    assert budgets.status(Budget.get_by_id(budget.id)).limit == 150_000_000_000
    html = _text(client.get(f"/budgets/{budget.id}"))
    assert "$150.00" in html and "launch" in html
    assert AuditLog.select().where(AuditLog.action == "budget.raised").count() == 1


def test_send_test_alert(acme):
    client, _, org = acme
    budget = _budget(org, name="Ops")
    response = client.post(f"/budgets/{budget.id}/test-alert", htmx=True)
    assert response.status_code == 200
    assert "Test alert sent" in response.headers["HX-Trigger"]
    assert Notification.select().count() >= 1
    assert BudgetAlert.select().count() == 0  # a test leaves no alert row


def test_detail_shows_status_chart_contributors_alerts_and_previous_periods(acme):
    client, _, org = acme
    tz = org.time_zone
    period = budget_periods.period_at("monthly", tz, NOW)
    before = period.start - timedelta(days=3)
    ingest.ingest(org, None, [_event("old1", at=before), _event("old2", at=before)])  # $5 last month
    _spend(org, 15, user="ann@acme.com")  # $15 now
    budget = _budget(org, name="Org", amount_usd="20")  # 75%: 50% alert
    st = budgets.status(budget)
    html = _text(client.get(f"/budgets/{budget.id}"))
    assert 'data-testid="budget-spent">$15.00<' in html
    assert 'data-testid="budget-limit">$20.00<' in html
    assert 'data-testid="budget-remaining">$5.00<' in html
    assert 'data-testid="budget-forecast"' in html
    data = json.loads(re.search(r'<template id="budget-chart-data" class="chart-data">(.*?)</template>',
                                html, re.S).group(1).replace("&#34;", '"'))
    assert data["kind"] == "budget"
    assert data["labels"][0] == st.period.first_day.isoformat() and data["labels"][-1] == st.period.last_day.isoformat()
    assert set(data["limit"]) == {"20"}  # exact decimal dollars: charts.js formats them by the money rule
    spent = [v for v in data["spent"] if v is not None]
    assert spent[-1] == "15"  # the cumulative line ends at the counter's spend
    projection = budgets.forecast_for(budget, st, clock.now())
    expected = [v for v in data["expected"] if v is not None]
    stored = budgets.status(budget).forecast  # the path ends on the forecast the list and alerts show
    assert expected[-1] == usd_decimal(stored if stored is not None else projection.total)
    assert "ann@acme.com" in html and "gpt-4o" in html  # top users, models
    assert 'data-testid="alert-history"' in html and "50%" in html
    previous = re.search(r'data-testid="previous-periods">(.*?)</table>', html, re.S).group(1)
    assert "$5.00" in previous and "25%" in previous


# --- explainer ------------------------------------------------------------------------------------

def test_explain_lists_covering_budgets_blocking_one_first(acme):
    client, _, org = acme
    research = Department.create(organization=org, name="Research")
    _spend(org, 10, department="Research")
    _budget(org, name="Org soft", amount_usd="5")  # exceeded but soft
    _budget(org, name="Research hard", amount_usd="10", enforcement="hard", department_id=str(research.id))
    _budget(org, name="Anthropic only", amount_usd="10", provider="anthropic")
    page = _text(client.get("/budgets/explain"))
    assert "Fill in at least one field" in page
    response = client.get(f"/budgets/explain?department_id={research.id}&provider=openai", htmx=True)
    html = _text(response)
    assert response.headers["HX-Push-Url"].startswith("/budgets/explain?")
    assert _names(html) == ["Research hard", "Org soft"]  # not the anthropic budget
    assert "A call now would be blocked by “Research hard”" in html
    assert re.search(r'data-testid="blocks-first">\s*<th scope="row"><a href="/budgets/\d+">Research hard', html)
    soft = _text(client.get("/budgets/explain?provider=openai"))
    assert _names(soft) == ["Org soft"]
    assert "No hard budget would block a call now; “Org soft” has the least room left" in soft
    bad = client.get("/budgets/explain?department_id=999999")
    assert bad.status_code == 422


# --- allocation --------------------------------------------------------------------------------------

def test_allocation_splits_the_org_budget_across_departments(acme):
    client, _, org = acme
    eng = Department.create(organization=org, name="Engineering")
    Department.create(organization=org, name="Platform", parent=eng)
    sales = Department.create(organization=org, name="Sales")
    _spend(org, 10, prefix="p", department="Platform")
    _spend(org, 5, prefix="s", department="Sales")
    _spend(org, 5, prefix="n")
    _budget(org, name="Company", amount_usd="100")
    _budget(org, name="Eng budget", amount_usd="60", department_id=str(eng.id))
    html = _text(client.get("/budgets/allocation"))
    assert "Company" in html
    rows = {m.group(1): m.group(2) for m in re.finditer(r'<tr data-department="(\d+)">(.*?)</tr>', html, re.S)}
    eng_row = rows[str(eng.id)]
    assert "$60.00" in eng_row and "60%" in eng_row  # its budget, its share of the org budget
    assert "$10.00" in eng_row and "50%" in eng_row  # Platform's spend rolls up; half of $20
    assert "$5.00" in rows[str(sales.id)] and "25%" in rows[str(sales.id)] and "run rate" in rows[str(sales.id)]
    unallocated = re.search(r'data-testid="unallocated-row">(.*?)</tr>', html, re.S).group(1)
    assert "$40.00" in unallocated and "$5.00" in unallocated
    weekly = _text(client.get("/budgets/allocation?period=weekly", htmx=True))
    assert 'data-testid="no-org-budget"' in weekly


# --- report -------------------------------------------------------------------------------------------

def test_report_page_and_csv(acme):
    client, _, org = acme
    tz = org.time_zone
    period = budget_periods.period_at("monthly", tz, NOW)
    last_month = budget_periods.period_at("monthly", tz, period.start - timedelta(seconds=1))
    ingest.ingest(org, None, [_event(f"old{i}", at=last_month.start + timedelta(days=2)) for i in range(4)])  # $10
    _spend(org, 5)
    _budget(org, name="=HYPERLINK(\"x\")", amount_usd="8")
    _budget(org, name="Yearly", amount_usd="1000", period="yearly")
    current = _text(client.get("/budgets/report"))
    assert period.label in current and "(in progress)" in current
    table = re.search(r'data-testid="report-table">(.*?)</table>', current, re.S).group(1)
    assert "Warning" in table and "50%" in table and "Yearly" not in table
    assert "data-print" in current
    previous = _text(client.get("/budgets/report?period=monthly&offset=1", htmx=True))
    assert last_month.label in previous and "Exceeded" in previous and "$10.00" in previous
    response = client.get("/budgets/report.csv?period=monthly&offset=1")
    assert response.mimetype == "text/csv"
    assert f"budgets-monthly-{last_month.first_day.isoformat()}" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(_text(response))))
    assert rows[0][:9] == ["budget", "scope", "period_start", "period_end", "enforcement", "limit_usd", "spend_usd",
                           "percent", "state"]
    assert rows[1][0] == "'=HYPERLINK(\"x\")"  # CSV injection neutralised
    assert rows[1][2:9] == [last_month.first_day.isoformat(), last_month.last_day.isoformat(), "soft", "8",
                            "10", "125.0", "Exceeded"]
    now_rows = list(csv.reader(io.StringIO(_text(client.get("/budgets/report.csv")))))
    assert now_rows[1][6] == "5" and "50%" in now_rows[1][10]
    assert client.get("/budgets/report?period=weird&offset=-3").status_code == 200


# --- permissions and tenancy ----------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["viewer", "member"])
def test_readers_see_but_cannot_change(app, acme, make_user, role):
    _, _, org = acme
    budget = _budget(org, name="Seen")
    reader = make_user(f"{role}@acme.com")
    add_member(org, reader, role)
    client = Client(app)
    client.sign_in(reader.email)
    html = _text(client.get("/budgets/"))
    assert "Seen" in html and "New budget" not in html
    detail = _text(client.get(f"/budgets/{budget.id}"))
    assert "Send test alert" not in detail and "Raise for this period" not in detail
    for url in ("/budgets/explain", "/budgets/allocation", "/budgets/report", "/budgets/report.csv"):
        assert client.get(url).status_code == 200, url
    assert client.get("/budgets/new").status_code == 403
    assert client.get(f"/budgets/{budget.id}/edit").status_code == 403
    assert client.post("/budgets/", GOOD).status_code == 403
    assert client.post(f"/budgets/{budget.id}", GOOD).status_code == 403
    assert client.post(f"/budgets/{budget.id}/raise", {"increase_usd": "5"}).status_code == 403
    assert client.post(f"/budgets/{budget.id}/test-alert").status_code == 403
    assert client.post(f"/budgets/{budget.id}/delete").status_code == 403
    assert Budget.in_org(org).count() == 1 and BudgetIncrease.select().count() == 0


def test_billing_manages_budgets(app, acme, make_user):
    _, _, org = acme
    billing = make_user("bill@acme.com")
    add_member(org, billing, "billing")
    client = Client(app)
    client.sign_in(billing.email)
    assert client.post("/budgets/", GOOD, htmx=True).status_code == 204
    assert Budget.in_org(org).count() == 1


def test_another_organizations_budget_is_404(app, acme, make_user, make_org):
    client, _, org = acme
    other = make_org("Globex", owner=make_user("boss@globex.com"))
    theirs = _budget(other, name="Secret")
    for url in (f"/budgets/{theirs.id}", f"/budgets/{theirs.id}/edit"):
        assert client.get(url).status_code == 404, url
    for url in (f"/budgets/{theirs.id}", f"/budgets/{theirs.id}/raise", f"/budgets/{theirs.id}/test-alert",
                f"/budgets/{theirs.id}/delete"):
        assert client.post(url, {**GOOD, "increase_usd": "5"}).status_code == 404, url
    assert "Secret" not in _text(client.get("/budgets/"))
    assert "Secret" not in _text(client.get("/budgets/report"))
    assert Budget.get_by_id(theirs.id).name == "Secret"
    # Another organization's department or key cannot be a scope.
    dept = Department.create(organization=other, name="Theirs")
    response = client.post("/budgets/", {**GOOD, "department_id": str(dept.id)}, htmx=True)
    assert response.status_code == 422 and Budget.in_org(org).count() == 0


def test_list_shows_the_stored_forecast_marker(acme):
    client, _, org = acme
    _spend(org, 10)
    budget = _budget(org, name="Forecast", amount_usd="1000")
    html = _text(client.get("/budgets/"))  # creating it stored a first forecast
    assert 'data-testid="forecast-marker"' in html
    st = budgets.refresh_forecast(budget)  # what the periodic check does
    html = _text(client.get("/budgets/"))
    assert 'data-testid="forecast-marker"' in html
    assert f"forecast ${st.forecast / 1e9:,.2f}" in html


def test_odd_digits_in_the_query_are_ignored_not_errors(acme):
    client, _, org = acme
    assert client.get("/budgets/report?offset=²").status_code == 200
    assert client.get("/budgets/allocation?budget=²").status_code == 200
    assert client.get("/budgets/explain?department_id=²").status_code in (200, 422)

"""One date format on every screen (issue 18 §7): dates read 2026-12-06,
times 2026-12-06 14:05 CET in the organization's zone (UTC, named, outside
one), date inputs take and show the same YYYY-MM-DD, and emails name the zone."""
from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from costguardian import timefmt
from costguardian.models import AuditLog, Budget
from costguardian.services.notifications import email as notification_email
from costguardian.services.team import audit
from tests.support import SYSTEM, Client

PACKAGE = Path(__file__).resolve().parent.parent / "costguardian"
TEMPLATE_DIRS = (PACKAGE / "templates", PACKAGE / "partials")

# What a template may not contain: its own time pattern, a filter that takes
# one, or the browser's date picker (shown in the browser's locale).
AD_HOC = [
    (re.compile(r"strftime\("), "strftime( — use |org_time / |utc_time, or .isoformat() for a calendar day"),
    (re.compile(r"\|\s*datetime\b"), "|datetime — use |org_time (organization pages) or |utc_time (console, account)"),
    (re.compile(r"\|\s*(?:org_time|utc_time)\(\s*(?!\"(?:day|second)\"|'(?:day|second)'|zone=)"),
     "a pattern passed to |org_time / |utc_time — only \"day\" or \"second\""),
    (re.compile(r"%[-]?[dbBHMSYaAmyIp]"), "a strftime pattern"),
    (re.compile(r"type=[\"']date[\"']"), "type=\"date\" — a text input taking YYYY-MM-DD"),
]


def _templates():
    for root in TEMPLATE_DIRS:
        yield from sorted(p for p in root.rglob("*") if p.suffix in (".html", ".txt"))


def test_no_template_formats_a_date_its_own_way():
    found = []
    for path in _templates():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for pattern, why in AD_HOC:
                if pattern.search(line):
                    found.append(f"{path.relative_to(PACKAGE)}:{number}: {why}")
    assert not found, "\n".join(found)


def test_every_date_input_names_and_checks_the_format():
    inputs = 0
    for path in _templates():
        text = path.read_text()
        for tag in re.findall(r"<input[^>]*placeholder=\"YYYY-MM-DD\"[^>]*>", text, re.DOTALL):
            inputs += 1
            for attribute in ('type="text"', 'inputmode="numeric"', r'pattern="\d{4}-\d{2}-\d{2}"',
                              'autocomplete="off"'):
                assert attribute in tag, f"{path.relative_to(PACKAGE)}: {tag} lacks {attribute}"
    assert inputs >= 12  # explorer, team, request log, reconciliation, budgets, admin audit and usage


@pytest.mark.parametrize("value, zone, precision, expected", [
    (datetime(2026, 12, 6, 13, 5, 9), "Europe/Berlin", "minute", "2026-12-06 14:05 CET"),
    (datetime(2026, 7, 6, 13, 5, 9), "Europe/Berlin", "minute", "2026-07-06 15:05 CEST"),
    (datetime(2026, 12, 6, 13, 5, 9), "Europe/Berlin", "second", "2026-12-06 14:05:09 CET"),
    (datetime(2026, 12, 6, 23, 30), "Europe/Berlin", "day", "2026-12-07"),
    (datetime(2026, 12, 6, 13, 5, 9), None, "minute", "2026-12-06 13:05 UTC"),
    (datetime(2026, 12, 6, 13, 5, 9), "UTC", "second", "2026-12-06 13:05:09 UTC"),
    (datetime(2026, 12, 6, 18, 31), "Asia/Kolkata", "minute", "2026-12-07 00:01 IST"),
    (datetime(2026, 12, 6, 18, 31), "America/New_York", "minute", "2026-12-06 13:31 EST"),
    (date(2026, 12, 6), "Pacific/Kiritimati", "minute", "2026-12-06"),  # a calendar day is never shifted
    (None, "Europe/Berlin", "minute", ""),
])
def test_format_time(value, zone, precision, expected):
    assert timefmt.format_time(value, zone, precision) == expected


def test_format_time_refuses_a_pattern():
    with pytest.raises(ValueError):
        timefmt.format_time(datetime(2026, 12, 6), None, "%d %b %Y")


@pytest.mark.parametrize("raw, expected", [
    ("2026-12-06", date(2026, 12, 6)), (" 2026-12-06 ", date(2026, 12, 6)), ("", None), (None, None),
    ("20261206", ValueError), ("06/12/2026", ValueError), ("12/06/2026", ValueError), ("2026-02-30", ValueError),
    ("2026-W49-7", ValueError), ("2026-12-6", ValueError), ("6 Dec 2026", ValueError),
])
def test_parse_day_takes_only_iso(raw, expected):
    if expected is ValueError:
        with pytest.raises(ValueError, match="Enter a date as YYYY-MM-DD."):
            timefmt.parse_day(raw)
    else:
        assert timefmt.parse_day(raw) == expected


# --- screens -----------------------------------------------------------------------------

@pytest.fixture
def berlin(app, make_user, make_org):
    owner = make_user("owner@berlin.example.com", name="Olga Owner")
    org = make_org("Berlin Co", owner=owner, time_zone="Europe/Berlin")
    client = Client(app)
    client.sign_in(owner.email)
    return client, owner, org


def test_the_audit_log_reads_in_the_organizations_zone_with_seconds(berlin):
    client, _, org = berlin
    row = audit.record(SYSTEM, "org.updated", org=org, target=org)
    AuditLog.update(created_at=datetime(2026, 12, 6, 13, 5, 9)).where(AuditLog.id == row.id).execute()
    html = client.get("/audit/").get_data(as_text=True)
    assert ">2026-12-06 14:05:09 CET<" in html and ">2026-12-06 13:05" not in html  # <time datetime> keeps UTC


def test_account_pages_read_in_utc_named(berlin):
    client, _, _ = berlin
    html = client.get("/account/").get_data(as_text=True)
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", html)  # the session list
    assert not re.search(r"\d{2}:\d{2} CES?T", html)


def test_a_bad_date_in_the_explorer_is_422_with_the_message_and_iso_round_trips(berlin):
    client, _, _ = berlin
    bad = client.get("/usage/?from=12/06/2026", htmx=True)
    assert bad.status_code == 422 and "Enter a date as YYYY-MM-DD." in bad.get_data(as_text=True)
    page = client.get("/usage/?from=2026-11-03&to=2026-11-05").get_data(as_text=True)
    start = re.search(r'<input[^>]*id="filter-from"[^>]*>', page).group(0)
    assert 'value="2026-11-03"' in start and 'placeholder="YYYY-MM-DD"' in start
    assert "2026-11-03 – 2026-11-05" in page  # the range reads as it was typed


BUDGET = {"name": "Winter", "amount_usd": "500", "period": "custom", "thresholds": "50, 80, 100",
          "enforcement": "soft", "notify_roles": ["owner"]}


def test_a_budgets_custom_dates_refuse_a_locale_date_and_round_trip_as_iso(berlin):
    client, _, org = berlin
    bad = client.post("/budgets/", {**BUDGET, "custom_start": "12/01/2026", "custom_end": "2026-12-31"}, htmx=True)
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert re.search(r'data-testid="error-custom_start">Enter a date as YYYY-MM-DD.<', html)
    assert 'value="12/01/2026"' in html  # what was typed stays, to be fixed
    assert Budget.in_org(org).count() == 0
    ok = client.post("/budgets/", {**BUDGET, "custom_start": "2026-12-01", "custom_end": "2026-12-31"}, htmx=True)
    assert ok.status_code == 204, ok.get_data(as_text=True)
    budget = Budget.in_org(org).get()
    assert (budget.custom_start, budget.custom_end) == (date(2026, 12, 1), date(2026, 12, 31))
    form = client.get(f"/budgets/{budget.id}/edit").get_data(as_text=True)
    assert 'value="2026-12-01"' in form and 'value="2026-12-31"' in form


def test_a_price_date_refuses_a_compact_date_and_shows_iso(berlin):
    client, _, _ = berlin
    price = {"provider": "openai", "model": "gpt-4o", "effective_from": "20261101", "input_price": "2.50",
             "output_price": "10"}
    bad = client.post("/prices/overrides", price, htmx=True)
    assert bad.status_code == 422 and "Enter a date as YYYY-MM-DD." in bad.get_data(as_text=True)
    field = re.search(r'<input[^>]*name="effective_from"[^>]*>', bad.get_data(as_text=True)).group(0)
    assert 'value="20261101"' in field and 'type="text"' in field
    assert client.post("/prices/overrides", {**price, "effective_from": "2026-11-01"}, htmx=True).status_code < 400
    assert "2026-11-01" in client.get("/prices/").get_data(as_text=True)


# --- email -------------------------------------------------------------------------------

def test_the_digest_names_each_time_in_the_organizations_zone(app_ctx, berlin):
    _, owner, org = berlin
    item = SimpleNamespace(title="Budget Winter at 80%", body="", link="/budgets/", severity="warning",
                           created_at=datetime(2026, 12, 6, 13, 5, 9))
    rendered = notification_email.render_digest(org, owner, [item])
    assert "2026-12-06 14:05 CET" in rendered.text and "2026-12-06 14:05 CET" in rendered.html
    assert "UTC" not in rendered.text

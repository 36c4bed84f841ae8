"""The usage journey: events ingested → the dashboard shows this month's exact
total and draws its chart → the explorer groups and filters through htmx with
a bookmarkable URL → the CSV download totals what the page shows."""
from __future__ import annotations

import csv
import re
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.sync_api import expect

from costguardian.money import format_usd
from costguardian.services import keys
from costguardian.services.usage import ingest, queries as usage_queries
from tests.support import SYSTEM, add_member

SHOTS = Path("/tmp/e2e-shots")
LA = ZoneInfo("America/Los_Angeles")


def _at(day: date, hour: int = 0) -> str:
    moment = datetime.combine(day, time(hour, 0, 1), LA).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _usage(make_user, make_org):
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner, time_zone="America/Los_Angeles")
    add_member(org, make_user("alice@acme.example.com", name="Alice Analyst"), "member")
    key = keys.create_key(org, SYSTEM, "search-prod", ["ingest"]).key
    today = usage_queries.today(org)
    first = today.replace(day=1)
    models = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-sonnet"),
              ("google", "gemini-2.0-flash")]
    events = []
    for n in range(40):
        provider, model = models[n % len(models)]
        day = max(first, today - timedelta(days=n % 12))
        events.append({"event_id": f"e2e-{n}", "occurred_at": _at(day), "provider": provider, "model": model,
                       "input_tokens": 20_000 * (n + 1), "output_tokens": 2_000 * (n % 7 + 1),
                       "user": "alice@acme.example.com" if n % 3 else f"customer-{n % 5}",
                       "tags": ["env:prod"] if n % 2 else ["env:dev"]})
    # A model without a known price: counted, not costed, and flagged on the dashboard.
    events.append({"event_id": "e2e-unpriced", "occurred_at": _at(today), "provider": "acme",
                   "model": "private-model", "input_tokens": 1_000, "output_tokens": 100})
    # Earlier months, for the chart and the explorer's presets.
    for n in range(10):
        events.append({"event_id": f"old-{n}", "occurred_at": _at(first - timedelta(days=3 + n)),
                       "provider": "openai", "model": "gpt-4o", "input_tokens": 50_000, "output_tokens": 5_000})
    month_total = 0
    for chunk, api_key in ((events[:25], key), (events[25:], None)):
        result = ingest.ingest(org, api_key, chunk)
        assert result.count("accepted") == len(chunk), result.as_json()
        month_total += sum(r.cost_nanos or 0 for r, e in zip(result.results, chunk) if e["event_id"].startswith("e2e"))
    return org, month_total


def _watch_console(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


def _chart_series(page) -> list[str]:
    return page.evaluate("""() => {
        const canvas = document.querySelector('canvas[data-chart]');
        const chart = window.Chart && Chart.getChart(canvas);
        return chart ? chart.data.datasets.map(d => d.label) : null;
    }""")


def test_dashboard_explorer_and_csv(page, make_user, make_org, sign_in, tmp_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    org, month_total = _usage(make_user, make_org)
    problems = _watch_console(page)
    page.set_viewport_size({"width": 1280, "height": 900})

    # The dashboard: the exact month total, a drawn chart, the model toggle.
    sign_in(page, "olga@acme.example.com")
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Analytics")
    expect(page.get_by_test_id("spend-this-month")).to_have_text(format_usd(month_total))
    page.wait_for_function("() => window.Chart && Chart.getChart(document.querySelector('canvas[data-chart]'))")
    assert set(_chart_series(page)) == {"openai", "anthropic", "google"}
    box = page.locator("canvas[data-chart]").bounding_box()
    assert box["width"] > 400 and box["height"] > 200
    warning = page.get_by_test_id("unpriced-models")
    expect(warning).to_contain_text("acme/private-model")
    expect(warning.get_by_role("button", name="Set your own prices")).to_be_visible()
    page.screenshot(path=str(SHOTS / "usage-1-dashboard.png"), full_page=True)

    page.evaluate("window.__noReload = true")
    page.get_by_role("button", name="By model").click()
    expect(page).to_have_url(re.compile(r"/\?stack=model$"))
    page.wait_for_function("() => { const c = window.Chart && Chart.getChart("
                           "document.querySelector('canvas[data-chart]'));"
                           " return c && c.data.datasets.some(d => d.label === 'gpt-4o'); }")
    assert page.evaluate("window.__noReload") is True
    page.screenshot(path=str(SHOTS / "usage-2-dashboard-by-model.png"), full_page=True)

    # The explorer: group by provider, then by model, filtered to one provider.
    page.locator("ul.mainnav").get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Usage explorer")
    expect(page.get_by_test_id("usage-total-cost")).to_have_text(format_usd(month_total))
    page.evaluate("window.__noReload = true")
    page.wait_for_load_state("domcontentloaded")  # htmx (deferred) binds the select's change then
    page.get_by_label("Group by", exact=True).select_option("provider")
    expect(page).to_have_url(re.compile(r"/usage/\?group_by=provider$"))
    expect(page.get_by_test_id("usage-table").locator("tbody tr")).to_have_count(4)
    page.get_by_label("Group by", exact=True).select_option("model")
    expect(page).to_have_url(re.compile(r"/usage/$"))
    page.get_by_label("Provider", exact=True).select_option("openai")
    expect(page).to_have_url(re.compile(r"/usage/\?provider=openai$"))
    table = page.get_by_test_id("usage-table")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator("tbody")).to_contain_text("gpt-4o-mini")
    expect(table.locator("tbody")).not_to_contain_text("claude")
    assert page.evaluate("window.__noReload") is True
    page.wait_for_function("() => window.Chart && Chart.getChart(document.querySelector('canvas[data-chart]'))")
    assert set(_chart_series(page)) == {"gpt-4o", "gpt-4o-mini"}
    shown_table = table.inner_text()
    shown_total = page.get_by_test_id("usage-total-cost").locator("data").get_attribute("value")
    page.screenshot(path=str(SHOTS / "usage-3-explorer-openai-by-model.png"), full_page=True)

    # Reloading the pushed URL gives the same table, from a full page render.
    page.reload()
    expect(page.get_by_label("Provider", exact=True)).to_have_value("openai")
    assert page.get_by_test_id("usage-table").inner_text() == shown_table
    assert page.evaluate("window.__noReload") is None

    # A preset fills in the dates; a typed date switches to custom dates.
    page.get_by_label("Period", exact=True).select_option("last_month")
    expect(page).to_have_url(re.compile(r"preset=last_month"))
    last_first, last_end = usage_queries.month_range(usage_queries.today(org).replace(day=1) - timedelta(days=1))
    # The dates are text fields in the one format the pages show, named in their labels.
    expect(page.get_by_label("From YYYY-MM-DD", exact=True)).to_have_value(last_first.isoformat())
    expect(page.get_by_label("To YYYY-MM-DD", exact=True)).to_have_value(last_end.isoformat())
    expect(page.get_by_test_id("usage-heading")).to_have_text("Usage of openai")
    page.get_by_label("From YYYY-MM-DD", exact=True).fill((last_first + timedelta(days=4)).isoformat())
    page.get_by_label("From YYYY-MM-DD", exact=True).press("Tab")  # a typed date counts once the field is left
    expect(page).to_have_url(re.compile(rf"from={(last_first + timedelta(days=4)).isoformat()}&to={last_end}"))
    expect(page.get_by_label("Period", exact=True)).to_have_value("custom")
    expect(page.get_by_label("From YYYY-MM-DD", exact=True)).to_have_value((last_first + timedelta(days=4)).isoformat())
    page.go_back()
    expect(page).to_have_url(re.compile(r"/usage/\?preset=last_month&provider=openai$"))
    expect(page.get_by_label("Period", exact=True)).to_have_value("last_month")
    page.go_back()
    expect(page).to_have_url(re.compile(r"/usage/\?provider=openai$"))
    page.wait_for_function("() => window.Chart && Chart.getChart(document.querySelector('canvas[data-chart]'))")

    # The CSV of every event totals what the page shows (once this month's results are back:
    # going back restores the URL first, the results and their export link after).
    expect(page.get_by_test_id("export-events")).not_to_have_attribute("href", re.compile(r"preset=|from="))
    with page.expect_download() as info:
        page.get_by_test_id("export-events").click()
    download = info.value
    assert re.fullmatch(r"acme-analytics-usage-events-\d{4}-\d\d-01-to-\d{4}-\d\d-\d\d\.csv",
                        download.suggested_filename)
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["provider"] for r in rows} == {"openai"}
    assert sum(Decimal(r["cost_usd"]) for r in rows) == Decimal(shown_total)
    page.screenshot(path=str(SHOTS / "usage-4-explorer-after-download.png"), full_page=True)

    # One key's history, from the dashboard's top keys.
    page.locator("ul.mainnav").get_by_role("link", name="Dashboard").click()
    page.get_by_test_id("top-api_key").get_by_role("link", name="search-prod").click()
    expect(page.get_by_test_id("usage-heading")).to_have_text("Usage of key “search-prod”")
    expect(page.get_by_test_id("usage-history")).to_be_visible()
    page.screenshot(path=str(SHOTS / "usage-5-key-history.png"), full_page=True)

    # A bad filter says what is wrong, on the page and after an htmx change.
    response = page.goto("/usage/?provider=nope")
    assert response.status == 422
    expect(page.get_by_test_id("filter-errors")).to_contain_text("No usage from a provider named “nope”")
    page.screenshot(path=str(SHOTS / "usage-6-invalid-filter.png"), full_page=True)
    page.get_by_label("Provider", exact=True).select_option("")
    expect(page.get_by_test_id("filter-errors")).to_have_count(0)
    expect(page.locator("#provider-error")).to_have_text("")
    expect(page.get_by_test_id("usage-total-cost")).to_have_text(format_usd(month_total))

    # The one 422 is the bad filter we asked for; nothing else (no CSP violation, no script error).
    assert [p for p in problems if "status of 422" not in p] == []

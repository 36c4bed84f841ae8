"""The usage explorer through HTTP: full pages and htmx fragments of the same
URL, filters, grouping, per-key and per-user history, bad filters, tenancy."""
from __future__ import annotations

import re
from datetime import date
from urllib.parse import parse_qs, urlsplit

import pytest

from costguardian.models import ApiKey, Department
from costguardian.money import format_usd
from costguardian.services.usage.ingest import usd_string
from tests.support import Client, add_member
from tests.test_usage_queries import build_usage_data

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)

APRIL = "from=2025-04-01&to=2025-04-30"


@pytest.fixture
def usage_data(make_user, make_org):
    return build_usage_data(make_user, make_org)


@pytest.fixture
def acme(app, usage_data):
    client = Client(app)
    client.sign_in("owner@acme.com")
    return client


def _html(response) -> str:
    return response.get_data(as_text=True)


def _table(html: str) -> str:
    match = re.search(r'<table class="striped numbers usage-table".*?</table>', html, re.S)
    assert match, "no usage table"
    return match.group(0)


def _rows(html: str) -> dict[str, tuple[int, str]]:
    """{row label: (requests, exact cost string)} of the usage table."""
    body = re.search(r"<tbody>(.*?)</tbody>", _table(html), re.S).group(1)
    rows = {}
    for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        label = re.sub(r"<[^>]+>", "", re.search(r'<th scope="row">(.*?)</th>', tr, re.S).group(1)).strip()
        cells = re.findall(r"<td>(.*?)</td>", tr, re.S)
        data = re.search(r'<data value="([^"]*)"', tr)
        cost = data.group(1) if data else re.search(r'data-testid="unpriced-cost">([^<]*)<', tr).group(1)
        rows[label] = (int(cells[0].replace(",", "")), cost)
    return rows


def _total_cost(html: str) -> str:
    return re.search(r'data-testid="usage-total-cost"><data value="([^"]*)"', html).group(1)


def test_full_page_groups_by_model_with_exact_totals(acme, usage_data):
    response = acme.get(f"/usage/?{APRIL}")
    assert response.status_code == 200
    html = _html(response)
    assert "<h1>Usage explorer</h1>" in html and 'id="usage-filters"' in html
    rows = _rows(html)
    assert rows["gpt-4o"] == (2, usd_string(usage_data.cost(model="gpt-4o")))
    assert rows["claude-3-5-sonnet"] == (1, usd_string(usage_data.cost(model="claude-3-5-sonnet")))
    assert rows["my-finetune-xyz"] == (1, "unpriced")  # never $0.00 (issue 18)
    assert set(rows) == {"gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "gemini-2.0-flash", "my-finetune-xyz"}
    assert _total_cost(html) == usd_string(usage_data.cost())
    assert format_usd(usage_data.cost()) in html
    assert 'data-testid="usage-total-requests">6<' in html
    assert 'data-testid="unpriced-note"' in html  # my-finetune-xyz has no price


def test_htmx_gets_only_the_results_and_a_clean_url_to_push(acme, usage_data):
    url = f"/usage/?preset=custom&{APRIL}&provider=openai&model=&department=&user=&key=&tag=&group_by=model"
    response = acme.get(url, htmx=True)
    assert response.status_code == 200
    fragment = _html(response)
    assert fragment.lstrip().startswith('<section id="usage-results"')
    assert "<html" not in fragment and 'id="usage-filters"' not in fragment
    pushed = response.headers["HX-Push-Url"]
    assert parse_qs(urlsplit(pushed).query) == {"from": ["2025-04-01"], "to": ["2025-04-30"],
                                                 "provider": ["openai"]}
    # The bookmarked (pushed) URL, loaded in full, shows the very same table.
    page = _html(acme.get(pushed))
    assert "<html" in page and _table(page) == _table(fragment)
    assert set(_rows(fragment)) == {"gpt-4o", "gpt-4o-mini", "my-finetune-xyz"}
    assert _total_cost(fragment) == usd_string(usage_data.cost(provider="openai"))


def test_group_by_day_follows_the_org_time_zone(acme, usage_data):
    rows = _rows(_html(acme.get(f"/usage/?{APRIL}&group_by=day")))
    assert rows["2025-04-09"] == (1, usd_string(usage_data.cost(event_id="ev-3")))  # 06:30 UTC on the 10th
    assert rows["2025-04-10"] == (1, usd_string(usage_data.cost(event_id="ev-4")))
    assert rows["2025-04-30"] == (1, usd_string(usage_data.cost(event_id="ev-7")))  # 06:59 UTC on 1 May
    assert "2025-05-01" not in rows and "2025-03-31" not in rows


@pytest.mark.parametrize("group, label, where", [
    ("provider", "openai", {"provider": "openai"}),
    ("user", "Alice Analyst (alice@acme.com)", {"user": "alice@acme.com"}),
    ("user", "cust-42", {"user": "cust-42"}),
    ("department", "Sales", {"department": "Sales"}),
    ("key", "search-prod", {"key_id": "KEY"}),
    ("key", "(no key)", {"key_id": None}),
    ("tag", "team:search", {"tag": "team:search"}),
])
def test_every_grouping(acme, usage_data, group, label, where):
    where = {k: (usage_data.key.id if v == "KEY" else v) for k, v in where.items()}
    rows = _rows(_html(acme.get(f"/usage/?{APRIL}&group_by={group}")))
    assert rows[label] == (usage_data.requests(**where), usd_string(usage_data.cost(**where)))


def test_the_json_apis_name_for_keys_works_too(acme, usage_data):
    html = _html(acme.get(f"/usage/?{APRIL}&group_by=api_key"))
    assert _rows(html)["search-prod"][0] == usage_data.requests(key_id=usage_data.key.id)
    assert '<option value="key" selected>API key</option>' in html


def test_filters(acme, usage_data):
    d = usage_data.departments
    cases = [
        ("provider=openai&model=gpt-4o", {"provider": "openai", "model": "gpt-4o"}),
        (f"department={d['Engineering'].id}", {"departments": {"Engineering", "Platform"}}),
        (f"department={d['Platform'].id}", {"department": "Platform"}),
        ("department=0", {"department": ""}),
        ("user=alice%40acme.com", {"user": "alice@acme.com"}),
        (f"key={usage_data.key.id}", {"key_id": usage_data.key.id}),
        ("key=0", {"key_id": None}),
        ("tag=env%3Aprod", {"tag": "env:prod"}),
    ]
    for query, where in cases:
        html = _html(acme.get(f"/usage/?{APRIL}&{query}"))
        assert _total_cost(html) == usd_string(usage_data.cost(**where)), query
        assert f'data-testid="usage-total-requests">{usage_data.requests(**where)}<' in html, query


def test_presets_and_custom_dates(acme, usage_data):
    # A named range wins over dates (the form sends both without JavaScript).
    html = _html(acme.get("/usage/?preset=last_month&from=2025-04-01&to=2025-04-30"))
    assert "All usage" in html and 'data-testid="usage-empty"' in html
    html = _html(acme.get("/usage/?preset=custom&from=2025-04-09&to=2025-04-09&group_by=day"))
    assert set(_rows(html)) == {"2025-04-09"}
    # Only a start date: until today.
    html = _html(acme.get("/usage/?from=2025-04-01"))
    assert _total_cost(html) == usd_string(usage_data.cost(end=date(2099, 1, 1)))


def test_key_history_heading_and_any_past_month(acme, usage_data):
    key = usage_data.key
    html = _html(acme.get(f"/usage/?key={key.id}&group_by=day"))
    assert "Usage of key “search-prod”" in html
    history = re.search(r'data-testid="usage-history".*?</table>', html, re.S).group(0)
    assert "2025-04" in history
    link = re.search(r'<a href="([^"]+)">2025-04</a>', history).group(1).replace("&amp;", "&")
    assert parse_qs(urlsplit(link).query) == {"from": ["2025-04-01"], "to": ["2025-04-30"], "key": [str(key.id)],
                                              "group_by": ["day"]}
    month = _html(acme.get(link))
    assert "Usage of key “search-prod”" in month
    assert _total_cost(month) == usd_string(usage_data.cost(key_id=key.id))


def test_user_history_heading(acme, usage_data):
    html = _html(acme.get(f"/usage/?{APRIL}&user=alice%40acme.com"))
    assert "Usage of Alice Analyst (alice@acme.com)" in html
    assert 'data-testid="usage-history"' in html
    html = _html(acme.get(f"/usage/?{APRIL}&user=cust-42"))
    assert "Usage of cust-42" in html


def test_rows_drill_down(acme, usage_data):
    html = _html(acme.get(f"/usage/?{APRIL}"))
    link = re.search(r'<a href="([^"]+)">gpt-4o</a>', _table(html)).group(1).replace("&amp;", "&")
    assert parse_qs(urlsplit(link).query) == {"from": ["2025-04-01"], "to": ["2025-04-30"], "model": ["gpt-4o"],
                                              "group_by": ["day"]}
    rows = _rows(_html(acme.get(link)))
    assert set(rows) == {"2025-04-01", "2025-04-30"}


@pytest.mark.parametrize("query, field, message", [
    ("provider=nope", "provider", "No usage from a provider named “nope”"),
    ("model=gpt-9", "model", "No usage of a model named “gpt-9”"),
    ("user=mallory%40evil.com", "user", "No usage by a user “mallory@evil.com”"),
    ("tag=%3Cscript%3E", "tag", "No usage tagged “&lt;script&gt;”"),
    ("department=abc", "department", "No such department in this organization."),
    ("department=99999999999", "department", "No such department in this organization."),
    ("key=-3", "key", "No such API key in this organization."),
    ("from=2025-13-01", "from", "Enter a date as YYYY-MM-DD."),
    ("from=20250301", "from", "Enter a date as YYYY-MM-DD."),
    ("from=0001-01-01", "from", "Choose a date between 2000 and 2100."),
    ("from=2025-05-01&to=2025-04-01", "to", "The end date is before the start date."),
    ("from=2020-01-01&to=2025-04-01", "to", "at most three years"),
    ("preset=forever", "preset", "is not a date range"),
    ("group_by=color", "group_by", "cannot be grouped by"),
])
def test_invalid_filters_say_what_is_wrong(acme, usage_data, query, field, message):
    page = acme.get(f"/usage/?{query}")
    assert page.status_code == 422
    html = _html(page)
    assert message in html and 'data-testid="filter-errors"' in html
    assert 'id="usage-filters"' in html  # the form to fix it
    partial = acme.get(f"/usage/?{query}", htmx=True)
    assert partial.status_code == 422
    fragment = _html(partial)
    assert message in fragment and "<html" not in fragment
    for export in ("events", "grouped", "focus"):
        response = acme.get(f"/usage/export/{export}.csv?{query}")
        assert response.status_code == 422 and message in _html(response)


def test_other_tenants_ids_and_values_are_unknown(acme, usage_data):
    other = usage_data.other_org
    globex_sales = Department.get(Department.organization == other)
    assert acme.get(f"/usage/?department={globex_sales.id}").status_code == 422
    from costguardian.services import keys
    from tests.support import SYSTEM
    globex_key = keys.create_key(other, SYSTEM, "globex-key", ["ingest"]).key
    response = acme.get(f"/usage/?key={globex_key.id}")
    assert response.status_code == 422 and "globex-key" not in _html(response)
    # Globex's own numbers never appear in Acme's explorer, and vice versa.
    html = _html(acme.get(f"/usage/?{APRIL}&group_by=user"))
    assert _rows(html)["Alice Analyst (alice@acme.com)"][0] == usage_data.requests(user="alice@acme.com")
    assert "globex-key" not in _html(acme.get("/usage/"))


def test_another_org_sees_only_its_own(app, usage_data):
    client = Client(app)
    client.sign_in("owner@globex.com")
    html = _html(client.get(f"/usage/?{APRIL}&group_by=provider"))
    assert set(_rows(html)) == {"openai"}
    assert _rows(html)["openai"][0] == 3
    assert "search-prod" not in html and "Alice Analyst" not in html and "claude" not in html


def test_filter_choices_on_the_page(acme, usage_data):
    html = _html(acme.get(f"/usage/?{APRIL}&key={usage_data.key.id}"))
    select = re.search(r'<select id="filter-key" name="key".*?</select>', html, re.S).group(0)
    assert re.search(rf'<option value="{usage_data.key.id}" selected>search-prod', select)
    assert '<option value="0">(no key)</option>' in select
    department = re.search(r'<select id="filter-department" name="department".*?</select>', html, re.S).group(0)
    assert "Engineering › Platform" in department
    assert 'name="preset"' in html and '<option value="custom" selected>Custom dates</option>' in html


def test_out_of_band_parts_of_the_form(acme, usage_data):
    """Picking a range updates the dates; typing a date flips the range to Custom."""
    response = acme.get("/usage/?preset=last_month", htmx=True, headers={"HX-Trigger-Name": "preset"})
    html = _html(response)
    assert 'id="usage-dates" class="usage-dates" hx-swap-oob="true"' in html
    assert 'id="usage-preset"' not in html
    response = acme.get(f"/usage/?preset=custom&{APRIL}", htmx=True, headers={"HX-Trigger-Name": "from"})
    html = _html(response)
    assert '<div id="usage-preset" class="field" hx-swap-oob="true">' in html
    assert '<option value="custom" selected>' in html and 'id="usage-dates"' not in html
    html = _html(acme.get(f"/usage/?{APRIL}&group_by=user", htmx=True,
                          headers={"HX-Trigger-Name": "group_by"}))
    assert 'id="usage-dates"' not in html and 'id="usage-preset"' not in html
    # Every field's message is refreshed, so a fixed filter loses its message.
    assert '<small id="provider-error" class="field-error" hx-swap-oob="true"></small>' in html
    html = _html(acme.get("/usage/?provider=nope", htmx=True, headers={"HX-Trigger-Name": "provider"}))
    assert re.search(r'<small id="provider-error" class="field-error" hx-swap-oob="true">No usage from', html)


def test_every_role_may_read_usage(app, usage_data, make_user):
    viewer = make_user("vic@acme.com")
    add_member(usage_data.org, viewer, "viewer")
    client = Client(app)
    client.sign_in("vic@acme.com")
    assert client.get(f"/usage/?{APRIL}").status_code == 200
    assert client.get(f"/usage/export/events.csv?{APRIL}", buffered=True).status_code == 200


def test_no_inline_scripts_or_styles(acme, usage_data):
    html = _html(acme.get(f"/usage/?{APRIL}"))
    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag, tag
    assert "style=" not in html and " onclick=" not in html
    assert '<template id="usage-chart-data" class="chart-data">{' in html
    assert 'src="/static/vendor/chart.umd.min.js"' in html and 'src="/static/js/charts.js"' in html


def test_revoked_keys_still_have_history(acme, usage_data):
    ApiKey.update(revoked_at=date(2025, 5, 1)).where(ApiKey.id == usage_data.key.id).execute()
    html = _html(acme.get(f"/usage/?{APRIL}&key={usage_data.key.id}"))
    assert "Usage of key “search-prod”" in html
    assert ", revoked)" in html


def test_history_restore_gets_the_whole_page(acme, usage_data):
    """The explorer keeps no htmx history snapshot (hx-history="false"), so
    going back asks the server for the URL: that answer is the full page."""
    html = _html(acme.get(f"/usage/?{APRIL}&provider=openai", htmx=True,
                          headers={"HX-History-Restore-Request": "true"}))
    assert "<html" in html and 'id="usage-filters"' in html and 'hx-history="false"' in html
    assert '<option value="openai" selected>openai</option>' in html
    assert "hx-swap-oob" not in html


def test_names_cannot_break_out_of_the_page(acme, usage_data):
    from costguardian.services.usage import ingest
    ingest.ingest(usage_data.org, None, [{"event_id": "xss", "provider": "openai",
                                          "model": "</template><img src=x onerror=alert(1)>",
                                          "input_tokens": 10, "output_tokens": 1,
                                          "occurred_at": "2025-04-20T12:00:00Z", "user": "<b>bold</b>"}])
    for url in (f"/usage/?{APRIL}", f"/usage/?{APRIL}&group_by=user", "/"):
        html = _html(acme.get(url))
        assert "<img src=x" not in html and "<b>bold" not in html, url


# --- source (gateway / ingest API) and latency by model ----------------------------

def _latency_rows(html: str) -> dict[str, list[str]]:
    match = re.search(r'<table class="striped numbers" data-testid="usage-latency".*?</table>', html, re.DOTALL)
    if match is None:
        return {}
    body = re.search(r"<tbody>(.*?)</tbody>", match.group(0), re.DOTALL).group(1)
    rows = {}
    for tr in re.findall(r"<tr>(.*?)</tr>", body, re.DOTALL):
        label = re.search(r'<th scope="row">(.*?)</th>', tr, re.DOTALL).group(1).strip()
        rows[label] = re.findall(r"<td>(.*?)</td>", tr, re.DOTALL)
    return rows


@pytest.mark.parametrize("source, heading", [("gateway", "All usage, through the gateway"),
                                             ("ingest", "All usage, sent to the ingest API")])
def test_source_filter_splits_the_totals(acme, usage_data, source, heading):
    from tests.test_usage_queries import _by_source, add_gateway_calls

    add_gateway_calls(usage_data)
    chosen = _by_source(usage_data, source)
    response = acme.get(f"/usage/?{APRIL}&source={source}")
    assert response.status_code == 200
    html = _html(response)
    assert _total_cost(html) == usd_string(sum(cost or 0 for _, cost, _ in chosen))
    assert f'data-testid="usage-total-requests">{len(chosen)}<' in html
    assert heading in html
    assert f'<option value="{source}" selected>' in html
    partial = acme.get(f"/usage/?{APRIL}&source={source}&group_by=day", htmx=True)
    assert parse_qs(urlsplit(partial.headers["HX-Push-Url"]).query)["source"] == [source]
    # "all" is the default and leaves the URL
    assert "source" not in acme.get(f"/usage/?{APRIL}&source=all", htmx=True).headers["HX-Push-Url"]


def test_source_with_a_tag_is_a_clear_error(acme, usage_data):
    for query in ("source=gateway&tag=env%3Aprod", "source=ingest&group_by=tag"):
        page = acme.get(f"/usage/?{APRIL}&{query}")
        assert page.status_code == 422
        assert "A source cannot be combined with a tag" in _html(page)
    assert acme.get(f"/usage/?{APRIL}&source=webhooks").status_code == 422


def test_exports_follow_the_source(acme, usage_data):
    import csv
    import io
    from decimal import Decimal

    from tests.test_usage_queries import _by_source, add_gateway_calls

    add_gateway_calls(usage_data)
    for source in ("gateway", "ingest"):
        chosen = _by_source(usage_data, source)
        expected = Decimal(usd_string(sum(cost or 0 for _, cost, _ in chosen)))
        for kind, column in (("events", "cost_usd"), ("grouped", "cost_usd"), ("focus", "BilledCost")):
            response = acme.get(f"/usage/export/{kind}.csv?{APRIL}&source={source}", buffered=True)
            assert response.status_code == 200, (kind, source)
            rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
            assert sum((Decimal(r[column]) for r in rows if r[column]), Decimal(0)) == expected, (kind, source)
            if kind == "events":
                assert {r["event_id"] for r in rows} == {e["event_id"] for e, _, _ in chosen}
            if kind == "focus":
                assert sum(int(r["x_Requests"]) for r in rows) == len(chosen), source


def test_latency_by_model_for_gateway_traffic(acme, usage_data):
    """The results carry a slot that loads the table with a request of its own
    (it sorts every call of the range; the spend figures never wait for it)."""
    from tests.test_usage_queries import add_gateway_calls

    html = _html(acme.get(f"/usage/?{APRIL}"))
    assert 'data-testid="usage-latency-slot"' not in html  # no gateway traffic: no slot

    gateway_key = add_gateway_calls(usage_data)
    html = _html(acme.get(f"/usage/?{APRIL}&model=gpt-4o"))
    slot = re.search(r'<div id="usage-latency-slot" hx-get="([^"]+)" hx-trigger="load"', html)
    assert slot, "no latency slot"
    url = slot.group(1).replace("&amp;", "&")
    assert parse_qs(urlsplit(url).query) == {"from": ["2025-04-01"], "to": ["2025-04-30"], "model": ["gpt-4o"]}
    assert _latency_rows(_html(acme.get(url, htmx=True))) == {
        "gpt-4o": ["openai", "2", "800 ms", "1,200 ms", "1,200 ms", "—"]}
    assert 'data-testid="usage-latency-slot"' not in _html(acme.get(f"/usage/?{APRIL}&source=ingest"))

    def latency(query: str) -> dict:
        response = acme.get(f"/usage/latency?{query}", htmx=True)
        assert response.status_code == 200 and "<html" not in _html(response)
        return _latency_rows(_html(response))

    assert latency(APRIL) == {"gpt-4o": ["openai", "2", "800 ms", "1,200 ms", "1,200 ms", "—"],
                              "gpt-4o-mini": ["openai", "1", "300 ms", "300 ms", "300 ms", "—"]}
    assert list(latency(f"{APRIL}&source=gateway&provider=openai")) == ["gpt-4o", "gpt-4o-mini"]
    assert list(latency(f"{APRIL}&key={gateway_key.id}")) == ["gpt-4o", "gpt-4o-mini"]
    assert latency(f"{APRIL}&key={usage_data.key.id}") == {}  # the ingest key made no gateway call
    assert latency(f"{APRIL}&source=ingest") == {}
    assert latency("from=2025-04-15&to=2025-04-30") == {
        "gpt-4o": ["openai", "1", "1,200 ms", "1,200 ms", "1,200 ms", "—"]}
    assert "The user, department" in _html(acme.get(f"/usage/latency?{APRIL}&user=alice%40acme.com", htmx=True))

    # Without JavaScript: a page of its own, linked from the slot.
    page = acme.get(f"/usage/latency?{APRIL}")
    assert page.status_code == 200 and "<h1>Latency by model</h1>" in _html(page)
    assert _latency_rows(_html(page))["gpt-4o-mini"][1] == "1"
    assert acme.get("/usage/latency?source=nope").status_code == 422

"""The request-log pages through the test client, with and without htmx:
the list (newest first, keyset pages, times in the organization's zone, the
cost from the usage event), its search and filters, the detail page (bodies
for owners and admins only, escaped and pretty-printed), tenancy, and the
request-logging setting (422 with field messages, audited) and deleting
the kept bodies."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest

from costguardian.models import AuditLog, GatewayRequestBody, UsageEvent
from costguardian.services import keys
from costguardian.services.gateway import recording, request_log
from costguardian.services.gateway.recording import CallRecord
from tests.support import SYSTEM, Client, add_member

NOON = datetime(2026, 1, 15, 12, 0, 0)  # 13:00 in Berlin (winter)


@pytest.fixture
def acme(app, make_user, make_org):
    owner = make_user("olga@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner, time_zone="Europe/Berlin")
    key = keys.create_key(org, SYSTEM, "search-service", ["gateway"]).key
    return org, owner, key


def _call(org, key, request_id: str, *, at: datetime = NOON, model: str = "gpt-4o", outcome: str = "ok",
          error: str = "", streamed: bool = False, prompt: str | None = None, answer: str | None = None):
    """One call recorded the way the gateway records it (usage event, log row
    and, with `prompt`, its bodies)."""
    call = CallRecord(request_id, org, key, "chat.completions", at, requested_model=model, provider="openai",
                      model=model, status_code=200 if outcome == "ok" else 502, outcome=outcome, error=error,
                      streamed=streamed, forwarded=True, latency_ms=840, ttft_ms=120 if streamed else None,
                      usage={"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500})
    if prompt is not None:
        call.bodies = request_log.Capture()
        call.bodies.take_request(json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}]})
                                 .encode())
        call.bodies.take_answer((answer or '{"choices": []}').encode())
    recording.record(call)
    return call


def _client(app, org, make_user, role: str) -> Client:
    if role != "owner":
        add_member(org, make_user(f"{role}@acme.com"), role)
    client = Client(app)
    client.sign_in("olga@acme.com" if role == "owner" else f"{role}@acme.com")
    return client


def _ids(response) -> list[str]:
    return re.findall(r'data-request-id="([^"]+)"', response.get_data(as_text=True))


# --- the list ---------------------------------------------------------------------------

def test_the_list_shows_calls_newest_first_with_key_times_and_cost(app, acme, make_user):
    org, _, key = acme
    _call(org, key, "gw_first", at=NOON)
    _call(org, key, "gw_second", at=NOON + timedelta(minutes=5), streamed=True)
    client = _client(app, org, make_user, "viewer")
    response = client.get("/gateway/requests")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert _ids(response) == ["gw_second", "gw_first"]
    assert "2026-01-15 13:05:00 CET" in html and "2026-01-15 13:00:00 CET" in html  # Berlin time
    assert "search-service" in html and "840 ms" in html and "120 ms" in html
    cost = UsageEvent.get(UsageEvent.event_id == "gw_first").cost_nanos
    assert cost > 0 and app.jinja_env.filters["usd"](cost) in html
    assert 'id="requests-settings"' not in html  # the setting is for owners and admins
    assert "An owner or admin can turn it on" in html


def test_an_empty_log_explains_how_to_turn_logging_on(app, acme):
    org, _, _ = acme
    client = _client(app, org, None, "owner")
    html = client.get("/gateway/requests").get_data(as_text=True)
    assert 'data-testid="requests-empty"' in html and "No calls through the gateway yet" in html
    assert "Request logging is off" in html and "Turn it on above" in html


def test_keyset_pages_continue_after_the_last_row(app, acme):
    org, _, key = acme
    for n in range(60):
        _call(org, key, f"gw_{n:03d}", at=NOON + timedelta(seconds=n // 2))  # pairs share a start
    client = _client(app, org, None, "owner")
    first = client.get("/gateway/requests")
    older = re.search(r'href="(/gateway/requests\?before=[^"]+)"', first.get_data(as_text=True)).group(1)
    second = client.get(older.replace("&amp;", "&"), htmx=True)
    assert len(_ids(first)) == request_log.PER_PAGE and len(_ids(second)) == 10
    shown = _ids(first) + _ids(second)
    assert shown == [f"gw_{n:03d}" for n in reversed(range(60))]
    assert "<html" not in second.get_data(as_text=True)  # htmx gets the table only


def test_filters_and_search(app, acme, make_user):
    org, _, key = acme
    other_key = keys.create_key(org, SYSTEM, "batch-jobs", ["gateway"]).key
    _call(org, key, "gw_ok", at=NOON)
    _call(org, key, "gw_broken", at=NOON + timedelta(hours=1), outcome="upstream_error",
          error="HTTP 500: The server had an error")
    _call(org, other_key, "gw_mini", at=NOON + timedelta(days=2), model="gpt-4o-mini")
    client = _client(app, org, make_user, "member")

    def ids(query: str) -> list[str]:
        response = client.get("/gateway/requests?" + query, htmx=True)
        assert response.status_code == 200, response.get_data(as_text=True)
        return _ids(response)

    assert ids("outcome=upstream_error") == ["gw_broken"]
    assert ids(f"key={other_key.id}") == ["gw_mini"]
    assert ids("model=gpt-4o") == ["gw_broken", "gw_ok"]
    assert ids("from=2026-01-17&to=2026-01-17") == ["gw_mini"]
    assert ids("to=2026-01-15") == ["gw_broken", "gw_ok"]
    assert ids("q=server+had") == ["gw_broken"]
    assert ids("q=gw_mi") == ["gw_mini"]
    assert ids("q=nothing-like-this") == []
    bad = client.get("/gateway/requests?outcome=exploded&key=999999&from=soon")
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert "is not an outcome" in text and "No such API key" in text and "Enter a date as YYYY-MM-DD." in text


def test_bodies_are_searched_only_for_those_who_may_read_them(app, acme, make_user):
    org, _, key = acme
    _call(org, key, "gw_secret", prompt="the launch codes are 0000")
    _call(org, key, "gw_plain", prompt="say hello")
    admin = _client(app, org, make_user, "admin")
    viewer = _client(app, org, make_user, "viewer")
    assert _ids(admin.get("/gateway/requests?q=launch+codes", htmx=True)) == ["gw_secret"]
    assert _ids(viewer.get("/gateway/requests?q=launch+codes", htmx=True)) == []


def test_another_organizations_calls_are_not_shown(app, acme, make_user, make_org):
    org, _, key = acme
    other = make_org("Other", owner=make_user("oscar@other.com"))
    other_key = keys.create_key(other, SYSTEM, "theirs", ["gateway"]).key
    _call(other, other_key, "gw_theirs", prompt="their prompt")
    _call(org, key, "gw_ours")
    client = _client(app, org, None, "owner")
    assert _ids(client.get("/gateway/requests")) == ["gw_ours"]
    assert _ids(client.get("/gateway/requests?q=gw_theirs")) == []
    assert client.get("/gateway/requests/gw_theirs").status_code == 404
    assert client.get("/gateway/requests/gw_nothing").status_code == 404


# --- one call ---------------------------------------------------------------------------

def test_the_detail_page_shows_bodies_to_an_admin_escaped_and_pretty(app, acme, make_user):
    org, _, key = acme
    _call(org, key, "gw_one", prompt="<script>alert(1)</script>",
          answer='{"choices":[{"message":{"content":"Hi"}}],"usage":{"total_tokens":3}}')
    admin = _client(app, org, make_user, "admin")
    html = admin.get("/gateway/requests/gw_one").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '{\n  &#34;choices&#34;: [' in html or '{\n  "choices": [' in html  # indented JSON
    assert 'data-testid="request-body"' in html and 'data-testid="answer-body"' in html
    assert "1,000" in html and "500" in html  # the usage event's tokens
    event = UsageEvent.get(UsageEvent.event_id == "gw_one")
    assert app.jinja_env.filters["usd"](event.cost_nanos) in html


def test_the_detail_page_hides_bodies_from_a_viewer(app, acme, make_user):
    org, _, key = acme
    _call(org, key, "gw_one", prompt="confidential roadmap")
    viewer = _client(app, org, make_user, "viewer")
    response = viewer.get("/gateway/requests/gw_one")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "gw_one" in html and "search-service" in html
    assert "confidential roadmap" not in html and 'data-testid="request-body"' not in html
    assert "Only owners and admins can read the bodies" in html


# --- the setting ------------------------------------------------------------------------

@pytest.mark.parametrize("role, allowed", [("owner", True), ("admin", True), ("billing", False),
                                           ("member", False), ("viewer", False)])
def test_only_owners_and_admins_change_the_setting(app, acme, make_user, role, allowed):
    org, _, _ = acme
    client = _client(app, org, make_user, role)
    response = client.post("/gateway/requests/settings", {"enabled": "y", "retention_days": "30"})
    assert response.status_code == (302 if allowed else 403)
    assert client.post("/gateway/requests/bodies/delete", {"confirm": "y"}).status_code == (302 if allowed else 403)
    org = type(org).get_by_id(org.id)
    assert (org.request_logging, org.request_log_days) == ((True, 30) if allowed else (False, 7))


def test_settings_saved_with_htmx_and_audited(app, acme):
    org, _, _ = acme
    client = _client(app, org, None, "owner")
    response = client.post("/gateway/requests/settings", {"enabled": "y", "retention_days": "14"}, htmx=True)
    assert response.status_code == 200
    assert "kept for 14 days" in json.loads(response.headers["HX-Trigger"])["showToast"]["message"]
    assert 'id="requests-settings"' in response.get_data(as_text=True)
    row = AuditLog.get(AuditLog.action == "org.updated", AuditLog.organization == org)
    assert row.detail["changes"]["request_logging"] == ["off", "on"] and row.actor.email == "olga@acme.com"
    off = client.post("/gateway/requests/settings", {"retention_days": "14"}, htmx=True)
    assert "off" in json.loads(off.headers["HX-Trigger"])["showToast"]["message"]
    assert not type(org).get_by_id(org.id).request_logging


@pytest.mark.parametrize("days", ["0", "91", "seven", "", "-1", "7.5"])
def test_bad_retention_is_a_422_with_the_fields_message(app, acme, days):
    org, _, _ = acme
    client = _client(app, org, None, "owner")
    for htmx in (False, True):
        response = client.post("/gateway/requests/settings", {"enabled": "y", "retention_days": days}, htmx=htmx)
        html = response.get_data(as_text=True)
        assert response.status_code == 422
        assert html.count("Enter a whole number of days from 1 to 90.") == 1
    assert not type(org).get_by_id(org.id).request_logging
    assert not AuditLog.select().where(AuditLog.action == "org.updated").exists()


def test_deleting_every_kept_body_needs_the_confirmation(app, acme):
    org, _, key = acme
    for n in range(3):
        _call(org, key, f"gw_{n}", prompt="hello")
    client = _client(app, org, None, "owner")
    assert "3 bodies kept" in client.get("/gateway/requests").get_data(as_text=True)
    refused = client.post("/gateway/requests/bodies/delete", {}, htmx=True)
    assert refused.status_code == 422 and "Tick the box to confirm" in refused.get_data(as_text=True)
    assert GatewayRequestBody.select().count() == 3
    done = client.post("/gateway/requests/bodies/delete", {"confirm": "y"}, htmx=True)
    assert done.status_code == 200 and "Deleted 3 kept bodies" in done.headers["HX-Trigger"]
    assert GatewayRequestBody.select().count() == 0
    assert AuditLog.get(AuditLog.action == "org.request_bodies_deleted").detail["count"] == 3


def test_a_page_is_read_from_the_organization_and_start_index(app, acme, backend):
    """Newest first and keyset pages walk the (organization, started_at)
    index: no scan of the table and no sort of it, whatever its size."""
    if backend != "sqlite":
        pytest.skip("the plan is SQLite's; PostgreSQL's planner picks by statistics")
    from costguardian.extensions import db

    org, _, key = acme
    _call(org, key, "gw_one")
    for before in (None, "20260115T120000000000.5"):
        sql, params = request_log.listing(org, request_log.RequestFilter(), before=before).limit(51).sql()
        plan = " ".join(str(row[-1]) for row in db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
        assert "gatewayrequest_organization_id_started_at" in plan and "TEMP B-TREE" not in plan, plan


# --- hostile query strings: a field message or nothing, never a 500 -------------------

@pytest.mark.parametrize("query, field", [("to=9999-12-31", "to"), ("from=0001-01-01", "from"),
                                          ("from=1999-12-31&to=2101-01-01", "to")])
def test_dates_out_of_range_are_a_422_with_the_fields_message(app, make_user, make_org, query, field):
    owner = make_user("taro@example.jp")
    org = make_org("Tokyo Co", owner=owner, time_zone="Asia/Tokyo")  # local midnight of 0001-01-01 is before UTC's
    client = Client(app)
    client.sign_in("taro@example.jp")
    response = client.get("/gateway/requests?" + query)
    assert response.status_code == 422, response.get_data(as_text=True)[:500]
    html = response.get_data(as_text=True)
    assert re.search(rf'id="{field}-error" class="field-error">Choose a date between 2000 and 2100\.<', html)
    assert org.time_zone == "Asia/Tokyo"


def test_dates_at_the_ends_of_the_range_are_accepted(app, acme):
    org, _, key = acme
    _call(org, key, "gw_one")
    client = _client(app, org, None, "owner")
    assert _ids(client.get("/gateway/requests?from=2000-01-01&to=2100-12-31", htmx=True)) == ["gw_one"]


@pytest.mark.parametrize("before", ["20260115T120000000000.99999999999999999999",
                                    "20260115T120000000000.2147483648", "20260115T120000000000.0",
                                    "20260115T120000000000.-5", "not-a-cursor"])
def test_a_cursor_no_page_made_shows_the_newest_calls(app, acme, before):
    org, _, key = acme
    _call(org, key, "gw_one", at=NOON - timedelta(days=1))
    client = _client(app, org, None, "owner")
    response = client.get("/gateway/requests?before=" + before)
    assert response.status_code == 200 and _ids(response) == ["gw_one"]


def test_only_the_filters_are_carried_into_the_pages_links(app, acme):
    org, _, key = acme
    for n in range(request_log.PER_PAGE + 1):
        _call(org, key, f"gw_{n:03d}", at=NOON + timedelta(seconds=n))
    client = _client(app, org, None, "owner")
    response = client.get("/gateway/requests?_method=x&_external=1&_anchor=a&foo=bar&model=gpt-4o")
    assert response.status_code == 200
    older = re.search(r'href="(/gateway/requests\?[^"]+)"[^>]*data-testid="older"', response.get_data(as_text=True))
    link = older.group(1).replace("&amp;", "&")
    assert "model=gpt-4o" in link and "before=" in link
    assert "_method" not in link and "_external" not in link and "_anchor" not in link and "foo" not in link
    second = client.get(link)
    assert second.status_code == 200 and "« Newest" in second.get_data(as_text=True)

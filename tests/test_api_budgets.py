"""The budgets JSON API: list, status, create, replace, delete, raise and test
alerts, with `read` and `admin` keys, under services.budgets."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from costguardian import clock
from costguardian.models import AuditLog, Budget, BudgetIncrease, Department, Notification
from costguardian.services import keys
from costguardian.services.budgets import budgets
from costguardian.services.usage import ingest
from costguardian.services.actor import Actor
from tests.support import SYSTEM, add_member

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)

PROBLEM = "application/problem+json"


@pytest.fixture
def org(make_org, make_user):
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    add_member(org, make_user("admin@acme.com"), "admin")
    return org


@pytest.fixture
def owner(org):
    from costguardian.models import Membership
    return Membership.in_org(org).where(Membership.role == "owner").get().user


@pytest.fixture
def admin_key(org, owner):
    keys._last_written.clear()
    return keys.create_key(org, Actor(user=owner), "budget automation", ["admin", "read"]).plaintext


@pytest.fixture
def read_key(org, owner):
    keys._last_written.clear()
    return keys.create_key(org, Actor(user=owner), "dashboards", ["read"]).plaintext


@pytest.fixture
def api(app):
    client = app.test_client()

    def call(method, path, key=None, body=None, raw=None, **query):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return client.open(path, method=method, headers=headers, data=data, content_type="application/json",
                           query_string=query)

    return call


def _spend(org, dollars_each: int, count: int, **extra):
    """Usage through ingest: gpt-4o input at $2.50 per 1M tokens."""
    tokens = dollars_each * 400_000
    events = [{"event_id": f"e-{clock.now().timestamp()}-{i}", "provider": "openai", "model": "gpt-4o",
               "input_tokens": tokens, "occurred_at": (clock.now() - timedelta(minutes=1)).isoformat() + "Z", **extra}
              for i in range(count)]
    result = ingest.ingest(org, None, events)
    assert result.count("accepted") == count


def test_create_list_get_and_status(api, org, admin_key, read_key):
    research = Department.create(organization=org, name="Research")
    body = {"name": "Research OpenAI", "amount_usd": "250.50", "period": "monthly", "thresholds": [80, 50, 100],
            "enforcement": "hard", "notify_resolved": True, "notify_roles": ["owner", "billing"],
            "department_id": research.id, "provider": "OpenAI"}
    created = api("POST", "/api/v1/budgets", admin_key, body)
    assert created.status_code == 201, created.json
    budget_id = created.json["id"]
    assert created.headers["Location"].endswith(f"/api/v1/budgets/{budget_id}")
    assert created.json["amount_usd"] == "250.5" and created.json["thresholds"] == [50, 80, 100]
    assert created.json["department_id"] == research.id and created.json["provider"] == "openai"
    assert created.json["enforcement"] == "hard" and created.json["notify_roles"] == ["owner", "billing"]
    assert created.json["status"]["state"] == "ok" and created.json["status"]["spend_usd"] == "0"
    assert AuditLog.select().where(AuditLog.action == "budget.created").count() == 1

    numeric = api("POST", "/api/v1/budgets", admin_key, {"name": "Org", "amount_usd": 1000, "period": "weekly",
                                                          "thresholds": "50,90"})
    assert numeric.status_code == 201 and numeric.json["thresholds"] == [50, 90]
    assert numeric.json["amount_usd"] == "1000" and numeric.json["status"]["scope_text"] == "The whole organization"

    listed = api("GET", "/api/v1/budgets", read_key)
    assert listed.status_code == 200
    assert {b["name"] for b in listed.json["budgets"]} == {"Research OpenAI", "Org"}
    one = api("GET", f"/api/v1/budgets/{budget_id}", read_key)
    assert one.status_code == 200 and one.json["name"] == "Research OpenAI"
    status = api("GET", "/api/v1/budgets/status", read_key)
    assert status.status_code == 200 and status.json["time_zone"] == org.time_zone
    assert [b["name"] for b in status.json["budgets"]] == ["Org", "Research OpenAI"]


def test_status_numbers_equal_the_service(api, org, admin_key, read_key):
    made = api("POST", "/api/v1/budgets", admin_key, {"name": "Monthly", "amount_usd": "10"}).json
    _spend(org, 3, 3)  # $9 of $10: 90%
    budgets.check_all()  # forecasts stored on the counter rows
    answer = api("GET", "/api/v1/budgets/status", read_key).json["budgets"]
    expected = [st.as_json() for st in budgets.org_statuses(org)]
    assert answer == expected
    row = answer[0]
    assert row["id"] == made["id"] and row["spend_usd"] == "9" and row["limit_usd"] == "10"
    assert row["percent"] == 90.0 and row["thresholds_crossed"] == [50, 80] and row["requests"] == 3
    assert row["forecast_usd"] is not None and row["state"] in ("warning", "forecast")
    assert row["period"]["kind"] == "monthly" and row["scope"]["provider"] is None
    listed = api("GET", "/api/v1/budgets", read_key).json["budgets"][0]
    assert listed["status"] == expected[0]


def test_read_key_cannot_change_budgets(api, org, read_key, admin_key):
    budget = budgets.create(org, SYSTEM, {"name": "B", "amount_usd": "100"})
    assert api("GET", "/api/v1/budgets").status_code == 401
    for method, path, body in (("POST", "/api/v1/budgets", {"name": "x", "amount_usd": 1}),
                               ("PUT", f"/api/v1/budgets/{budget.id}", {"name": "x", "amount_usd": 1}),
                               ("DELETE", f"/api/v1/budgets/{budget.id}", None),
                               ("POST", f"/api/v1/budgets/{budget.id}/test-alert", None),
                               ("POST", f"/api/v1/budgets/{budget.id}/raise", {"amount_usd": 5})):
        response = api(method, path, read_key, body)
        assert response.status_code == 403, (method, path)
        assert response.mimetype == PROBLEM and response.json["type"].endswith("insufficient-scope")
    ingest_key = keys.create_key(org, SYSTEM, "ingest only", ["ingest"]).plaintext
    assert api("GET", "/api/v1/budgets/status", ingest_key).status_code == 403
    assert Budget.select().count() == 1 and Budget.get_by_id(budget.id).name == "B"


def test_key_creators_role_must_allow_budgets(api, org, make_user):
    member = make_user("mo@acme.com")
    add_member(org, member, "member")
    key = keys.create_key(org, SYSTEM, "member's key", ["admin", "read"]).plaintext
    from costguardian.models import ApiKey
    ApiKey.update(created_by=member).where(ApiKey.name == "member's key").execute()
    refused = api("POST", "/api/v1/budgets", key, {"name": "x", "amount_usd": 1})
    assert refused.status_code == 403 and refused.json["type"].endswith("not-permitted")
    assert api("GET", "/api/v1/budgets", key).status_code == 200  # members may read budgets
    billing = make_user("bill@acme.com")
    add_member(org, billing, "billing")
    ApiKey.update(created_by=billing).where(ApiKey.name == "member's key").execute()
    assert api("POST", "/api/v1/budgets", key, {"name": "x", "amount_usd": 1}).status_code == 201


def test_validation_problems(api, org, admin_key):
    bad_json = api("POST", "/api/v1/budgets", admin_key, raw="{not json")
    assert bad_json.status_code == 422 and bad_json.mimetype == PROBLEM
    assert bad_json.json["type"].endswith("malformed-json")
    not_object = api("POST", "/api/v1/budgets", admin_key, [1, 2])
    assert not_object.status_code == 422 and "errors" in not_object.json
    types = api("POST", "/api/v1/budgets", admin_key, {
        "name": 5, "amount_usd": True, "thresholds": [50, "80"], "notify_resolved": "yes",
        "notify_roles": "owner", "department_id": "3", "colour": "red", "tag": ["a"]})
    assert types.status_code == 422 and types.mimetype == PROBLEM
    assert set(types.json["errors"]) == {"name", "amount_usd", "thresholds", "notify_resolved", "notify_roles",
                                         "department_id", "colour", "tag"}
    assert types.json["errors"]["colour"] == "Unknown field."
    service = api("POST", "/api/v1/budgets", admin_key, {
        "name": "", "amount_usd": "-3", "period": "fortnightly", "thresholds": [0], "enforcement": "maybe",
        "department_id": 999999, "notify_roles": ["emperor"]})
    assert service.status_code == 422 and service.mimetype == PROBLEM
    assert set(service.json["errors"]) == {"name", "amount_usd", "period", "thresholds", "enforcement",
                                           "department_id", "notify_roles"}
    custom = api("POST", "/api/v1/budgets", admin_key, {"name": "Launch", "amount_usd": 100, "period": "custom",
                                                         "custom_start": "2026-12-10", "custom_end": "2026-12-01"})
    assert custom.status_code == 422 and "custom_end" in custom.json["errors"]
    missing = api("POST", "/api/v1/budgets", admin_key, {"name": None, "amount_usd": None})
    assert set(missing.json["errors"]) == {"name", "amount_usd"}
    unsupported = api("POST", "/api/v1/budgets", admin_key, raw="name=x")
    assert unsupported.status_code == 422
    assert Budget.select().count() == 0


def test_replace_budget(api, org, admin_key):
    made = api("POST", "/api/v1/budgets", admin_key, {"name": "Org", "amount_usd": "100", "provider": "openai",
                                                       "enforcement": "hard"}).json
    _spend(org, 1, 2)
    replaced = api("PUT", f"/api/v1/budgets/{made['id']}", admin_key,
                   {"name": "Org weekly", "amount_usd": 50, "period": "weekly", "thresholds": [90]})
    assert replaced.status_code == 200, replaced.json
    body = replaced.json
    # A full replacement: fields left out take their defaults, as in the form.
    assert body["name"] == "Org weekly" and body["period"] == "weekly" and body["thresholds"] == [90]
    assert body["provider"] is None and body["enforcement"] == "soft" and body["amount_usd"] == "50"
    assert body["status"]["spend_usd"] == "2"  # rebuilt for the new period and scope
    assert AuditLog.select().where(AuditLog.action == "budget.updated").count() == 1
    bad = api("PUT", f"/api/v1/budgets/{made['id']}", admin_key, {"name": "Org", "amount_usd": "lots"})
    assert bad.status_code == 422 and set(bad.json["errors"]) == {"amount_usd"}
    assert Budget.get_by_id(made["id"]).name == "Org weekly"


def test_delete_budget(api, org, admin_key, read_key):
    made = api("POST", "/api/v1/budgets", admin_key, {"name": "Org", "amount_usd": "100"}).json
    deleted = api("DELETE", f"/api/v1/budgets/{made['id']}", admin_key)
    assert deleted.status_code == 204 and deleted.get_data() == b""
    assert Budget.select().count() == 0
    assert api("GET", f"/api/v1/budgets/{made['id']}", read_key).status_code == 404
    assert api("DELETE", f"/api/v1/budgets/{made['id']}", admin_key).status_code == 404
    assert AuditLog.select().where(AuditLog.action == "budget.deleted").count() == 1


def test_another_organizations_budget_is_not_found(api, org, admin_key, read_key, make_org, make_user):
    other = make_org("Other", owner=make_user("o@other.com"))
    theirs = budgets.create(other, SYSTEM, {"name": "Theirs", "amount_usd": "100"})
    for method, path, key, body in (
            ("GET", f"/api/v1/budgets/{theirs.id}", read_key, None),
            ("PUT", f"/api/v1/budgets/{theirs.id}", admin_key, {"name": "Mine", "amount_usd": 1}),
            ("DELETE", f"/api/v1/budgets/{theirs.id}", admin_key, None),
            ("POST", f"/api/v1/budgets/{theirs.id}/test-alert", admin_key, None),
            ("POST", f"/api/v1/budgets/{theirs.id}/raise", admin_key, {"amount_usd": 5})):
        response = api(method, path, key, body)
        assert response.status_code == 404 and response.mimetype == PROBLEM, (method, path)
        assert response.json["type"].endswith("not-found")
    assert api("GET", "/api/v1/budgets", read_key).json["budgets"] == []
    assert Budget.get_by_id(theirs.id).name == "Theirs"


def test_test_alert_goes_through_notify(api, org, admin_key):
    made = api("POST", "/api/v1/budgets", admin_key, {"name": "Org", "amount_usd": "100",
                                                       "notify_roles": ["admin"]}).json
    response = api("POST", f"/api/v1/budgets/{made['id']}/test-alert", admin_key)
    assert response.status_code == 202 and response.json["event_id"]
    sent = list(Notification.select().where(Notification.event_id == response.json["event_id"]))
    assert len(sent) == 1 == response.json["notifications"]
    assert sent[0].user.email == "admin@acme.com" and "[Test] Org" in sent[0].title
    assert AuditLog.select().where(AuditLog.action == "budget.test_alert").count() == 1


def test_raise_for_the_rest_of_the_period(api, org, admin_key):
    made = api("POST", "/api/v1/budgets", admin_key, {"name": "Org", "amount_usd": "10"}).json
    _spend(org, 11, 1)
    assert api("GET", f"/api/v1/budgets/{made['id']}", admin_key).json["status"]["state"] == "exceeded"
    raised = api("POST", f"/api/v1/budgets/{made['id']}/raise", admin_key,
                 {"amount_usd": "15", "reason": "launch week"})
    assert raised.status_code == 201, raised.json
    assert raised.json["increase"]["amount_usd"] == "15" and raised.json["increase"]["reason"] == "launch week"
    status = raised.json["budget"]["status"]
    assert status["limit_usd"] == "25" and status["increase_usd"] == "15" and status["state"] != "exceeded"
    assert BudgetIncrease.select().count() == 1
    unknown = api("POST", f"/api/v1/budgets/{made['id']}/raise", admin_key, {"amount_usd": 1, "why": "x"})
    assert unknown.status_code == 422 and set(unknown.json["errors"]) == {"why"}
    bad = api("POST", f"/api/v1/budgets/{made['id']}/raise", admin_key, {"amount_usd": "-1"})
    assert bad.status_code == 422 and set(bad.json["errors"]) == {"amount_usd"}
    missing = api("POST", f"/api/v1/budgets/{made['id']}/raise", admin_key, {})
    assert missing.status_code == 422 and "amount_usd" in missing.json["errors"]
    too_long = api("POST", f"/api/v1/budgets/{made['id']}/raise", admin_key, {"amount_usd": 1, "reason": "x" * 201})
    assert too_long.status_code == 422 and "reason" in too_long.json["errors"]
    assert BudgetIncrease.select().count() == 1


def test_openapi_documents_the_budget_routes(api):
    spec = api("GET", "/api/openapi.json").json
    for path in ("/api/v1/budgets", "/api/v1/budgets/status", "/api/v1/budgets/{budget_id}",
                 "/api/v1/budgets/{budget_id}/test-alert", "/api/v1/budgets/{budget_id}/raise"):
        assert path in spec["paths"], path
    assert {"Budget", "BudgetStatus", "BudgetInput"} <= set(spec["components"]["schemas"])

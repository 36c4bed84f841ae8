"""The OpenAPI document and the server agree: schemathesis generates requests
from the document (valid ones, which must be accepted, and invalid ones,
which must be refused) and checks every answer against it (status codes,
content types, headers, response schemas, no server errors, the key being
needed), in-process, with a real API key that has every scope.

Every operation of the document is run; none is excluded. The run is bounded
and reproducible: a fixed number of examples per operation, derandomized."""
from __future__ import annotations

import json
from datetime import timedelta
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from costguardian import clock
from costguardian.db import connected
from costguardian.extensions import db
from costguardian.openapi import spec
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.budgets import budgets
from costguardian.services.team import departments, invitations
from tests.support import SYSTEM, add_member, make_org, make_user

schema = schemathesis.openapi.from_dict(spec())


BILLING_SETTINGS = ("BILLING_ENABLED", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE")


@pytest.fixture
def billing_on(app, stripe_api):
    """Billing on against the fake Stripe, so the billing operations run for
    real (Checkout sessions, previews, invoices) instead of answering 404."""
    from costguardian.services.billing import plans

    saved = {name: app.config.get(name) for name in BILLING_SETTINGS}
    app.config.update(BILLING_ENABLED=True, STRIPE_SECRET_KEY=stripe_api.api_key,
                      STRIPE_WEBHOOK_SECRET=stripe_api.webhook_secret, STRIPE_API_BASE=stripe_api.url)
    with app.app_context(), connected(db):
        plans.setup_stripe(stripe_api.client(), app.config["STRIPE_METER_EVENT_NAME"], SYSTEM)
        # Room for every invitation the generated requests send (the seat limit has its own tests).
        plans.update("free", {"seats_included": "100000"}, SYSTEM)
    yield stripe_api
    app.config.update(saved)


@pytest.fixture
def api_key(app, billing_on):
    """A real key with every scope, made by the owner of an organization that
    holds one of each thing the API names by id (a member, a department, an
    invitation, a budget), so that generated ids find something too."""
    with app.app_context(), connected(db):
        owner = make_user("owner@acme.com", name="Olga Owner")
        org = make_org("Acme", owner=owner)
        add_member(org, make_user("ana@acme.com", name="Ana"), "member")
        departments.create(org, SYSTEM, "Research", "R-1")
        invitations.invite(org, "new@acme.com", "viewer", Actor(user=owner))
        budgets.create(org, SYSTEM, {"name": "Org", "amount_usd": "100"})
        keys._last_written.clear()
        return keys.create_key(org, Actor(user=owner), "contract", list(keys.SCOPES)).plaintext


@pytest.fixture
def platform_token(app, api_key):
    """A superadmin's platform token with both scopes, for the admin API (its
    own bearer scheme); another superadmin, so that the rules about the last
    one do not answer every change to the first."""
    from costguardian.services.platform import tokens

    with app.app_context(), connected(db):
        root = make_user("root@example.com", name="Root", platform_role="superadmin")
        make_user("second@example.com", name="Second", platform_role="superadmin")
        return tokens.create(root, Actor(user=root), "contract", [tokens.READ, tokens.WRITE]).plaintext


# Rules the document states in words because a JSON schema cannot: they depend
# on what is stored (names in use, ids of this organization), on the clock, or
# tie fields together. Schema-valid data can break them, and the server then
# answers 422 naming the field; that is the document's promise, not a
# disagreement. So a 422 to schema-valid data passes positive_data_acceptance
# only when every error in it is one of these (operation, field, message);
# any other 422 to schema-valid data still fails the check. (This replaces the
# default positive_data_acceptance check; every other default check runs as is.)
_NO_DEPARTMENT = r"^No department .* in this organization\.$"
_BUDGET_RULES = {
    "owner_id": r"^The owner must be a member of this organization\.$",
    "department_id": r"^Choose a department of this organization\.$",
    "api_key_id": r"^Choose an API key of this organization\.$",
    "custom_end": r"^(The last day cannot be before the first|A custom period can last at most five years)\.$",
    "amount_usd": r"^Use at most 9 decimal places\.$",  # a JSON number such as 0.1234567891
    # A provider or model that matches nothing known, without "confirm_scope": true (services/budgets/scope_check).
    "provider": r"^“.*” matches no provider in the price catalog or in this organization’s ",
    "model": r"^“.*” matches no model in the price catalog or in this organization’s usage",
}
# Plans are data (services/billing/plans.py): which codes are on sale, and that
# seats cover the organization's people, depend on what is stored.
_BILLING_RULES = {
    "plan": r"^(Choose one of the plans on sale: .*|.* has no (month|year)ly price yet.*)$",
    "seats": r"^.* has \d+ members and pending invitations; choose at least \d+ seats or remove people first\.$",
}
_OWNER_RULES = {"owner_email": r"^(No account uses .*|.*'s account is disabled.*)$"}
RULES_BEYOND_THE_SCHEMA = {
    "POST /api/v1/departments": {
        "name": r"^There is already a department named ",
        "code": r"^The code .* is already used by another department\.$",
        "parent": _NO_DEPARTMENT,
        "manager": r"^The manager must be a member of this organization\.$",
    },
    "PUT /api/v1/members/{membership_id}": {"department": _NO_DEPARTMENT},
    "POST /api/v1/invitations": {"department": _NO_DEPARTMENT},
    "POST /api/v1/budgets": _BUDGET_RULES,
    "PUT /api/v1/budgets/{budget_id}": _BUDGET_RULES,
    "POST /api/v1/budgets/{budget_id}/raise": {
        "amount_usd": r"^(Use at most 9 decimal places|This period's limit \(the amount and its raises\) can be at "
                      r"most \$1,000,000,000)\.$"},
    "POST /api/v1/usage": {
        "department": r"^No department named .* in this organization\.$",
        "occurred_at": r"^(Must be between 2015 and now|Is in the future .*|Is before 2015|Not a moment on the "
                       r"calendar .*)\.$",  # e.g. 2026-02-30T00:00:00, which the local-time pattern lets through
        "input_tokens": r"^Must include the cached tokens",  # from token counts or a usage object
        "cost": r"over the \$100,000 limit",
        "tags": r"^Each tag is at most 100 characters\.$",  # an object's key:value together
    },
    "POST /api/v1/billing/subscription": _BILLING_RULES,
    "PUT /api/v1/billing/subscription": {**_BILLING_RULES, "": r"^(This is the current plan, interval and number of "
                                                               r"seats|Send plan, interval or seats to change, or "
                                                               r"cancel_at_period_end)\.$",
                                         "cancel_at_period_end": r"^Change the plan and the cancellation in "
                                                                 r"separate requests\.$"},
    "POST /api/v1/billing/invoice": {f"items[{i}].amount_usd": r"^An amount more than \$0 and at most \$1,000,000\.$"
                                     for i in range(20)},
    "GET /api/v1/usage/summary": {"to": r"^(Must not be before 'from'|A summary covers at most three years)\.$"},
    # The platform admin API: addresses the email validator refuses or another account uses; the platform
    # role rules; the typed confirmation; owners that are existing, enabled accounts.
    "PUT /api/v1/admin/users/{user_id}": {
        "email": r"^(?!(Must be a string|At most \d+ characters|Contains characters that cannot be stored"
                 r"|Must not be empty)\b)",
        "platform_role": r"^(You cannot change your own platform role|This is the last active superadmin)"},
    "DELETE /api/v1/admin/users/{user_id}": {"confirm": r"^(Type the user's email address|This is not the user's)"},
    "POST /api/v1/admin/organizations": _OWNER_RULES,
    "POST /api/organizations": _OWNER_RULES,
    "GET /api/v1/admin/usage": {"end": r"^(Must not be before 'start'|A range covers at most three years)\.$"},
}


def _breaks_only_documented_rules(case, response) -> bool:
    if response.status_code != 422:
        return False
    rules = RULES_BEYOND_THE_SCHEMA.get(f"{case.method.upper()} {case.path}", {})
    errors = (response.json() or {}).get("errors") or {}
    return bool(errors) and all(field in rules and re.search(rules[field], str(message), re.DOTALL)
                                for field, message in errors.items())


def positive_data_acceptance_but_documented_rules(ctx, response, case):
    """positive_data_acceptance, except for a 422 that names only rules above."""
    if _breaks_only_documented_rules(case, response):
        return None
    return positive_data_acceptance(ctx, response, case)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_the_api_does_what_its_document_says(case, app, api_key, platform_token):
    # Requests schemathesis sends on its own (the same call without the key,
    # to check that the key is needed) go to the app in-process too.
    case.operation.schema.app = app
    # The key goes where the document's bearer scheme says, except in the
    # cases schemathesis generates without it on purpose (which must get 401).
    # The admin API's operations name the platform token's scheme instead.
    if not case.operation.schema.is_security_param_negated(case):
        platform = {"platformToken": []} in (case.operation.definition.raw.get("security") or [])
        token = platform_token if platform else api_key
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    case.call_and_validate(app=app, excluded_checks=[positive_data_acceptance],
                           additional_checks=[positive_data_acceptance_but_documented_rules])


def test_the_served_document_is_the_one_tested(app):
    served = app.test_client().get("/api/openapi.json")
    assert served.status_code == 200 and json.loads(served.data) == spec()


# --- each class of disagreement schemathesis found, as a plain test ----------------------

PROBLEM = "application/problem+json"


@pytest.fixture
def api(app, api_key):
    """(method, path, body=None, raw=None, **query) -> response, with the key."""
    client = app.test_client()

    def call(method, path, body=None, raw=None, **query):
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return client.open(path, method=method, headers={"Authorization": f"Bearer {api_key}"}, data=data,
                           content_type="application/json", query_string=query)

    return call


def _refused(response, *fields):
    assert response.status_code == 422 and response.mimetype == PROBLEM, (response.status_code, response.data)
    body = response.json
    assert body["type"].startswith("http://localhost/docs/problems/") and body["detail"]
    assert set(fields) <= set(body.get("errors") or {}), body
    return body


def _operation(method: str, path: str) -> dict:
    return spec()["paths"][path][method]


def test_emails_must_be_a_list_and_email_one_address(api):
    _refused(api("POST", "/api/v1/invitations", {"emails": "nil"}), "emails")
    _refused(api("POST", "/api/v1/invitations", {"emails": []}), "emails")
    _refused(api("POST", "/api/v1/invitations", {"email": ["a@acme.com"]}), "email")
    _refused(api("POST", "/api/v1/invitations", {"emails": ["a@acme.com"], "email": "b@acme.com"}), "email")
    _refused(api("POST", "/api/v1/invitations", {}), "emails")
    _refused(api("POST", "/api/v1/invitations", {"emails": ["x" * 255]}), "emails")
    _refused(api("POST", "/api/v1/invitations", {"email": "a@acme.com", "role": {}}), "role")  # was a 500
    # One address per item: the item gets its own result, it is not split.
    results = api("POST", "/api/v1/invitations", {"emails": ["a@acme.com, b@acme.com", " c@acme.com "]}).json
    assert [(r["email"], r["status"]) for r in results["results"]] == [
        ("a@acme.com, b@acme.com", "invalid"), ("c@acme.com", "invited")]


def test_invitations_answer_only_documented_statuses(api):
    documented = set(_operation("post", "/api/v1/invitations")["responses"])
    first = api("POST", "/api/v1/invitations", {"emails": ["a@acme.com"]})
    again = api("POST", "/api/v1/invitations", {"emails": ["a@acme.com", "not an address"]})
    assert (first.status_code, again.status_code) == (201, 200)
    assert {"200", "201"} <= documented
    assert [r["status"] for r in again.json["results"]] == ["pending", "invalid"] and again.json["invited"] == 0


def test_a_405_names_the_allowed_methods(api):
    response = api("PATCH", "/api/v1/departments")
    assert response.status_code == 405 and response.mimetype == PROBLEM
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_whole_numbers_written_with_a_fraction_are_integers(api):
    """JSON Schema's integer includes 4.0; NaN and Infinity are not JSON."""
    research = api("GET", "/api/v1/departments").json["departments"][0]
    made = api("POST", "/api/v1/departments", {"name": "Platform", "parent_id": float(research["id"])})
    assert made.status_code == 201 and made.json["parent_id"] == research["id"]
    event = {"event_id": "e1", "provider": "openai", "model": "gpt-4o", "input_tokens": 1e3, "output_tokens": 10.0}
    assert api("POST", "/api/v1/usage", event).json["accepted"] == 1
    assert _refused(api("POST", "/api/v1/usage", raw='{"event_id": "e2", "provider": "openai", "model": "x", '
                                                     '"input_tokens": NaN}'))["type"].endswith("/malformed-json")
    _refused(api("POST", "/api/v1/usage", dict(event, event_id="e3", input_tokens=1.5)), "input_tokens")


def test_blank_means_what_the_server_trims():
    """The document's not-blank pattern spells out str.strip's spaces: \\s in
    ECMA regular expressions leaves out U+001C-U+001F and U+0085."""
    from costguardian.openapi import NOT_BLANK

    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    assert max(map(ord, spaces)) <= 0x3000
    assert not any(re.search(NOT_BLANK, space * 2) for space in spaces)
    assert all(re.search(NOT_BLANK, f"{space}x{space}") for space in spaces)


def test_text_limits_apply_as_sent_and_nul_is_refused(api):
    """Limits count the characters sent (not what is left after trimming);
    NUL cannot be stored in PostgreSQL, so every text refuses it (422, not 500)."""
    _refused(api("POST", "/api/v1/departments", {"name": "   "}), "name")
    _refused(api("POST", "/api/v1/departments", {"name": " " * 10 + "x" * 115}), "name")
    _refused(api("POST", "/api/v1/departments", {"name": "Lab\u0000"}), "name")
    _refused(api("POST", "/api/v1/departments", {"name": "Lab", "manager": "a\u0000@acme.com"}), "manager")
    _refused(api("PUT", "/api/v1/organization", {"name": " "}), "name")
    _refused(api("PUT", "/api/v1/organization", {"name": "\u001c\u0085"}), "name")  # str.strip's spaces too
    _refused(api("PUT", "/api/v1/organization", {"time_zone": "Mars/Olympus"}), "time_zone")
    _refused(api("GET", "/api/v1/members", q="a\u0000"), "q")
    _refused(api("GET", "/api/v1/members", q="a" * 201), "q")
    _refused(api("POST", "/api/v1/invitations", {"email": "a@acme.com", "department": "R\u0000"}), "department")
    event = {"provider": "openai", "model": "gpt-4o"}
    _refused(api("POST", "/api/v1/usage", {**event, "event_id": " " * 121 + "e1234567"}), "event_id")
    _refused(api("POST", "/api/v1/usage", {**event, "event_id": "e1", "tags": ["x"] * 21}), "tags")
    _refused(api("POST", "/api/v1/usage", {**event, "event_id": "e1", "tags": [" " * 95 + "x" * 6]}), "tags")
    _refused(api("POST", "/api/v1/usage", {**event, "event_id": "e1", "tags": {"k" * 60: "v" * 40}}), "tags")
    budget_id = api("GET", "/api/v1/budgets").json["budgets"][0]["id"]  # not 1 on PostgreSQL: ids go on
    _refused(api("POST", f"/api/v1/budgets/{budget_id}/raise", {"amount_usd": 1, "reason": "\u0000"}), "reason")


def test_query_parameters_are_read_strictly(api):
    for page in ("+1", "\u0665", "1_0", "", "0", str(10**6 + 1)):
        _refused(api("GET", "/api/v1/members", page=page), "page")
    _refused(api("GET", "/api/v1/invitations", per_page="201"), "per_page")
    _refused(api("GET", "/api/v1/invitations", status=""), "status")
    _refused(api("GET", "/api/v1/members", role=""), "role")
    _refused(api("GET", "/api/v1/members", department=""), "department")
    _refused(api("GET", "/api/v1/usage/summary", **{"from": "20261101"}), "from")  # fromisoformat takes it
    _refused(api("GET", "/api/v1/usage/summary", **{"from": "2026-W44-1"}), "from")
    _refused(api("GET", "/api/v1/usage/summary", group_by=""), "group_by")
    assert api("GET", "/api/v1/members", page="2", per_page="200").status_code == 200


def test_event_times_are_rfc3339_the_offset_may_be_left_out(api):
    """fromisoformat took dates without a time, basic and week formats; the
    document says RFC 3339 date-time (without an offset: UTC)."""
    event = {"provider": "openai", "model": "gpt-4o", "input_tokens": 1}
    for when in ("2026-11-20", "20261120T101500Z", "2026-11-20 10:15:00Z", "2026-W47-5", "2026-11-20T10:15Z"):
        _refused(api("POST", "/api/v1/usage", {**event, "event_id": when, "occurred_at": when}), "occurred_at")
    refused = _refused(api("POST", "/api/v1/usage", {**event, "event_id": "x", "occurred_at": "2025-02-30T10:00:00"}))
    assert refused["errors"]["occurred_at"].startswith("Not a moment on the calendar")
    # Yesterday: well inside the Free plan's 30 days of raw events (billing is on here), whatever the date.
    day = (clock.now() - timedelta(days=1)).date().isoformat()
    for when in (f"{day}t10:15:00.5z", f"{day}T10:15:00", f"{day}T12:15:00+02:00"):
        assert api("POST", "/api/v1/usage", {**event, "event_id": when, "occurred_at": when}).json["accepted"] == 1
    described = spec()["components"]["schemas"]["UsageEvent"]["properties"]["occurred_at"]
    assert {"format": "date-time"} in described["anyOf"] and "2015" in described["description"]


def test_usage_objects_are_bounded_like_token_counts(api):
    """A count beyond 64 bits from an unpriced model was a 500 when stored."""
    event = {"event_id": "u1", "provider": "acme", "model": "in-house"}
    _refused(api("POST", "/api/v1/usage", {**event, "usage": {"prompt_tokens": 10**19}}), "usage")
    _refused(api("POST", "/api/v1/usage", {**event, "usage": {"prompt_tokens": 1, "promptTokenCount": "x"}}), "usage")
    _refused(api("POST", "/api/v1/usage", {**event, "usage": {"total_tokens": 5}}), "usage")
    accepted = api("POST", "/api/v1/usage", {**event, "usage": {"prompt_tokens": 10**9, "total_tokens": "n/a"}})
    assert accepted.status_code == 200 and accepted.json["accepted"] == 1


def test_a_budgets_raises_stay_within_the_amount_limit(api):
    """Ten raises of $1,000,000,000 overflowed the sum of raises (a 500)."""
    budget_id = api("GET", "/api/v1/budgets").json["budgets"][0]["id"]
    assert api("POST", f"/api/v1/budgets/{budget_id}/raise", {"amount_usd": "999999900"}).status_code == 201
    _refused(api("POST", f"/api/v1/budgets/{budget_id}/raise", {"amount_usd": "0.000000001"}), "amount_usd")
    assert api("GET", f"/api/v1/budgets/{budget_id}").json["status"]["limit_usd"] == "1000000000"


def test_budget_fields_are_what_the_document_says(api):
    def create(**fields):
        return api("POST", "/api/v1/budgets", {"name": "B", "amount_usd": "10", **fields})

    _refused(create(amount_usd="1,000"), "amount_usd")
    _refused(create(amount_usd="0"), "amount_usd")
    _refused(create(amount_usd="1000000000.5"), "amount_usd")
    _refused(create(amount_usd=1e10), "amount_usd")
    _refused(create(period=""), "period")
    _refused(create(period=None), "period")
    _refused(create(enforcement=""), "enforcement")
    _refused(create(custom_start="soon"), "custom_start")  # even when the period is not custom
    _refused(create(period="custom", custom_start="20261201", custom_end="2026-12-31"), "custom_start")
    _refused(create(thresholds=[50] * 11), "thresholds")
    _refused(create(thresholds=[]), "thresholds")
    _refused(create(thresholds="50;80"), "thresholds")
    _refused(create(name=" " * 5 + "x" * 116), "name")
    made = create(amount_usd=12.5, thresholds="50, 80,100", department_id=None, custom_end=None)
    assert made.status_code == 201 and made.json["amount_usd"] == "12.5" and made.json["thresholds"] == [50, 80, 100]


def test_a_department_names_its_parent_one_way(api):
    _refused(api("POST", "/api/v1/departments", {"name": "Lab", "parent": "Research", "parent_id": None}), "parent")
    _refused(api("POST", "/api/v1/departments", {"name": "Lab", "parent_id": ""}), "parent_id")
    _refused(api("POST", "/api/v1/departments", {"name": "Lab", "parent_id": "Research"}), "parent_id")
    assert api("POST", "/api/v1/departments", {"name": "Lab", "parent": "R-1"}).status_code == 201


def test_the_document_states_the_limits_the_server_enforces():
    from costguardian.services.usage import ingest

    schemas = spec()["components"]["schemas"]
    event = schemas["UsageEvent"]["properties"]
    assert event["input_tokens"]["maximum"] == ingest.MAX_TOKENS == 10**9
    assert (event["event_id"]["maxLength"], event["provider"]["maxLength"], event["model"]["maxLength"]) == (
        128, 64, 200)
    assert event["event_id"]["pattern"] != event["user"]["pattern"]  # the first must not be blank
    batch = _operation("post", "/api/v1/usage")["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]
    assert batch["properties"]["events"]["maxItems"] == ingest.MAX_EVENTS
    budget = schemas["BudgetInput"]["properties"]
    assert budget["amount_usd"]["maximum"] == 10**9 and budget["amount_usd"]["exclusiveMinimum"] == 0
    assert budget["name"]["maxLength"] == 120 and budget["thresholds"]["oneOf"][0]["maxItems"] == 10
    members = {p["name"]: p["schema"] for p in _operation("get", "/api/v1/members")["parameters"]}
    assert members["page"]["maximum"] == 10**6 and members["per_page"]["maximum"] == 200
    summary = _operation("get", "/api/v1/usage/summary")
    assert "three years" in summary["description"]
    assert all(p["schema"].get("format") == "date" for p in summary["parameters"] if p["name"] in ("from", "to"))
    org = _operation("put", "/api/v1/organization")["requestBody"]["content"]["application/json"]["schema"]
    assert "Europe/Berlin" in org["properties"]["time_zone"]["enum"]

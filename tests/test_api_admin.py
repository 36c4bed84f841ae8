"""The platform admin JSON API (/api/v1/admin/…, and the seed's POST
/api/organizations): platform tokens only, scopes and the owner's current
role enforced, paginated and filtered lists, problem documents for bad input,
the console's rules for changes and deletes, and audit rows naming the token."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import time_machine

from costguardian.models import ApiKey, AuditLog, Membership, Organization, PlatformToken, User
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.platform import tokens
from costguardian.services.usage import ingest
from tests.support import SYSTEM, add_member

PROBLEM = "application/problem+json"
T0 = datetime(2026, 12, 2, 10, 0)

ENDPOINTS = [  # (method, path, body, scope)
    ("GET", "/api/v1/admin/users", None, tokens.READ),
    ("PUT", "/api/v1/admin/users/{member}", {"name": "Mia M."}, tokens.WRITE),
    ("DELETE", "/api/v1/admin/users/{member}?confirm=mia@acme.com", None, tokens.WRITE),
    ("GET", "/api/v1/admin/organizations", None, tokens.READ),
    ("POST", "/api/v1/admin/organizations", {"name": "Beta", "owner_email": "mia@acme.com"}, tokens.WRITE),
    ("POST", "/api/organizations", {"name": "Beta", "owner_email": "mia@acme.com"}, tokens.WRITE),
    ("GET", "/api/v1/admin/usage", None, tokens.READ),
]
WRITES = [e for e in ENDPOINTS if e[3] == tokens.WRITE]


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as moving:
        yield moving


@pytest.fixture
def people(app, make_user, make_org, clock):
    root = make_user("root@example.com", name="Root", platform_role="superadmin")
    other_root = make_user("ops@example.com", name="Ops", platform_role="superadmin")
    helper = make_user("help@example.com", name="Helper", platform_role="support")
    owner = make_user("owner@acme.com", name="Olga")
    member = make_user("mia@acme.com", name="Mia")
    org = make_org("Acme", owner=owner)
    add_member(org, member, "member")
    return {"root": root, "other_root": other_root, "support": helper, "owner": owner, "member": member, "org": org}


def _token(user, scopes=(tokens.READ, tokens.WRITE), days=None) -> str:
    return tokens.create(user, Actor(user=user), "script", list(scopes), days).plaintext


@pytest.fixture
def write_token(people):
    return _token(people["root"])


@pytest.fixture
def read_token(people):
    return _token(people["root"], [tokens.READ])


@pytest.fixture
def api(app):
    client = app.test_client()

    def call(method, path, token=None, body=None, raw=None, **query):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return client.open(path, method=method, headers=headers, data=data, content_type="application/json",
                           **({"query_string": query} if query else {}))

    return call


def _call(api, endpoint, token, people):
    method, path, body, _ = endpoint
    return api(method, path.format(member=people["member"].id), token, body)


def _problem(response, status: int, *fields) -> dict:
    assert response.status_code == status, (response.status_code, response.data)
    assert response.mimetype == PROBLEM
    body = response.json
    assert body["type"].startswith("http://localhost/docs/problems/") and body["detail"]
    assert set(fields) <= set(body.get("errors") or {}), body
    return body


# --- authentication and authorization ---------------------------------------------

@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e[0]} {e[1]}")
def test_every_endpoint_needs_a_valid_live_token(api, people, clock, endpoint):
    root = people["root"]
    revoked = tokens.create(root, Actor(user=root), "old", [tokens.READ, tokens.WRITE])
    tokens.revoke(revoked.token, Actor(user=root))
    expiring = _token(root, days=1)
    org_key = keys.create_key(people["org"], Actor(user=people["owner"]), "k", list(keys.SCOPES)).plaintext
    clock.move_to(T0 + timedelta(days=2))

    for token, kind in ((None, "missing-platform-token"), ("cgp_nope", "invalid-platform-token"),
                        ("cgp_abcdefghijkl_" + "x" * 43, "invalid-platform-token"),
                        (org_key, "invalid-platform-token"), (revoked.plaintext, "revoked-platform-token"),
                        (expiring, "expired-platform-token")):
        response = _call(api, endpoint, token, people)
        assert _problem(response, 401)["type"].endswith("/" + kind), (token, response.json)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert User.get_by_id(people["member"].id).name == "Mia" and Organization.select().count() == 1


def test_a_session_cookie_is_not_a_token(app, api, people):
    from tests.support import Client

    client = Client(app)
    client.sign_in(people["root"].email)
    assert client.get("/api/v1/admin/users").status_code == 401


@pytest.mark.parametrize("endpoint", WRITES, ids=lambda e: f"{e[0]} {e[1]}")
def test_writes_need_the_write_scope_and_a_superadmin_owner(api, people, read_token, endpoint):
    assert _problem(_call(api, endpoint, read_token, people), 403)["type"].endswith("/insufficient-scope")
    support = _token(people["support"], [tokens.READ])
    assert _problem(_call(api, endpoint, support, people), 403)["type"].endswith("/insufficient-scope")
    # a token scoped to write whose owner is (or became) support never writes
    demoted = _token(people["other_root"])
    User.update(platform_role="support").where(User.id == people["other_root"].id).execute()
    assert _problem(_call(api, endpoint, demoted, people), 403)["type"].endswith("/not-permitted")
    assert User.get_by_id(people["member"].id).name == "Mia" and Organization.select().count() == 1


def test_a_support_admins_read_token_reads(api, people):
    token = _token(people["support"], [tokens.READ])
    assert api("GET", "/api/v1/admin/users", token).status_code == 200
    assert api("GET", "/api/v1/admin/organizations", token).status_code == 200
    assert api("GET", "/api/v1/admin/usage", token).status_code == 200


def test_an_owner_who_lost_the_platform_role_or_was_disabled_is_refused(api, people, write_token):
    assert api("GET", "/api/v1/admin/users", write_token).status_code == 200
    User.update(platform_role="").where(User.id == people["root"].id).execute()
    assert _problem(api("GET", "/api/v1/admin/users", write_token), 403)["type"].endswith("/not-permitted")
    User.update(platform_role="superadmin", is_disabled=True).where(User.id == people["root"].id).execute()
    assert _problem(api("GET", "/api/v1/admin/users", write_token), 403)["type"].endswith("/not-permitted")


def test_use_is_recorded_on_the_token(api, people, read_token, clock):
    assert api("GET", "/api/v1/admin/users", read_token).status_code == 200
    token = PlatformToken.get(PlatformToken.prefix == read_token.split("_")[1])
    assert token.last_used_at == T0


# --- users ------------------------------------------------------------------------

def test_users_are_listed_with_pages_and_filters(api, people, read_token, make_user):
    for i in range(5):
        make_user(f"extra{i}@acme.com", name=f"Extra {i}")
    User.update(is_disabled=True).where(User.email == "extra0@acme.com").execute()

    first = api("GET", "/api/v1/admin/users", read_token, per_page="3").json
    assert (first["page"], first["per_page"], first["total"]) == (1, 3, 10) and len(first["users"]) == 3
    second = api("GET", "/api/v1/admin/users", read_token, per_page="3", page="4").json
    assert len(second["users"]) == 1
    seen = {u["email"] for p in range(1, 5)
            for u in api("GET", "/api/v1/admin/users", read_token, per_page="3", page=str(p)).json["users"]}
    assert len(seen) == 10

    def emails(**query):
        return sorted(u["email"] for u in api("GET", "/api/v1/admin/users", read_token, **query).json["users"])

    assert emails(q="EXTRA1") == ["extra1@acme.com"]
    assert emails(role="support") == ["help@example.com"]
    assert emails(role="superadmin") == ["ops@example.com", "root@example.com"]
    assert emails(disabled="true") == ["extra0@acme.com"]
    assert emails(org=str(people["org"].id)) == ["mia@acme.com", "owner@acme.com"]
    assert emails(active_days="never") == emails()  # nobody has been seen in this test
    mia = next(u for u in api("GET", "/api/v1/admin/users", read_token, q="mia").json["users"])
    assert mia["organizations"] == [{"id": people["org"].id, "name": "Acme", "role": "member"}]
    assert mia["platform_role"] == "" and mia["disabled"] is False and mia["created_at"].endswith("Z")


@pytest.mark.parametrize("query, field", [
    ({"per_page": "101"}, "per_page"), ({"per_page": "0"}, "per_page"), ({"page": "+1"}, "page"),
    ({"role": "admin"}, "role"), ({"disabled": "yes"}, "disabled"), ({"active_days": "0"}, "active_days"),
    ({"active_days": "soon"}, "active_days"), ({"org": "acme"}, "org"), ({"q": "x" * 201}, "q"),
    ({"q": "a\u0000"}, "q"),
])
def test_bad_user_filters_are_problems(api, people, read_token, query, field):
    _problem(api("GET", "/api/v1/admin/users", read_token, **query), 422, field)


def test_put_changes_a_user_and_audits_with_the_token(api, people, write_token):
    member = people["member"]
    response = api("PUT", f"/api/v1/admin/users/{member.id}", write_token,
                   {"name": "Mia Muster", "platform_role": "support"})
    assert response.status_code == 200, response.json
    assert response.json["name"] == "Mia Muster" and response.json["platform_role"] == "support"
    assert User.get_by_id(member.id).platform_role == "support"
    row = AuditLog.get(AuditLog.action == "user.platform_role_changed")
    assert row.actor_id == people["root"].id and row.detail["platform_token"] == write_token.split("_")[1]
    assert (row.detail["before"], row.detail["after"]) == ("", "support")


@pytest.mark.parametrize("body, field", [
    ({"name": 5}, "name"), ({"name": "x" * 121}, "name"), ({"email": ""}, "email"), ({"email": None}, "email"),
    ({"email": "not an address"}, "email"), ({"email": "owner@acme.com"}, "email"),
    ({"platform_role": "owner"}, "platform_role"), ({"platform_role": None}, "platform_role"),
    ({"nickname": "M"}, "nickname"), ({"name": "M\u0000"}, "name"),
])
def test_put_bad_input_is_a_problem_with_field_errors(api, people, write_token, body, field):
    _problem(api("PUT", f"/api/v1/admin/users/{people['member'].id}", write_token, body), 422, field)
    assert User.get_by_id(people["member"].id).name == "Mia"


def test_put_refuses_your_own_role_and_bodies_that_are_not_objects(api, people, write_token):
    root = people["root"]
    _problem(api("PUT", f"/api/v1/admin/users/{root.id}", write_token, {"platform_role": "support"}), 422,
             "platform_role")
    _problem(api("PUT", f"/api/v1/admin/users/{root.id}", write_token, ["x"]), 422)
    _problem(api("PUT", f"/api/v1/admin/users/{root.id}", write_token, raw="{nope"), 422)
    assert _problem(api("PUT", "/api/v1/admin/users/999999", write_token, {"name": "x"}), 404)


def test_delete_keeps_the_consoles_invariants_end_to_end(api, people, write_token):
    owner, member, org = people["owner"], people["member"], people["org"]
    key = keys.create_key(org, Actor(user=member), "mia's key", ["ingest"])
    # the last owner of an organization: transfer ownership first
    refused = _problem(api("DELETE", f"/api/v1/admin/users/{owner.id}", write_token, confirm=owner.email), 409)
    assert "Acme" in refused["detail"]
    # yourself
    _problem(api("DELETE", f"/api/v1/admin/users/{people['root'].id}", write_token, confirm="root@example.com"), 409)
    # the typed confirmation
    _problem(api("DELETE", f"/api/v1/admin/users/{member.id}", write_token), 422, "confirm")
    _problem(api("DELETE", f"/api/v1/admin/users/{member.id}", write_token, confirm="someone@acme.com"), 422,
             "confirm")
    assert User.get_or_none(User.id == member.id) is not None

    response = api("DELETE", f"/api/v1/admin/users/{member.id}", write_token, confirm="MIA@acme.com")
    assert response.status_code == 204
    assert User.get_or_none(User.id == member.id) is None
    assert Membership.select().where(Membership.user == member.id).count() == 0
    kept = ApiKey.get_by_id(key.key.id)
    assert kept.created_by_id is None and kept.revoked_at is None  # the organization's key keeps working
    row = AuditLog.get(AuditLog.action == "user.deleted")
    assert row.detail["email"] == "mia@acme.com" and row.detail["platform_token"] == write_token.split("_")[1]
    assert _problem(api("DELETE", f"/api/v1/admin/users/{member.id}", write_token, confirm="mia@acme.com"), 404)


# --- organizations ----------------------------------------------------------------

def test_organizations_are_listed_with_pages_and_filters(api, people, read_token, make_org):
    from costguardian.services.platform import orgs

    for name in ("Beta", "Gamma", "Delta"):
        make_org(name, owner=people["owner"])
    orgs.suspend(Organization.get(Organization.name == "Gamma"), "unpaid invoices", SYSTEM)

    body = api("GET", "/api/v1/admin/organizations", read_token, per_page="2").json
    assert (body["total"], len(body["organizations"]), body["per_page"]) == (4, 2, 2)
    row = body["organizations"][0]
    assert set(row) == {"id", "name", "slug", "plan", "plan_code", "members", "events_month", "status",
                        "spend_month_usd", "created_at", "delete_after"}

    def names(**query):
        return sorted(o["name"] for o in api("GET", "/api/v1/admin/organizations", read_token, **query)
                      .json["organizations"])

    assert names(q="amm") == ["Gamma"]
    assert names(status="suspended") == ["Gamma"]
    assert names(status="active") == ["Acme", "Beta", "Delta"]
    assert names(plan="free") == ["Acme", "Beta", "Delta", "Gamma"]
    assert names(plan="no-such-plan") == []
    _problem(api("GET", "/api/v1/admin/organizations", read_token, status="gone"), 422, "status")
    _problem(api("GET", "/api/v1/admin/organizations", read_token, plan="Not A Code"), 422, "plan")
    _problem(api("GET", "/api/v1/admin/organizations", read_token, per_page="101"), 422, "per_page")


@pytest.mark.parametrize("path", ["/api/v1/admin/organizations", "/api/organizations"])
def test_post_creates_an_organization(api, people, write_token, path):
    response = api("POST", path, write_token, {"name": "Beta Labs", "owner_email": "MIA@acme.com",
                                               "time_zone": "Europe/Berlin"})
    assert response.status_code == 201, response.json
    org = Organization.get_by_id(response.json["id"])
    assert (org.name, org.slug, org.time_zone) == ("Beta Labs", response.json["slug"], "Europe/Berlin")
    assert Membership.get(Membership.organization == org).user_id == people["member"].id
    row = AuditLog.get(AuditLog.action == "org.created", AuditLog.organization == org)
    assert row.actor_id == people["root"].id and row.detail["platform_token"] == write_token.split("_")[1]


@pytest.mark.parametrize("body, field", [
    ({"owner_email": "mia@acme.com"}, "name"), ({"name": " ", "owner_email": "mia@acme.com"}, "name"),
    ({"name": "Beta"}, "owner_email"), ({"name": "Beta", "owner_email": "nobody@acme.com"}, "owner_email"),
    ({"name": "Beta", "owner_email": "mia@acme.com", "time_zone": "Mars/Olympus"}, "time_zone"),
    ({"name": "Beta", "owner_email": "mia@acme.com", "plan": "team"}, "plan"),
])
def test_post_bad_input_is_a_problem(api, people, write_token, body, field):
    _problem(api("POST", "/api/v1/admin/organizations", write_token, body), 422, field)
    assert Organization.select().count() == 1


# --- usage ------------------------------------------------------------------------

def _event(i: int, provider="openai", model="gpt-4o-mini", day=1):
    return {"event_id": f"e{i}", "provider": provider, "model": model, "input_tokens": 1000, "output_tokens": 100,
            "occurred_at": (T0 - timedelta(days=day)).isoformat() + "Z"}


def test_usage_is_grouped_across_organizations(api, people, read_token, make_org):
    beta = make_org("Beta", owner=people["owner"])
    ingest.ingest(people["org"], None, [_event(1), _event(2), _event(3, "anthropic", "claude-sonnet-4-5", day=2)])
    ingest.ingest(beta, None, [_event(1, day=3), _event(2, "acme", "in-house", day=40)])  # unpriced, old

    by_day = api("GET", "/api/v1/admin/usage", read_token).json
    assert (by_day["start"], by_day["end"], by_day["group_by"]) == ("2026-11-03", "2026-12-02", "day")
    assert [(r["key"], r["requests"]) for r in by_day["rows"]] == [
        ("2026-11-29", 1), ("2026-11-30", 1), ("2026-12-01", 2)]
    assert by_day["total"] == 3 and by_day["totals"]["requests"] == 4

    by_org = api("GET", "/api/v1/admin/usage", read_token, group_by="organization").json
    assert [(r["label"], r["requests"]) for r in by_org["rows"]] == [("Acme", 3), ("Beta", 1)]
    assert by_org["rows"][0]["slug"] == "acme" and by_org["rows"][0]["key"] == people["org"].id

    by_model = api("GET", "/api/v1/admin/usage", read_token, group_by="model", per_page="1").json
    assert by_model["total"] == 2 and len(by_model["rows"]) == 1
    assert by_model["rows"][0]["provider"] in ("openai", "anthropic")

    wide = api("GET", "/api/v1/admin/usage", read_token, group_by="provider", start="2026-10-01").json
    providers = {r["key"]: r for r in wide["rows"]}
    assert set(providers) == {"openai", "anthropic", "acme"} and providers["acme"]["unpriced_requests"] == 1
    assert providers["acme"]["cost_usd"] == "0" and wide["totals"]["requests"] == 5


@pytest.mark.parametrize("query, field", [
    ({"start": "2026-13-01"}, "start"), ({"start": "20261101"}, "start"), ({"end": "1999-12-31"}, "end"),
    ({"start": "2026-12-02", "end": "2026-12-01"}, "end"), ({"start": "2020-01-01", "end": "2026-01-01"}, "end"),
    ({"group_by": "user"}, "group_by"), ({"per_page": "500"}, "per_page"),
])
def test_bad_usage_parameters_are_problems(api, people, read_token, query, field):
    _problem(api("GET", "/api/v1/admin/usage", read_token, **query), 422, field)


def test_the_document_describes_the_admin_api(app):
    document = app.test_client().get("/api/openapi.json").json
    assert document["components"]["securitySchemes"]["platformToken"]["scheme"] == "bearer"
    for method, path, _, _ in ENDPOINTS:
        path = path.split("?")[0].replace("{member}", "{user_id}")
        operation = document["paths"][path][method.lower()]
        assert operation["security"] == [{"platformToken": []}], path
    paging = {p["name"]: p["schema"] for p in document["paths"]["/api/v1/admin/users"]["get"]["parameters"]}
    assert paging["per_page"]["maximum"] == 100

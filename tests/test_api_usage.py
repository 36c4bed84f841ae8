"""POST /api/v1/usage and GET /api/v1/usage/summary: the public ingest contract."""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from costguardian import clock
from costguardian.models import ApiKey, UsageEvent, UsageRollup
from costguardian.services import keys
from tests.support import SYSTEM

PROBLEM = "application/problem+json"


@pytest.fixture
def org(make_org):
    return make_org("Acme")


@pytest.fixture
def ingest_key(org):
    keys._last_written.clear()
    return keys.create_key(org, SYSTEM, "ingest", ["ingest"]).plaintext


@pytest.fixture
def read_key(org):
    return keys.create_key(org, SYSTEM, "read", ["read"]).plaintext


@pytest.fixture
def api(app):
    client = app.test_client()

    def call(method, path, key=None, body=None, raw=None, content_type="application/json", **query):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return client.open(path, method=method, headers=headers, data=data, content_type=content_type,
                           query_string=query)

    return call


def event(i=1, **fields):
    body = {"event_id": f"evt-{i}", "provider": "openai", "model": "gpt-4o", "input_tokens": 1000,
            "cache_read_tokens": 200, "output_tokens": 100}
    body.update(fields)
    return body


def test_single_event_is_priced_and_stored(api, ingest_key, org):
    response = api("POST", "/api/v1/usage", ingest_key, event(occurred_at="2026-11-20T10:15:00Z"))
    assert response.status_code == 200
    # 800 uncached × $2.50 + 200 cached × $1.25 + 100 out × $10, per million = $0.00325
    assert response.json == {"accepted": 1, "duplicates": 0, "rejected": 0, "results": [
        {"index": 0, "event_id": "evt-1", "status": "accepted", "provider": "openai", "model": "gpt-4o",
         "cost_usd": "0.00325", "priced": True}]}
    stored = UsageEvent.get(UsageEvent.event_id == "evt-1")
    assert stored.cost_nanos == 3_250_000 and stored.organization_id == org.id
    assert stored.occurred_at.isoformat() == "2026-11-20T10:15:00"
    rollup = UsageRollup.get()
    assert (rollup.requests, rollup.cost_nanos, rollup.hour.hour) == (1, 3_250_000, 10)


def test_batch_mixes_accepted_duplicate_and_rejected(api, ingest_key):
    body = {"events": [event(1), event(2), event(1), event(3, input_tokens=-5), "not an object"]}
    response = api("POST", "/api/v1/usage", ingest_key, body)
    assert response.status_code == 200
    data = response.json
    assert (data["accepted"], data["duplicates"], data["rejected"]) == (2, 1, 2)
    assert [r["status"] for r in data["results"]] == ["accepted", "accepted", "duplicate", "rejected", "rejected"]
    assert data["results"][3]["errors"] == {"input_tokens": "Must not be negative."}
    assert UsageEvent.select().count() == 2


def test_retried_batch_never_double_counts(api, ingest_key):
    body = {"events": [event(i) for i in range(1, 21)]}
    first = api("POST", "/api/v1/usage", ingest_key, body).json
    again = api("POST", "/api/v1/usage", ingest_key, body).json
    assert first["accepted"] == 20 and again["duplicates"] == 20 and again["accepted"] == 0
    assert UsageEvent.select().count() == 20
    assert sum(r.requests for r in UsageRollup.select()) == 20
    assert sum(r.cost_nanos for r in UsageRollup.select()) == 20 * 3_250_000


def test_same_event_id_in_another_org_is_not_a_duplicate(api, ingest_key, make_org):
    other = make_org("Globex")
    other_key = keys.create_key(other, SYSTEM, "k", ["ingest"]).plaintext
    assert api("POST", "/api/v1/usage", ingest_key, event(1)).json["accepted"] == 1
    assert api("POST", "/api/v1/usage", other_key, event(1)).json["accepted"] == 1


def test_unpriced_model_is_stored_with_unknown_cost_not_zero(api, ingest_key):
    data = api("POST", "/api/v1/usage", ingest_key, event(provider="acme-internal", model="llama-ft-7")).json
    assert data["results"][0]["cost_usd"] is None and data["results"][0]["priced"] is False
    stored = UsageEvent.get()
    assert stored.cost_nanos is None and stored.priced_by == ""
    rollup = UsageRollup.get()
    assert (rollup.cost_nanos, rollup.unpriced_requests) == (0, 1)


@pytest.mark.parametrize("usage, provider, model, expected", [
    # Anthropic: input_tokens excludes cache; 100 × $3 + 1000 read × $0.30 + 20 out × $15 = $0.0009
    ({"input_tokens": 100, "cache_read_input_tokens": 1000, "output_tokens": 20}, "anthropic",
     "claude-sonnet-4-5", "0.0009"),
    # OpenAI chat: prompt_tokens includes the 200 cached: same as the token-count example
    ({"prompt_tokens": 1000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 200}},
     "openai", "gpt-4o", "0.00325"),
    # Gemini: 1000 prompt × $0.10 + 50 out × $0.40 = $0.00012
    ({"promptTokenCount": 1000, "candidatesTokenCount": 50}, "google", "models/gemini-2.0-flash", "0.00012"),
])
def test_provider_usage_objects_are_converted(api, ingest_key, usage, provider, model, expected):
    body = {"event_id": "u1", "provider": provider, "model": model, "usage": usage,
            "occurred_at": "2026-11-20T10:00:00Z"}
    data = api("POST", "/api/v1/usage", ingest_key, body).json
    assert data["results"][0]["cost_usd"] == expected, data


def test_key_attribution_defaults_and_event_overrides(api, org, make_user):
    from costguardian.models import Department
    from tests.support import add_member

    dev = make_user("dev@acme.com")
    add_member(org, dev, "member")
    platform = Department.create(organization=org, name="Platform")
    Department.create(organization=org, name="Research")
    bound = keys.create_key(org, SYSTEM, "bound", ["ingest"], user=dev, department=platform).plaintext
    api("POST", "/api/v1/usage", bound, {"events": [event(1), event(2, user="cust-42", department="research")]})
    first, second = UsageEvent.select().order_by(UsageEvent.event_id)
    assert (first.user_ref, first.department.name) == ("dev@acme.com", "Platform")
    assert (second.user_ref, second.department.name) == ("cust-42", "Research")
    data = api("POST", "/api/v1/usage", bound, event(3, department="Nope")).json
    assert data["errors"] == {"department": "No department named 'Nope' in this organization."}


@pytest.mark.parametrize("fields, errors", [
    ({"input_tokens": "1000"}, {"input_tokens": "Must be a whole number."}),
    ({"input_tokens": 1.5}, {"input_tokens": "Must be a whole number."}),
    ({"output_tokens": True}, {"output_tokens": "Must be a whole number."}),
    ({"output_tokens": -1}, {"output_tokens": "Must not be negative."}),
    ({"colour": "blue"}, {"colour": "Unknown field."}),
    ({"event_id": ""}, {"event_id": "Must not be empty."}),
    ({"event_id": "x" * 129}, {"event_id": "At most 128 characters."}),
    ({"provider": None}, {"provider": "Required."}),
    ({"model": 42}, {"model": "Must be a string."}),
    ({"occurred_at": "yesterday"}, {"occurred_at": "Not an ISO 8601 timestamp, e.g. 2026-11-26T14:03:00Z."}),
    ({"cache_read_tokens": 2000}, {"input_tokens": "Must include the cached tokens: input_tokens counts every "
                                                   "prompt token, so cache_read_tokens + cache_write_tokens "
                                                   "cannot exceed it."}),
    ({"tags": "team"}, {"tags": "Must be an object of key/value strings or a list of strings."}),
    ({"batch": "yes"}, {"batch": "Must be true or false."}),
    ({"usage": {"prompt_tokens": 5}}, {"usage": "Send either 'usage' or token counts (input_tokens, "
                                                "output_tokens, cache_read_tokens), not both."}),
])
def test_bad_single_event_is_422_problem_with_field_errors(api, ingest_key, fields, errors):
    response = api("POST", "/api/v1/usage", ingest_key, event(**fields))
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert response.json["type"] == "http://localhost/docs/problems/invalid-event"
    assert response.json["errors"] == errors
    assert UsageEvent.select().count() == 0


def test_future_timestamps_are_rejected_but_slight_clock_skew_is_not(api, ingest_key):
    soon = (clock.now() + timedelta(minutes=2)).isoformat() + "Z"
    later = (clock.now() + timedelta(hours=2)).isoformat() + "Z"
    data = api("POST", "/api/v1/usage", ingest_key, {"events": [event(1, occurred_at=soon),
                                                                 event(2, occurred_at=later)]}).json
    assert [r["status"] for r in data["results"]] == ["accepted", "rejected"]
    assert "future" in data["results"][1]["errors"]["occurred_at"]


def test_back_dated_events_land_in_their_own_hour(api, ingest_key):
    api("POST", "/api/v1/usage", ingest_key, event(1, occurred_at="2026-01-15T23:59:59+02:00"))
    assert UsageRollup.get().hour.isoformat() == "2026-01-15T21:00:00"


@pytest.mark.parametrize("raw, content_type, status, kind", [
    ("{not json", "application/json", 422, "malformed-json"),
    ("[1, 2]", "application/json", 422, "invalid-body"),
    ('{"events": {}}', "application/json", 422, "invalid-body"),
    ('{"events": []}', "application/json", 422, "invalid-body"),
    ('{"events": [], "extra": 1}', "application/json", 422, "invalid-body"),
    ("event_id=1", "application/x-www-form-urlencoded", 415, "unsupported-media-type"),
])
def test_malformed_requests_get_problem_documents(api, ingest_key, raw, content_type, status, kind):
    response = api("POST", "/api/v1/usage", ingest_key, raw=raw, content_type=content_type)
    assert response.status_code == status and response.mimetype == PROBLEM
    assert response.json["type"].endswith("/" + kind) and response.json["detail"]


def test_too_many_events_is_refused_whole(api, ingest_key):
    response = api("POST", "/api/v1/usage", ingest_key, {"events": [event(i) for i in range(1001)]})
    assert response.status_code == 422 and response.json["type"].endswith("/too-many-events")
    assert UsageEvent.select().count() == 0


def test_oversize_body_is_413(api, ingest_key):
    raw = json.dumps({"events": [event(1, model="m" * 100)], "pad": "x" * (5 * 1024 * 1024)})
    response = api("POST", "/api/v1/usage", ingest_key, raw=raw)
    assert response.status_code == 413 and response.mimetype == PROBLEM
    assert response.json["type"].endswith("/payload-too-large")


def test_authentication_failures(api, org, ingest_key, read_key):
    response = api("POST", "/api/v1/usage", None, event())
    assert response.status_code == 401 and response.json["type"].endswith("/missing-api-key")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert api("POST", "/api/v1/usage", "cg_live_notakey", event()).json["type"].endswith("/invalid-api-key")
    tampered = ingest_key[:-4] + "AAAA"
    assert api("POST", "/api/v1/usage", tampered, event()).status_code == 401
    response = api("POST", "/api/v1/usage", read_key, event())
    assert response.status_code == 403 and response.json["type"].endswith("/insufficient-scope")
    key = ApiKey.get(ApiKey.name == "ingest")
    key.expires_at = clock.now() - timedelta(seconds=1)
    key.save()
    assert api("POST", "/api/v1/usage", ingest_key, event()).json["type"].endswith("/expired-api-key")
    keys.revoke_key(key, SYSTEM)
    response = api("POST", "/api/v1/usage", ingest_key, event())
    assert response.status_code == 401 and response.json["type"].endswith("/revoked-api-key")
    assert UsageEvent.select().count() == 0


def test_session_cookie_does_not_authenticate_the_api(owner_client):
    client, _, _ = owner_client
    response = client.http.post("/api/v1/usage", json=event())
    assert response.status_code == 401


def test_summary_groups_and_periods(api, ingest_key, read_key, org):
    org.time_zone = "America/New_York"
    org.save()
    api("POST", "/api/v1/usage", ingest_key, {"events": [
        event(1, occurred_at="2026-11-02T03:00:00Z"),  # Nov 1 in New York
        event(2, occurred_at="2026-11-02T15:00:00Z"),
        event(3, model="gpt-4o-mini", occurred_at="2026-11-02T15:30:00Z", cache_read_tokens=0),
    ]})
    data = api("GET", "/api/v1/usage/summary", read_key, **{"from": "2026-11-01", "to": "2026-11-30",
                                                            "group_by": "model", "interval": "day"}).json
    assert data["time_zone"] == "America/New_York" and data["currency"] == "USD"
    assert [(r["period"], r["key"], r["requests"]) for r in data["rows"]] == [
        ("2026-11-01", "gpt-4o", 1), ("2026-11-02", "gpt-4o", 1), ("2026-11-02", "gpt-4o-mini", 1)]
    # gpt-4o-mini: 1000 in × $0.15 + 100 out × $0.60 = $0.00021
    assert data["total"]["cost_usd"] == "0.00671" and data["total"]["requests"] == 3
    totals = api("GET", "/api/v1/usage/summary", read_key, **{"from": "2026-11-01", "to": "2026-11-30"}).json
    assert totals["rows"] == [dict(totals["total"])]


@pytest.mark.parametrize("query, field", [
    ({"from": "2026-13-01"}, "from"), ({"to": "soon"}, "to"), ({"group_by": "colour"}, "group_by"),
    ({"interval": "hourly"}, "interval"), ({"from": "2026-11-10", "to": "2026-11-01"}, "to"),
])
def test_summary_rejects_bad_parameters(api, read_key, query, field):
    response = api("GET", "/api/v1/usage/summary", read_key, **query)
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert field in response.json["errors"]


def test_summary_needs_read_scope(api, ingest_key):
    assert api("GET", "/api/v1/usage/summary", ingest_key).status_code == 403


def test_openapi_document_describes_every_api_route(app, client):
    document = client.get("/api/openapi.json").json
    assert document["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    routes = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())  # Flask's <int:x> is {x}
              for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/api/v") for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes and routes <= documented
    assert document["components"]["schemas"]["UsageEvent"]["additionalProperties"] is False


def test_absurd_costs_and_token_counts_are_rejected_per_event(api, ingest_key, org):
    from datetime import datetime

    from costguardian.models import PriceOverride

    PriceOverride.create(organization=org, provider="acme", model="gold", effective_from=datetime(2020, 1, 1),
                         input_nanos_per_mtok=10_000 * 10**9, output_nanos_per_mtok=10_000 * 10**9)
    data = api("POST", "/api/v1/usage", ingest_key, {"events": [
        event(1, output_tokens=10**9 + 1),
        event(2, provider="acme", model="gold", input_tokens=10**9, cache_read_tokens=0),
        event(3)]}).json
    assert [r["status"] for r in data["results"]] == ["rejected", "rejected", "accepted"]
    assert data["results"][0]["errors"] == {"output_tokens": "Must be at most 1,000,000,000."}
    assert "over the $100,000 limit" in data["results"][1]["errors"]["cost"]
    assert UsageEvent.select().count() == 1


@pytest.mark.parametrize("fields, field", [
    ({"event_id": "bad\u0000id"}, "event_id"),
    ({"event_id": "bad\ud800id"}, "event_id"),
    ({"tags": ["ok", "bad\udfff"]}, "tags"),
    ({"user": "nul\u0000"}, "user"),
    ({"occurred_at": "9999-12-31T23:00:00-05:00"}, "occurred_at"),
    ({"occurred_at": "0001-01-01T00:00:00+05:00"}, "occurred_at"),
])
def test_unstorable_values_reject_only_their_event(api, ingest_key, fields, field):
    raw = json.dumps({"events": [event(1, **fields), event(2)]}, ensure_ascii=True)
    data = api("POST", "/api/v1/usage", ingest_key, raw=raw).json
    assert [r["status"] for r in data["results"]] == ["rejected", "accepted"]
    assert field in data["results"][0]["errors"]


def test_a_provider_name_that_grows_when_lower_cased_still_fits(api, ingest_key):
    data = api("POST", "/api/v1/usage", ingest_key, event(1, provider="\u0130" * 64)).json
    assert data["results"][0]["status"] == "accepted"
    assert len(UsageEvent.get().provider) <= 64


def test_deeply_nested_json_is_malformed_not_an_error(api, ingest_key):
    raw = "[" * 100_000 + "]" * 100_000
    response = api("POST", "/api/v1/usage", ingest_key, raw=raw)
    assert response.status_code == 422 and response.json["type"].endswith("/malformed-json")


@pytest.mark.parametrize("query", [{"from": "9999-01-01", "to": "9999-12-31"}, {"from": "0001-01-01"}])
def test_summary_refuses_dates_out_of_range(api, read_key, query):
    response = api("GET", "/api/v1/usage/summary", read_key, **query)
    assert response.status_code == 422 and "between 2000 and 2100" in response.json["detail"]

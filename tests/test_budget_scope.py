"""A budget that can never fire is caught (issue 18 §2): the scope's provider
and model are offered from the price catalog and the organization's usage; an
unknown value is refused with a suggestion unless confirmed (form checkbox,
API `confirm_scope`); a scope that matched no usage in 90 days is flagged."""
from __future__ import annotations

import json
from datetime import timedelta

from costguardian import clock
from costguardian.models import Budget
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.budgets import budgets, scope_check
from costguardian.services.usage import ingest
from tests.support import SYSTEM


def _event(event_id, *, days_ago=0, provider="openai", model="gpt-4o"):
    at = clock.now() - timedelta(days=days_ago, minutes=1)
    return {"event_id": event_id, "provider": provider, "model": model, "input_tokens": 1000,
            "occurred_at": at.isoformat() + "Z"}


def _form(**scope):
    return {"name": "Scoped", "amount_usd": "100", "period": "monthly", "thresholds": "50, 80, 100",
            "enforcement": "soft", "notify_roles": ["owner"], **scope}


def test_the_form_offers_catalog_and_recorded_providers_and_models(owner_client):
    client, _, org = owner_client
    ingest.ingest(org, None, [_event("a", provider="mycorp", model="inhouse-7b")])
    html = client.get("/budgets/new").get_data(as_text=True)
    providers = html[html.index('id="budget-providers"'):]
    assert '<option value="openai">' in providers and '<option value="mycorp">' in providers
    assert '<option value="inhouse-7b">' in html[html.index('id="budget-models"'):]


def test_an_unknown_provider_is_refused_with_a_suggestion_until_confirmed(owner_client):
    client, _, org = owner_client
    refused = client.post("/budgets/", data=_form(provider="opnai"))
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert "did you mean openai?" in html and 'data-testid="confirm-scope"' in html
    assert not Budget.select().exists()
    accepted = client.post("/budgets/", data=_form(provider="opnai", confirm_scope="on"))
    assert accepted.status_code == 302
    budget = Budget.get()
    assert budget.scope_provider == "opnai"
    # Saving it again does not ask about the value it already has.
    again = client.post(f"/budgets/{budget.id}", data=_form(provider="opnai", name="Renamed"))
    assert again.status_code == 302 and Budget.get().name == "Renamed"


def test_an_unknown_model_gets_a_suggestion_and_known_ones_pass(owner_client):
    client, _, org = owner_client
    refused = client.post("/budgets/", data=_form(provider="openai", model="gpt-4oo"))
    assert refused.status_code == 422 and "did you mean gpt-4o" in refused.get_data(as_text=True)
    assert client.post("/budgets/", data=_form(provider="openai", model="gpt-4o")).status_code == 302
    ingest.ingest(org, None, [_event("r", provider="acme-ai", model="rocket-1")])  # recorded, not in the catalog
    assert client.post("/budgets/", data=_form(name="Rocket", provider="acme-ai", model="rocket-1")).status_code == 302


def test_the_api_refuses_an_unknown_scope_unless_confirm_scope_is_true(app, make_org, make_user):
    owner = make_user("owner@acme.com")
    org = make_org("Acme", owner=owner)
    keys._last_written.clear()
    key = keys.create_key(org, Actor(user=owner), "automation", ["admin", "read"]).plaintext
    client = app.test_client()

    def post(body):
        return client.post("/api/v1/budgets", data=json.dumps(body), content_type="application/json",
                           headers={"Authorization": f"Bearer {key}"})

    refused = post({"name": "B", "amount_usd": "10", "provider": "anthropc"})
    assert refused.status_code == 422 and refused.mimetype == "application/problem+json"
    message = refused.get_json()["errors"]["provider"]
    assert "did you mean anthropic?" in message and "confirm_scope" in message
    assert post({"name": "B", "amount_usd": "10", "provider": "anthropc", "confirm_scope": True}).status_code == 201
    assert post({"name": "C", "amount_usd": "10", "confirm_scope": "yes"}).status_code == 422  # a boolean only


def test_a_budget_whose_scope_saw_no_usage_for_90_days_is_flagged(owner_client):
    client, _, org = owner_client
    ingest.ingest(org, None, [_event("old", days_ago=120, provider="mistral", model="mistral-large-latest"),
                              _event("new", provider="openai")])
    quiet = budgets.create(org, SYSTEM, {"name": "Quiet", "amount_usd": "10", "provider": "mistral"})
    busy = budgets.create(org, SYSTEM, {"name": "Busy", "amount_usd": "10", "provider": "openai"})
    whole = budgets.create(org, SYSTEM, {"name": "Whole", "amount_usd": "10"})
    assert scope_check.quiet_budgets([quiet, busy, whole]) == {quiet.id}
    listing = client.get("/budgets/").get_data(as_text=True)
    assert listing.count('data-testid="scope-quiet"') == 1
    assert 'data-testid="scope-quiet"' in client.get(f"/budgets/{quiet.id}").get_data(as_text=True)
    assert 'data-testid="scope-quiet"' not in client.get(f"/budgets/{busy.id}").get_data(as_text=True)

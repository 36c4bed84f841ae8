"""A suspended organization: its members see why, its ingest API answers 403
with an organization-suspended problem document, its gateway answers 403 in
the caller's provider format; nothing is deleted, and reinstating it lets
every call through again."""
from __future__ import annotations

import httpx
import pytest

from costguardian.models import ApiKey, AuditLog, Organization, UsageEvent
from costguardian.services import keys
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.services.platform import orgs as platform_orgs
from tests.support import SYSTEM

EVENT = {"event_id": "e1", "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 100, "output_tokens": 20}
REASON = "Unpaid invoices since March"


@pytest.fixture
def acme(owner_client):
    client, user, org = owner_client
    ingest_key = keys.create_key(org, SYSTEM, "ingest", ["ingest"]).plaintext
    gateway_key = keys.create_key(org, SYSTEM, "gw", ["gateway"]).plaintext
    return client, org, ingest_key, gateway_key


def _ingest(client, key: str, event: dict = EVENT):
    return client.http.post("/api/v1/usage", json=event, headers={"Authorization": f"Bearer {key}"})


def _wsgi(app) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app))


def test_suspending_needs_a_reason(acme):
    _, org, _, _ = acme
    for reason in ("", "   ", "x" * 501):
        with pytest.raises(ValidationError) as refused:
            platform_orgs.suspend(org, reason, SYSTEM)
        assert "reason" in refused.value.errors
    assert Organization.get_by_id(org.id).suspended_at is None
    with pytest.raises(RuleViolation):
        platform_orgs.unsuspend(org, SYSTEM)


def test_the_ingest_api_refuses_a_suspended_organization_with_a_problem_document(acme):
    client, org, key, _ = acme
    platform_orgs.suspend(org, REASON, SYSTEM)

    answer = _ingest(client, key)

    assert answer.status_code == 403
    assert answer.mimetype == "application/problem+json"
    problem = answer.get_json()
    assert problem["type"] == "http://localhost/docs/problems/organization-suspended"
    assert problem["status"] == 403
    assert "Acme is suspended" in problem["detail"] and REASON in problem["detail"]
    assert "nothing was deleted" in problem["detail"]
    assert UsageEvent.select().count() == 0


def test_the_gateway_refuses_in_the_openai_and_anthropic_formats(acme, app):
    import openai

    client, org, _, key = acme
    platform_orgs.suspend(org, REASON, SYSTEM)

    sdk = openai.OpenAI(api_key=key, base_url="http://localhost/v1", http_client=_wsgi(app), max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 403 and refused.value.code == "organization_suspended"
    assert "Acme is suspended" in refused.value.message and REASON in refused.value.message
    with pytest.raises(openai.PermissionDeniedError):
        sdk.models.list()

    answer = client.http.post("/anthropic/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                              json={"model": "claude-sonnet-4-5", "max_tokens": 10,
                                    "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 403
    body = answer.get_json()
    assert body["type"] == "error" and body["error"]["type"] == "permission_error"
    assert "Acme is suspended" in body["error"]["message"]


def test_members_see_the_notice_and_nothing_is_deleted(acme):
    client, org, key, _ = acme
    assert _ingest(client, key).status_code == 200
    platform_orgs.suspend(org, REASON, SYSTEM)

    html = client.get("/").get_data(as_text=True)

    assert 'data-testid="suspended-banner"' in html and REASON in html
    assert ApiKey.in_org(org).count() == 2 and UsageEvent.select().count() == 1


def test_reinstating_lets_ingest_and_gateway_calls_through_again(acme, app):
    import openai

    client, org, key, gateway_key = acme
    platform_orgs.suspend(org, REASON, SYSTEM)
    assert _ingest(client, key).status_code == 403

    platform_orgs.unsuspend(org, SYSTEM)

    answer = _ingest(client, key)
    assert answer.status_code == 200 and answer.get_json()["accepted"] == 1
    sdk = openai.OpenAI(api_key=gateway_key, base_url="http://localhost/v1", http_client=_wsgi(app), max_retries=0)
    sdk.models.list()  # answered, not refused
    assert 'data-testid="suspended-banner"' not in client.get("/").get_data(as_text=True)
    actions = [row.action for row in AuditLog.in_org(org).order_by(AuditLog.id)]
    assert actions[-2:] == ["org.suspended", "org.unsuspended"]


def test_the_onboarding_test_call_is_refused_too(acme):
    """Every path into the gateway asks the same question (proxy.organization_refusal)."""
    from costguardian.services.onboarding import first_call

    _, org, _, _ = acme
    gateway_key = ApiKey.in_org(org).where(ApiKey.name == "gw").get()
    platform_orgs.suspend(org, REASON, SYSTEM)
    with pytest.raises(RuleViolation) as refused:
        first_call.test_call(org, gateway_key, "gpt-4o-mini")
    assert "suspended" in refused.value.message and REASON in refused.value.message
    assert UsageEvent.select().count() == 0


def test_an_organization_to_be_deleted_is_not_reinstated_by_unsuspending(acme):
    _, org, key, _ = acme
    platform_orgs.schedule_deletion(org, SYSTEM, org.slug)
    with pytest.raises(RuleViolation) as refused:
        platform_orgs.unsuspend(Organization.get_by_id(org.id), SYSTEM)
    assert "cancel the deletion" in refused.value.message
    assert Organization.get_by_id(org.id).suspended_at is not None


def test_only_superadmins_change_organizations_whoever_calls_the_service(acme, make_user):
    from costguardian.services.actor import Actor
    from costguardian.services.errors import NotPermitted

    _, org, _, _ = acme
    helper = Actor(user=make_user("help@example.com", platform_role="support"))
    owner = Actor(user=make_user("boss@example.com"))
    for actor in (helper, owner):
        with pytest.raises(NotPermitted):
            platform_orgs.suspend(org, REASON, actor)
        with pytest.raises(NotPermitted):
            platform_orgs.schedule_deletion(org, actor, org.slug)
    assert Organization.get_by_id(org.id).suspended_at is None

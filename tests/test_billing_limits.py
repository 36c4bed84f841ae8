"""The plan's limits with billing on: tracked-event warnings at 80% and 100%
(once per period and level, never dropping usage), the banner, and the
features a plan leaves out (webhooks, request logging); with billing off none
of this applies."""
from __future__ import annotations

import html
from datetime import timedelta

from costguardian import clock
from costguardian.models import BillingAccount, Notification, UsageEvent
from costguardian.services.billing import limits, plans
from costguardian.services.usage import ingest
from tests.billing_support import T0, billing_on, owner, traveller  # noqa: F401
from tests.support import SYSTEM


def _events(org, count: int, start: int = 0):
    at = (clock.now() - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ingest.ingest(org, None, [
        {"event_id": f"e{start + i}", "provider": "openai", "model": "gpt-4o-mini", "occurred_at": at,
         "input_tokens": 10, "output_tokens": 5} for i in range(count)])


def _notices(org, kind="billing.events_allowance"):
    return list(Notification.select().where(Notification.organization == org, Notification.event_type == kind)
                .order_by(Notification.id))


def test_allowance_warnings_at_80_and_100_percent_once_each(owner, billing_on, traveller):
    client, user, org = owner
    plans.update("free", {"events_included": "10"}, SYSTEM)
    _events(org, 7)
    assert limits.check_allowances() == 0
    assert "billing-banner" not in client.get("/billing/").get_data(as_text=True)
    _events(org, 1, start=7)
    assert limits.check_allowances() == 1
    [eighty] = _notices(org)
    assert eighty.title == "80% of the Free plan's tracked events used"
    assert "80% of Free's 10 tracked events used this period (until 2026-04-01)." in html.unescape(client.get(
        "/").get_data(as_text=True))
    assert limits.check_allowances() == 0  # once per level
    _events(org, 5, start=8)  # 13 of 10: over the plan, nothing dropped
    assert limits.check_allowances() == 1
    assert [n.title for n in _notices(org)][-1] == "100% of the Free plan's tracked events used"
    assert UsageEvent.select().where(UsageEvent.organization == org).count() == 13
    page = client.get("/billing/").get_data(as_text=True)
    assert "Over plan: 13 tracked events this period, 10 included in Free." in page
    assert "13 of 10 included" in page and "events beyond the allowance are kept and counted" in page
    # A new period starts the warnings again.
    traveller.move_to(T0 + timedelta(days=30))
    _events(org, 9, start=100)
    assert limits.check_allowances() == 1
    assert BillingAccount.in_org(org).get().events_warned == "2026-04-01:80"


def test_billing_off_sends_no_allowance_warning(owner, app):
    client, user, org = owner
    plans.update("free", {"events_included": "1"}, SYSTEM)
    _events(org, 5)
    assert limits.check_allowances() == 0 and not _notices(org)


def test_a_plan_without_webhooks_or_request_logging_refuses_to_turn_them_on(owner, billing_on):
    client, user, org = owner
    answer = client.post("/notifications/webhooks/", {"name": "ops", "url": "https://hooks.example.com/cg",
                                                      "kind": "json",
                                        "scope": "all", "is_active": "y"})
    assert answer.status_code == 422
    assert "The Free plan does not include webhooks." in answer.get_data(as_text=True)
    answer = client.post("/gateway/requests/settings", {"enabled": "y", "retention_days": "7"})
    assert answer.status_code == 422
    assert "The Free plan does not include request logging." in answer.get_data(as_text=True)
    plans.update("free", {"feature.webhooks": "true", "feature.request_logging": "true"}, SYSTEM)
    answer = client.post("/gateway/requests/settings", {"enabled": "y", "retention_days": "7"})
    assert answer.status_code in (200, 302)


def test_a_plan_without_the_gateway_refuses_gateway_calls_in_the_callers_format(owner, billing_on, app):
    import openai
    import pytest

    from costguardian.services import keys
    from costguardian.services.billing import limits as billing_limits

    client, user, org = owner
    key = keys.create_key(org, SYSTEM, "gw", ["gateway"]).plaintext
    plans.update("free", {"feature.gateway": "false"}, SYSTEM)
    billing_limits._GATEWAY_ANSWERS.clear()
    sdk = openai.OpenAI(api_key=key, base_url="http://localhost/v1", http_client=_wsgi_client(app), max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 403 and refused.value.code == "plan_limit"
    assert "The Free plan does not include LLM gateway." in refused.value.message
    app.config["BILLING_ENABLED"] = False  # billing off lifts it, with nothing cached in the way
    assert billing_limits.gateway_refusal(org) is None


def _wsgi_client(app):
    import httpx

    return httpx.Client(transport=httpx.WSGITransport(app=app))

"""The onboarding wizard: from "Create organization" to the first priced call.
Steps validate on the server (422, nothing saved), side effects happen once
however often a step is sent, progress lives in the database so anyone
resumes where it stopped, htmx swaps steps and pushes their URL, and plain
form posts work too. The provider is the local fake upstream; the first
call goes through the real gateway."""
from __future__ import annotations

import pytest

from costguardian.models import ApiKey, AuditLog, Budget, Invitation, Organization, ProviderCredential, UsageEvent
from costguardian.models.onboarding import OnboardingProgress
from costguardian.services import onboarding
from costguardian.services.usage import ingest
from tests.fakes.llm_upstream import OPENAI_KEY
from tests.support import Client, add_member


@pytest.fixture
def upstream(app, llm_upstream, monkeypatch):
    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", llm_upstream.provider_base_urls())
    return llm_upstream


@pytest.fixture
def fresh(app, make_user):
    """A new user who just created an organization through the app."""
    user = make_user("nina@newco.com", name="Nina New")
    client = Client(app)
    client.sign_in(user.email)
    answer = client.post("/orgs/new", {"name": "NewCo", "time_zone": "UTC", "currency": "USD"})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/onboarding/")
    org = Organization.get(Organization.name == "NewCo")
    return client, user, org


def _token(page: str) -> str:
    return page.split('name="token" type="hidden" value="')[1].split('"')[0]


def _progress(org) -> OnboardingProgress:
    return OnboardingProgress.in_org(org).get()


def test_a_new_organization_starts_the_wizard_at_its_first_step(fresh):
    client, user, org = fresh
    answer = client.get("/onboarding/")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/onboarding/organization")
    page = client.get("/onboarding/organization").get_data(as_text=True)
    assert "Your organization" in page and 'value="newco"' in page and "data-guess-timezone" in page
    assert "Skip this step" not in page  # the first step cannot be skipped
    assert client.post("/onboarding/organization/skip").status_code == 400


def test_bad_organization_details_are_422_with_every_message_and_nothing_saved(fresh, make_org):
    client, user, org = fresh
    make_org("Taken Inc")
    page = client.get("/onboarding/organization").get_data(as_text=True)
    answer = client.post("/onboarding/organization", {"token": _token(page), "name": "", "slug": "taken-inc",
                                                      "time_zone": "Mars/Olympus", "currency": "USD"})
    text = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert "Give the organization a name." in text and "Not a valid choice" in text
    answer = client.post("/onboarding/organization", {"token": _token(page), "name": "NewCo", "slug": "taken-inc",
                                                      "time_zone": "UTC", "currency": "USD"})
    assert answer.status_code == 422 and "is taken by another organization" in answer.get_data(as_text=True)
    answer = client.post("/onboarding/organization", {"token": _token(page), "name": "NewCo", "slug": "Bad Slug!",
                                                      "time_zone": "UTC", "currency": "USD"})
    assert answer.status_code == 422 and "lower-case letters, digits and single dashes" in answer.get_data(
        as_text=True)
    assert Organization.get_by_id(org.id).slug == "newco" and onboarding.status(_progress(org), "organization") is None


def test_the_organization_step_saves_and_moves_on_with_htmx_pushing_the_url(fresh):
    client, user, org = fresh
    page = client.get("/onboarding/organization").get_data(as_text=True)
    answer = client.post("/onboarding/organization", {
        "token": _token(page), "name": "NewCo Labs", "slug": "newco-labs", "time_zone": "Europe/Berlin",
        "currency": "EUR", "uses": ["anthropic", "openai"]}, htmx=True)
    # The header names the organization too: the next step loads as a whole page.
    assert answer.status_code == 204 and answer.headers["HX-Redirect"] == "/onboarding/domain"
    skipped = client.post("/onboarding/domain/skip", htmx=True)  # other steps swap #wizard and push the URL
    assert skipped.status_code == 200 and skipped.headers["HX-Push-Url"] == "/onboarding/provider"
    text = skipped.get_data(as_text=True)
    assert 'id="wizard"' in text and "<html" not in text and "Connect a provider" in text
    org = Organization.get_by_id(org.id)
    assert (org.name, org.slug, org.time_zone, org.currency) == ("NewCo Labs", "newco-labs", "Europe/Berlin", "EUR")
    assert onboarding.data(_progress(org), "organization") == {"uses": ["anthropic", "openai"]}
    assert AuditLog.select().where(AuditLog.organization == org, AuditLog.action == "onboarding.step_done").count() == 1
    provider_page = client.get("/onboarding/provider").get_data(as_text=True)
    assert '<option selected value="anthropic">' in provider_page  # the first use chosen leads
    options = provider_page.split('name="provider"')[1].split("</select>")[0]
    assert options.index('value="anthropic"') < options.index('value="openai"') < options.index('value="google"')


def test_the_address_is_checked_while_typing(fresh, make_org):
    client, user, org = fresh
    make_org("Taken Inc")
    assert "is available" in client.get("/onboarding/slug-check?slug=brand-new", htmx=True).get_data(as_text=True)
    assert "is taken" in client.get("/onboarding/slug-check?slug=taken-inc", htmx=True).get_data(as_text=True)
    assert "is reserved" in client.get("/onboarding/slug-check?slug=admin", htmx=True).get_data(as_text=True)
    assert "is available" in client.get("/onboarding/slug-check?slug=newco", htmx=True).get_data(as_text=True)


def test_skipping_records_the_step_and_a_plain_post_redirects(fresh):
    client, user, org = fresh
    answer = client.post("/onboarding/domain/skip")
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/onboarding/provider")
    assert onboarding.status(_progress(org), "domain") == "skipped"


def test_a_provider_key_is_checked_live_and_saved_once(fresh, upstream):
    client, user, org = fresh
    page = client.get("/onboarding/provider").get_data(as_text=True)
    bad = client.post("/onboarding/provider", {"token": _token(page), "provider": "openai", "secret": "sk-wrong"})
    assert bad.status_code == 422 and "sk-wrong" not in bad.get_data(as_text=True)
    assert ProviderCredential.in_org(org).count() == 0
    form = {"token": _token(page), "provider": "openai", "secret": OPENAI_KEY}
    first = client.post("/onboarding/provider", form)
    again = client.post("/onboarding/provider", form)  # a double submit
    assert first.status_code == again.status_code == 303
    assert ProviderCredential.in_org(org).count() == 1
    assert onboarding.status(_progress(org), "provider") == "done"


def test_the_first_call_step_makes_one_key_and_turns_green_on_the_first_event(fresh):
    client, user, org = fresh
    page = client.get("/onboarding/first-call").get_data(as_text=True)
    form = {"token": _token(page)}
    made = client.post("/onboarding/first-call", form).get_data(as_text=True)
    assert 'data-testid="new-key"' in made
    plaintext = made.split('id="new-key-value">')[1].split("<")[0]
    client.post("/onboarding/first-call", form)  # sent twice: still one key
    assert ApiKey.in_org(org).count() == 1
    assert plaintext in made and 'data-snippet="curl-ingest"' in made and plaintext.startswith("cg_")
    assert plaintext not in client.get("/onboarding/first-call").get_data(as_text=True)  # shown once

    waiting = client.get("/onboarding/first-call/status", htmx=True)
    assert waiting.status_code == 200 and "Waiting for your first call" in waiting.get_data(as_text=True)
    answer = client.http.post("/api/v1/usage", json={"events": [{
        "event_id": "first-1", "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1200,
        "output_tokens": 300}]}, headers={"Authorization": f"Bearer {plaintext}"})
    assert answer.status_code in (200, 201, 207), answer.get_data(as_text=True)
    event = UsageEvent.in_org(org).get()
    arrived = client.get("/onboarding/first-call/status", htmx=True)
    text = arrived.get_data(as_text=True)
    assert arrived.status_code == 286  # htmx stops polling
    assert "Your first call arrived" in text and "gpt-4o-mini" in text and "1,500 tokens" in text
    assert f"${ingest.usd_string(event.cost_nanos)}" in text and event.cost_nanos > 0
    assert onboarding.status(_progress(org), "first-call") == "done"


def test_send_a_test_call_goes_through_the_gateway_and_is_priced(fresh, upstream):
    client, user, org = fresh
    page = client.get("/onboarding/provider").get_data(as_text=True)
    client.post("/onboarding/provider", {"token": _token(page), "provider": "openai", "secret": OPENAI_KEY})
    refused = client.post("/onboarding/first-call/test")
    assert refused.status_code == 422 and "Create the gateway key first." in refused.get_data(as_text=True)
    page = client.get("/onboarding/first-call").get_data(as_text=True)
    client.post("/onboarding/first-call", {"token": _token(page)})
    answer = client.post("/onboarding/first-call/test")
    assert answer.status_code == 200, answer.get_data(as_text=True)[:3000]
    [event] = UsageEvent.in_org(org)
    assert event.provider == "openai" and event.cost_nanos and event.cost_nanos > 0
    assert upstream.requests and upstream.requests[-1].path.endswith("/chat/completions")
    assert client.get("/onboarding/first-call/status", htmx=True).status_code == 286


def test_the_budget_step_creates_one_budget_and_refuses_bad_amounts(fresh):
    client, user, org = fresh
    page = client.get("/onboarding/budget").get_data(as_text=True)
    assert 'value="50,80,100"' in page and 'value="100"' in page
    bad = client.post("/onboarding/budget", {"token": _token(page), "name": "Monthly AI spend", "amount_usd": "-5",
                                             "period": "monthly", "thresholds": "50,80,100", "enforcement": "soft"})
    assert bad.status_code == 422 and Budget.in_org(org).count() == 0
    form = {"token": _token(page), "name": "Monthly AI spend", "amount_usd": "250", "period": "monthly",
            "thresholds": "50,80,100", "enforcement": "hard"}
    assert client.post("/onboarding/budget", form).status_code == 303
    assert client.post("/onboarding/budget", form).status_code == 303
    [budget] = Budget.in_org(org)
    assert (budget.amount_nanos, budget.enforcement, budget.threshold_list) == (250 * 10**9, "hard", [50, 80, 100])


def test_notifications_and_team_steps(fresh):
    client, user, org = fresh
    page = client.get("/onboarding/notifications").get_data(as_text=True)
    assert "budget.threshold:email" in page
    bad = client.post("/onboarding/notifications", {"token": _token(page), "slack_url": "not a url"})
    assert bad.status_code == 422
    ok = client.post("/onboarding/notifications", {"token": _token(page), "budget.threshold:in_app": "1",
                                                   "slack_url": ""})
    assert ok.status_code == 303 and onboarding.status(_progress(org), "notifications") == "done"
    page = client.get("/onboarding/team").get_data(as_text=True)
    answer = client.post("/onboarding/team", {"token": _token(page), "emails": "ana@newco.com, bo@newco.com",
                                              "role": "member"})
    assert answer.status_code == 303 and Invitation.in_org(org).count() == 2
    assert onboarding.data(_progress(org), "team") == {"invited": ["ana@newco.com", "bo@newco.com"]}


def test_progress_resumes_for_a_second_owner_and_the_checklist_follows_it(fresh, app, make_user):
    client, user, org = fresh
    page = client.get("/onboarding/organization").get_data(as_text=True)
    client.post("/onboarding/organization", {"token": _token(page), "name": "NewCo", "slug": "newco",
                                             "time_zone": "UTC", "currency": "USD"})
    client.post("/onboarding/domain/skip")
    client.post("/onboarding/provider/skip")
    second = make_user("olaf@newco.com")
    add_member(org, second, "admin")
    other = Client(app)
    other.sign_in(second.email)
    assert other.get("/onboarding/").headers["Location"].endswith("/onboarding/first-call")
    board = other.get("/").get_data(as_text=True)
    assert 'data-testid="setup-checklist"' in board and "✓ done" in board
    viewer = make_user("vera@newco.com")
    add_member(org, viewer, "viewer")
    third = Client(app)
    third.sign_in(viewer.email)
    assert third.get("/onboarding/").headers["Location"].endswith("/onboarding/welcome")
    welcome = third.get("/onboarding/welcome").get_data(as_text=True)
    assert "Your role: <strong>viewer</strong>" in welcome
    assert third.get("/onboarding/first-call").status_code == 403
    assert 'data-testid="setup-checklist"' not in third.get("/").get_data(as_text=True)
    other.post("/onboarding/dismiss")
    assert 'data-testid="setup-checklist"' not in client.get("/").get_data(as_text=True)


def test_the_done_step_summarizes_and_finishes(fresh, app):
    client, user, org = fresh
    for key in ("domain", "provider", "first-call", "budget", "notifications", "team"):
        client.post(f"/onboarding/{key}/skip")
    page = client.get("/onboarding/organization").get_data(as_text=True)
    client.post("/onboarding/organization", {"token": _token(page), "name": "NewCo", "slug": "newco",
                                             "time_zone": "UTC", "currency": "USD"})
    done = client.get("/onboarding/done").get_data(as_text=True)
    assert "✓ <strong>Your organization</strong>" in done and "Connect a provider</strong> — skipped" in done
    assert "/providers/" in done
    finished = client.post("/onboarding/done")
    assert finished.status_code == 303 and _progress(org).completed_at is not None
    assert 'data-testid="setup-checklist"' not in client.get("/").get_data(as_text=True)
    assert not app.config["BILLING_ENABLED"] and client.get("/onboarding/plan").status_code == 404


def test_the_domain_step_shows_the_record_and_verifies_it_against_dns(fresh, dns_server):
    from costguardian.models import DomainVerification

    client, user, org = fresh
    page = client.get("/onboarding/domain").get_data(as_text=True)
    bad = client.post("/onboarding/domain", {"token": _token(page), "domain": "co.uk", "action": "start"})
    assert bad.status_code == 422 and "public suffix" in bad.get_data(as_text=True)
    shown = client.post("/onboarding/domain", {"token": _token(page), "domain": "newco.com", "action": "start"})
    text = shown.get_data(as_text=True)
    verification = DomainVerification.in_org(org).get()
    assert shown.status_code == 200 and "_costguardian-challenge.newco.com" in text
    assert f"costguardian-verification={verification.token}" in text
    early = client.post("/onboarding/domain", {"token": _token(page), "domain": "newco.com", "action": "check"})
    assert early.status_code == 422 and "No TXT record" in early.get_data(as_text=True)
    dns_server.set_txt("_costguardian-challenge.newco.com", f"costguardian-verification={verification.token}")
    done = client.post("/onboarding/domain", {"token": _token(page), "domain": "newco.com", "action": "check"})
    assert done.status_code == 303 and done.headers["Location"].endswith("/onboarding/provider")
    assert Organization.get_by_id(org.id).join_domain_verified_at is not None
    assert onboarding.data(_progress(org), "domain") == {"domain": "newco.com"}


def test_the_plan_step_lets_its_form_redirect_to_stripe_only_with_billing_on(fresh, app):
    client, user, org = fresh
    csp = client.get("/onboarding/organization").headers["Content-Security-Policy"]
    assert "form-action 'self';" in csp  # billing off: nothing else allowed
    app.config["BILLING_ENABLED"] = True
    try:
        csp = client.get("/onboarding/organization").headers["Content-Security-Policy"]
    finally:
        app.config["BILLING_ENABLED"] = False
    assert "form-action 'self' https://checkout.stripe.com https://billing.stripe.com" in csp


def test_a_slack_webhook_is_added_once_and_can_be_tried_before_moving_on(fresh, webhook_receiver):
    from costguardian.models import WebhookEndpoint

    client, user, org = fresh
    page = client.get("/onboarding/notifications").get_data(as_text=True)
    form = {"token": _token(page), "slack_url": webhook_receiver.url("/slack"), "budget.threshold:email": "1"}
    saved = client.post("/onboarding/notifications", form)
    again = client.post("/onboarding/notifications", form)  # a double submit
    assert saved.status_code == 200 and 'data-testid="wizard-webhook"' in saved.get_data(as_text=True)
    assert again.status_code == 303 and WebhookEndpoint.in_org(org).count() == 1
    endpoint = WebhookEndpoint.in_org(org).get()
    assert endpoint.kind == "slack" and onboarding.status(_progress(org), "notifications") == "done"
    tried = client.post("/onboarding/notifications/test-webhook")
    assert tried.status_code == 200 and "Test message queued" in tried.get_data(as_text=True)
    assert webhook_receiver.received and "test of the webhook endpoint" in webhook_receiver.received[-1].body.decode()


def test_invitations_from_the_wizard_can_name_a_department(fresh):
    from costguardian.services.team import departments
    from tests.support import SYSTEM

    client, user, org = fresh
    research = departments.create(org, SYSTEM, "Research", "R-1")
    page = client.get("/onboarding/team").get_data(as_text=True)
    assert f'<option value="{research.id}">Research</option>' in page
    bad = client.post("/onboarding/team", {"token": _token(page), "emails": "ana@newco.com", "role": "member",
                                           "department": "999999"})
    assert bad.status_code == 422 and Invitation.in_org(org).count() == 0
    client.post("/onboarding/team", {"token": _token(page), "emails": "ana@newco.com", "role": "viewer",
                                     "department": str(research.id)})
    [invitation] = Invitation.in_org(org)
    assert (invitation.role, invitation.department_id) == ("viewer", research.id)


def test_an_admin_finishes_the_plan_step_on_free_but_cannot_subscribe(app, make_user, make_org, stripe_api):
    from tests.support import SYSTEM

    owner = make_user("olga@newco.com")
    org = make_org("NewCo", owner=owner)
    admin = make_user("adam@newco.com")
    add_member(org, admin, "admin")
    client = Client(app)
    client.sign_in(admin.email)
    saved = {k: app.config.get(k) for k in ("BILLING_ENABLED", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET",
                                            "STRIPE_API_BASE")}
    app.config.update(BILLING_ENABLED=True, STRIPE_SECRET_KEY=stripe_api.api_key,
                      STRIPE_WEBHOOK_SECRET=stripe_api.webhook_secret, STRIPE_API_BASE=stripe_api.url)
    try:
        from costguardian.services.billing import plans

        plans.setup_stripe(stripe_api.client(), "cg_tracked_events", SYSTEM)
        page = client.get("/onboarding/plan").get_data(as_text=True)
        assert 'data-testid="plan-not-yours"' in page and 'data-testid="plan-checkout"' not in page
        refused = client.post("/onboarding/plan", {"choice": "paid", "plan": "team", "interval": "month",
                                                   "seats": "3"})
        assert refused.status_code == 403
        assert not [o for o in stripe_api.state.objects.values() if o.get("object") == "customer"]
        assert client.get("/onboarding/plan/return").status_code == 403
        assert client.post("/onboarding/plan", {"choice": "free"}).status_code == 303
        assert onboarding.data(_progress(org), "plan") == {"plan": "free"}
    finally:
        app.config.update(saved)

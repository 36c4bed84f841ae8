"""The console's Configuration page (superadmins only): every platform
setting with its value in effect and its source, each change validated (422
with field messages) and audit-logged, environment variables winning where
set; and the global price overrides, which price every organization's
events unless the organization has its own price."""
from __future__ import annotations

import re
from datetime import date, datetime

import pytest
import time_machine

from costguardian.models import AuditLog, GlobalPriceOverride, PlatformSetting, UsageEvent, UsageRollup
from costguardian.services.platform import global_prices, settings
from costguardian.services.usage import ingest, prices
from costguardian.services.errors import ValidationError
from tests.support import SYSTEM, Client, other_app

PAGE = "/admin/config/"
NOW = datetime(2026, 11, 25, 12, 0)


@pytest.fixture
def clock_at_now():
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture
def root(app, make_user, clock_at_now):
    user = make_user("root@example.com", name="Root", superadmin=True)
    client = Client(app)
    client.sign_in(user.email)
    return client


@pytest.fixture
def own_sender(app):
    """The tests' app sets MAIL_FROM (the environment wins); these tests need it unset."""
    saved = app.config["MAIL_FROM"]
    app.config["MAIL_FROM"] = None
    yield
    app.config["MAIL_FROM"] = saved


def _section(html: str, key: str) -> str:
    return html.split(f'data-testid="config-{key}"', 1)[1].split("</article>", 1)[0]


def _changes(key: str) -> list[dict]:
    return [row.detail for row in AuditLog.select().where(AuditLog.action == "platform.setting_changed")
            .order_by(AuditLog.id) if row.detail["setting"] == key]


# --- who may see it -----------------------------------------------------------------------

def test_anonymous_people_are_sent_to_sign_in(client):
    response = client.get(PAGE)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_organization_owners_and_support_get_403(app, owner_client, make_user):
    owner, _, _ = owner_client
    support = Client(app)
    make_user("help@example.com", platform_role="support")
    support.sign_in("help@example.com")
    for client in (owner, support):
        assert client.get(PAGE).status_code == 403
        assert client.post(PAGE + "banner", {"text": "Down", "level": "info"}).status_code == 403
        assert client.post(PAGE + "signups", {"signups": "closed"}).status_code == 403
        assert client.post(PAGE + "prices", {"provider": "openai"}).status_code == 403
    assert PlatformSetting.select().count() == 0 and GlobalPriceOverride.select().count() == 0


def test_the_page_lists_every_setting_with_its_source(root, app_ctx):
    html = root.get(PAGE).get_data(as_text=True)
    for key in ("maintenance_banner", "signups", "default_plan", "impersonation_enabled", "mail_from", "prices"):
        assert f'data-testid="config-{key}"' in html, key
    assert "The default: nothing saved yet." in _section(html, "signups")
    # The tests' app sets MAIL_FROM: the environment wins and the field is read-only.
    sender = _section(html, "mail_from")
    assert "Set by the environment variable <code>MAIL_FROM</code>, which wins." in sender
    assert "no-reply@costguardian.example.com" in sender and "disabled" in sender
    assert "Save sender" not in sender
    assert "Configuration" in html.split('data-testid="console-nav"', 1)[1].split("</nav>", 1)[0]


# --- each setting --------------------------------------------------------------------------

def test_maintenance_banner_shows_within_its_window_and_can_be_cleared(root, app_ctx, clock_at_now):
    response = root.post(PAGE + "banner", {"text": "Upgrade tonight at 22:00 UTC", "level": "warning",
                                           "starts_at": "2026-11-25T10:00", "ends_at": "2026-11-25T14:00"})
    assert response.status_code == 302
    html = root.get(PAGE).get_data(as_text=True)
    assert 'data-testid="maintenance-banner"' in html and "Upgrade tonight at 22:00 UTC" in html
    assert "Showing now" in _section(html, "maintenance_banner")
    assert _changes("maintenance_banner")[-1]["after"] == {
        "text": "Upgrade tonight at 22:00 UTC", "level": "warning",
        "starts_at": "2026-11-25T10:00", "ends_at": "2026-11-25T14:00"}

    clock_at_now.move_to(datetime(2026, 11, 25, 14, 30))
    html = root.get(PAGE).get_data(as_text=True)
    assert 'data-testid="maintenance-banner"' not in html and "Ended at 2026-11-25 14:00 UTC" in html

    assert root.post(PAGE + "banner/clear").status_code == 302
    assert settings.get("maintenance_banner") is None
    assert "No banner is set." in root.get(PAGE).get_data(as_text=True)
    assert _changes("maintenance_banner")[-1]["after"] is None


@pytest.mark.parametrize("form, field, message", [
    ({"text": "", "level": "info"}, "text", "Write the banner"),
    ({"text": "Hi", "level": "purple"}, "level", "One of info, warning, danger"),
    ({"text": "Hi", "level": "info", "starts_at": "tomorrow"}, "starts_at", "A date and time like"),
    ({"text": "Hi", "level": "info", "starts_at": "2026-11-25T10:00", "ends_at": "2026-11-25T09:00"}, "ends_at",
     "The end must come after the start."),
])
def test_a_bad_banner_is_refused_with_the_fields_message(root, app_ctx, form, field, message):
    response = root.post(PAGE + "banner", form, htmx=True)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith("{") is False and 'id="config-maintenance_banner"' in html
    assert f'id="{field}-error"' in html and message in html
    assert PlatformSetting.select().count() == 0 and not _changes("maintenance_banner")
    # Without htmx: the whole page, the same message
    full = root.post(PAGE + "banner", form)
    assert full.status_code == 422 and message in full.get_data(as_text=True) and "<h1>Configuration</h1>" in \
        full.get_data(as_text=True)


def test_signup_policy_is_saved_together_and_logged(root, app_ctx):
    response = root.post(PAGE + "signups", {"signups": "invite_only",
                                            "signup_domains": "Example.com\n@corp.example.org\nexample.com"},
                         htmx=True)
    assert response.status_code == 200
    assert "Sign-up policy saved." in response.headers["HX-Trigger"]
    assert settings.get("signups") == "invite_only"
    assert settings.get("signup_domains") == ["example.com", "corp.example.org"]
    assert _changes("signups")[-1] == {"setting": "signups", "before": None, "after": "invite_only"}
    assert _changes("signup_domains")[-1]["after"] == ["example.com", "corp.example.org"]
    html = root.get(PAGE).get_data(as_text=True)
    section = _section(html, "signups")
    assert re.search(r'value="invite_only" checked', section)
    assert "example.com\ncorp.example.org</textarea>" in section and "Set in this console." in section

    # Saving the same values again changes and logs nothing.
    root.post(PAGE + "signups", {"signups": "invite_only", "signup_domains": "example.com\ncorp.example.org"})
    assert len(_changes("signups")) == 1 and len(_changes("signup_domains")) == 1


def test_a_bad_domain_saves_neither_field(root, app_ctx):
    response = root.post(PAGE + "signups", {"signups": "closed", "signup_domains": "example.com\nnot a domain"})
    assert response.status_code == 422
    assert "&#39;not&#39; is not a domain name" in response.get_data(as_text=True)
    assert settings.get("signups") == "open" and PlatformSetting.select().count() == 0
    assert root.post(PAGE + "signups", {"signups": "sometimes"}).status_code == 422


def test_default_plan_is_a_listed_plan(root, app_ctx):
    assert root.post(PAGE + "default-plan", {"default_plan": "team"}).status_code == 302
    assert settings.get("default_plan") == "team" and _changes("default_plan")[-1]["after"] == "team"
    assert re.search(r'<option value="team" selected>', _section(root.get(PAGE).get_data(as_text=True),
                                                                 "default_plan"))
    response = root.post(PAGE + "default-plan", {"default_plan": "platinum"})
    assert response.status_code == 422 and "One of the plans" in response.get_data(as_text=True)
    assert settings.get("default_plan") == "team"


def test_impersonation_can_be_switched_off(root, app_ctx):
    assert settings.get("impersonation_enabled") is True
    response = root.post(PAGE + "impersonation", {"impersonation_enabled": "off"}, htmx=True)
    assert response.status_code == 200 and "Impersonation switched off." in response.headers["HX-Trigger"]
    assert settings.get("impersonation_enabled") is False
    assert "Impersonation is <strong>off</strong>" in response.get_data(as_text=True)
    assert _changes("impersonation_enabled")[-1] == {"setting": "impersonation_enabled", "before": None,
                                                     "after": False}
    assert root.post(PAGE + "impersonation", {"impersonation_enabled": "maybe"}).status_code == 422


def test_email_sender_is_used_by_mail(root, app_ctx, own_sender):
    from costguardian.services.notifications import mail

    html = root.get(PAGE).get_data(as_text=True)
    assert "The default: nothing saved yet." in _section(html, "mail_from")
    response = root.post(PAGE + "mail-from", {"mail_from": "Acme Billing, Inc. <billing@acme.example.com>"})
    assert response.status_code == 302
    assert settings.get("mail_from") == '"Acme Billing, Inc." <billing@acme.example.com>'
    assert _changes("mail_from")[-1]["after"] == '"Acme Billing, Inc." <billing@acme.example.com>'
    assert mail._sender() == '"Acme Billing, Inc." <billing@acme.example.com>'
    bad = root.post(PAGE + "mail-from", {"mail_from": "nobody"})
    assert bad.status_code == 422 and "An address like" in bad.get_data(as_text=True)


# --- environment variables win ----------------------------------------------------------------

def test_an_environment_variable_wins_and_the_page_says_so(make_user, clock_at_now):
    with other_app(CG_SIGNUPS="closed", CG_IMPERSONATION="0") as app:
        make_user("root@example.com", superadmin=True)
        client = Client(app)
        client.sign_in("root@example.com")
        html = client.get(PAGE).get_data(as_text=True)
        section = _section(html, "signups")
        assert "Set by the environment variable <code>CG_SIGNUPS</code>, which wins." in section
        assert re.search(r'value="closed" checked\s+disabled', section)
        assert "Impersonation is <strong>off</strong>" in _section(html, "impersonation_enabled")

        # Stored all the same, and logged; the value in effect stays the environment's.
        with app.test_request_context():
            settings.put("signups", "open", SYSTEM)
            assert settings.get("signups") == "closed" and settings.source("signups") == "environment"
        assert PlatformSetting.get_by_id("signups").value == "open"
        response = client.post(PAGE + "signups", {"signups": "invite_only", "signup_domains": ""})
        assert response.status_code == 302
        assert PlatformSetting.get_by_id("signups").value == "invite_only"
        page = client.get(PAGE).get_data(as_text=True)
        assert "CG_SIGNUPS still wins while it is set" in page
        assert "the value saved here is kept for when the variable is unset" in _section(page, "signups")
        anonymous = Client(app)
        assert "Sign-ups are closed" in anonymous.get("/signup").get_data(as_text=True)


# --- global price overrides -------------------------------------------------------------------

GPT = {"provider": "openai", "model": "gpt-4o", "input_tokens": 1_000_000, "output_tokens": 100_000}
CATALOG = 3_500_000_000  # 1M × $2.50 + 100k × $10 per million tokens


def _send(org, event_id: str):
    result = ingest.ingest(org, None, [{**GPT, "event_id": event_id, "occurred_at": "2026-11-20T10:00:00Z"}],
                           now=NOW)
    assert result.count("accepted") == 1, result.as_json()


def _costs(org) -> list[tuple]:
    return [(e.cost_nanos, e.priced_by) for e in UsageEvent.in_org(org).order_by(UsageEvent.id)]


def _rollup_cost(org) -> int:
    return sum(r.cost_nanos for r in UsageRollup.select().where(UsageRollup.organization == org))


def _global_form(**changes) -> dict:
    return {"provider": "OpenAI", "model": "gpt-4o-2024-08-06", "effective_from": "2026-01-01",
            "input_price": "1", "output_price": "$4", "cache_read_price": "", "cache_write_price": "",
            "note": "platform deal", **changes}


def _create(**changes):
    return global_prices.create(SYSTEM, **_global_form(**{"effective_from": date(2026, 1, 1), **changes}))


def test_a_global_price_prices_events_an_org_price_beats_it_and_deleting_restores_the_catalog(
        root, make_org, make_user):
    acme = make_org("Acme", make_user("owner@acme.example.com"))
    globex = make_org("Globex", make_user("owner@globex.example.com"))
    _send(acme, "a1")
    _send(globex, "g1")
    assert _costs(acme) == [(CATALOG, "catalog")]

    response = root.post(PAGE + "prices", _global_form(), htmx=True)
    assert response.status_code == 200, response.get_data(as_text=True)
    row = GlobalPriceOverride.get()
    assert (row.provider, row.model, row.effective_from) == ("openai", "gpt-4o", datetime(2026, 1, 1))
    assert 'data-testid="global-prices"' in response.get_data(as_text=True)
    # Stored usage of every organization is repriced: 1M × $1 + 100k × $4
    assert _costs(acme) == [(1_400_000_000, "global")] and _costs(globex) == [(1_400_000_000, "global")]
    assert _rollup_cost(acme) == 1_400_000_000

    # A new event is priced by it at ingest
    _send(globex, "g2")
    assert _costs(globex)[-1] == (1_400_000_000, "global")

    # The organization's own price wins over the global one
    own = prices.create_override(acme, SYSTEM, provider="openai", model="gpt-4o", effective_from=date(2026, 1, 1),
                                 input_price="2", output_price="8")
    assert _costs(acme) == [(2_800_000_000, "override")]
    _send(acme, "a2")
    assert _costs(acme)[-1] == (2_800_000_000, "override")
    prices.delete_override(own, SYSTEM)
    assert set(_costs(acme)) == {(1_400_000_000, "global")}

    assert root.post(PAGE + f"prices/{row.id}/delete").status_code == 302
    assert GlobalPriceOverride.select().count() == 0
    assert set(_costs(acme)) == {(CATALOG, "catalog")} and set(_costs(globex)) == {(CATALOG, "catalog")}
    assert _rollup_cost(globex) == 2 * CATALOG

    actions = [a.action for a in AuditLog.select().where(AuditLog.action.startswith("platform.global_price"))
               .order_by(AuditLog.id)]
    assert actions == ["platform.global_price_created", "platform.global_price_deleted"]
    created = AuditLog.get(AuditLog.action == "platform.global_price_created")
    assert created.organization_id is None and created.detail["input_price"] == "1"
    assert created.detail["note"] == "platform deal"


def test_editing_a_global_price_reprices_and_logs_the_changes(root, make_org, make_user):
    acme = make_org("Acme", make_user("owner@acme.example.com"))
    _send(acme, "a1")
    row = _create()
    edit = root.get(PAGE + f"prices/{row.id}/edit", htmx=True).get_data(as_text=True)
    assert "Edit the global price for openai/gpt-4o" in edit and 'value="2026-01-01"' in edit
    response = root.post(PAGE + f"prices/{row.id}", _global_form(input_price="0.5"))
    assert response.status_code == 302
    assert _costs(acme) == [(900_000_000, "global")]  # 1M × $0.50 + 100k × $4
    updated = AuditLog.get(AuditLog.action == "platform.global_price_updated")
    assert updated.detail["changes"] == {"input_price": ["1", "0.5"]}
    html = root.get(PAGE).get_data(as_text=True)
    assert "$0.5" in _section(html, "prices")


def test_a_global_price_from_a_later_date_leaves_earlier_events_alone(root, make_org, make_user):
    acme = make_org("Acme", make_user("owner@acme.example.com"))
    _send(acme, "a1")  # 2026-11-20
    _create(effective_from=date(2026, 11, 21))
    assert _costs(acme) == [(CATALOG, "catalog")]


@pytest.mark.parametrize("changes, field, message", [
    ({"input_price": "-1"}, "input_price", "A price cannot be negative."),
    ({"output_price": "abc"}, "output_price", "Not a number"),
    ({"provider": ""}, "provider", "Enter the provider"),
    ({"effective_from": "soon"}, "effective_from", "Enter a date as YYYY-MM-DD."),
])
def test_bad_global_prices_are_refused_with_field_messages(root, app_ctx, changes, field, message):
    response = root.post(PAGE + "prices", _global_form(**changes), htmx=True)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="config-prices"' in html and message in html
    assert GlobalPriceOverride.select().count() == 0


def test_the_same_model_and_date_twice_is_a_clear_error(root, app_ctx):
    _create()
    with pytest.raises(ValidationError) as raised:
        _create()
    assert "already has a global price from 2026-01-01" in raised.value.errors["effective_from"]
    response = root.post(PAGE + "prices", _global_form())
    assert response.status_code == 422 and "already has a global price" in response.get_data(as_text=True)


def test_unknown_price_rows_are_404(root, app_ctx):
    assert root.get(PAGE + "prices/999/edit").status_code == 404
    assert root.post(PAGE + "prices/999/delete").status_code == 404

"""The cost check's one-click organization price override: the suggested
prices, the override it creates (note, start day, audit), the cost check
clean afterwards with the stored usage repriced, and who may press it."""
from __future__ import annotations

from datetime import date, datetime

from costguardian.models import AuditLog, PriceOverride, UsageRollup
from costguardian.services.provider_sync import connections, price_fix, reconcile, sync
from costguardian.services.usage import ingest
from tests.provider_sync_support import NOW, admin_api, pinned  # noqa: F401
from tests.support import SYSTEM, Client, add_member

NANOS = 10**9


def _history(org, fake):
    """gpt-4o billed 20% above the catalog ($3 instead of $2.50 per million
    input tokens) on 4 and 5 Dec, at the catalog's price on 3 Dec."""
    for day, billed in ((3, "2.50"), (4, "3.00"), (5, "3.00")):
        fake.add_openai_usage(datetime(2026, 12, day, 10), "gpt-4o", "key_a", "p", input_tokens=1_000_000,
                              output_tokens=0, num_model_requests=1)
        fake.add_openai_cost(datetime(2026, 12, day), billed, "gpt-4o-2024-08-06, input", "p")
    result = ingest.ingest(org, None, [{"event_id": "ev-1", "provider": "openai", "model": "gpt-4o",
                                        "input_tokens": 1_000_000, "output_tokens": 100_000,
                                        "occurred_at": "2026-12-05T10:10:00Z"}], now=NOW.replace(tzinfo=None))
    assert result.count("accepted") == 1


def _connected(org, fake):
    _history(org, fake)
    conn = connections.connect(org, SYSTEM, "openai", fake.openai_key)
    sync.sync_connection(conn)
    return conn


def test_the_suggestion_scales_our_rates_from_the_day_the_drift_started(app_ctx, make_org, admin_api, pinned):
    org = make_org(time_zone="America/New_York")
    conn = _connected(org, admin_api)
    [fix] = price_fix.suggestions(org, conn, date(2026, 12, 1), date(2026, 12, 5))
    assert (fix.model, fix.first_day, fix.last_day, str(fix.ratio), fix.source) == (
        "gpt-4o", date(2026, 12, 4), date(2026, 12, 5), "1.2000", "catalog")
    assert (str(fix.proposed["input_price"]), str(fix.proposed["output_price"])) == ("3", "12")
    # New York's 3 Dec starts at 05:00 UTC, before the first drifting UTC day
    assert price_fix.start_day(org, fix) == date(2026, 12, 3)


def test_the_button_creates_the_override_and_the_cost_check_is_clean_after(app, admin_api, pinned, owner_client):
    client, owner, org = owner_client
    with app.app_context():
        conn = _connected(org, admin_api)
        before = UsageRollup.select().where(UsageRollup.organization == org).get().cost_nanos
    html = client.get("/reconciliation/openai?from=2026-12-01&to=2026-12-05").get_data(as_text=True)
    assert "Set this price" in html and 'id="price-fixes"' in html
    response = client.post("/reconciliation/openai/price-fix", {"model": "gpt-4o", "from": "2026-12-01",
                                                                "to": "2026-12-05"})
    assert response.status_code == 303, response.get_data(as_text=True)
    with app.app_context():
        [override] = PriceOverride.select().where(PriceOverride.organization == org)
        assert (override.provider, override.model) == ("openai", "gpt-4o")
        assert override.effective_from == datetime(2026, 12, 4)  # UTC organization: midnight of the first day
        assert (override.input_nanos_per_mtok, override.output_nanos_per_mtok) == (3 * NANOS, 12 * NANOS)
        assert override.cache_read_nanos_per_mtok == 1_500_000_000  # the catalog's $1.25 scaled too
        assert "billed 1.2000x our price for 2026-12-04–2026-12-05 (UTC)" in override.note
        assert "catalog rates scaled by 1.2000" in override.note
        assert AuditLog.select().where(AuditLog.action == "price_override.created").count() == 1
        checks = reconcile.cost_check(org, conn, date(2026, 12, 1), date(2026, 12, 5))
        assert [(c.day.day, c.flagged) for c in checks] == [(3, False), (4, False), (5, False)]
        assert price_fix.suggestions(org, conn, date(2026, 12, 1), date(2026, 12, 5)) == []
        after = UsageRollup.select().where(UsageRollup.organization == org).get().cost_nanos
    assert (before, after) == (3_500_000_000, 4_200_000_000)  # $2.50 + $1 repriced to $3 + $1.20
    html = client.get("/reconciliation/openai?from=2026-12-01&to=2026-12-05").get_data(as_text=True)
    assert "Set this price" not in html
    again = client.post("/reconciliation/openai/price-fix", {"model": "gpt-4o", "from": "2026-12-01",
                                                             "to": "2026-12-05"})
    assert again.status_code == 422 and "does not flag gpt-4o" in again.get_data(as_text=True)


def test_bad_input_is_422(app, admin_api, pinned, owner_client):
    client, _, org = owner_client
    with app.app_context():
        _connected(org, admin_api)
    unknown = client.post("/reconciliation/openai/price-fix", {"model": "gpt-4o-mini", "from": "2026-12-01",
                                                               "to": "2026-12-05"})
    assert unknown.status_code == 422 and "does not flag gpt-4o-mini" in unknown.get_data(as_text=True)
    bad_range = client.post("/reconciliation/openai/price-fix", {"model": "gpt-4o", "from": "soon", "to": ""})
    assert bad_range.status_code == 422
    assert client.post("/reconciliation/anthropic/price-fix", {"model": "gpt-4o"}).status_code == 404
    with app.app_context():
        assert PriceOverride.select().count() == 0


def test_only_members_who_manage_prices_see_and_press_the_button(app, admin_api, pinned, owner_client, make_user):
    client, _, org = owner_client
    with app.app_context():
        _connected(org, admin_api)
        for role in ("viewer", "member"):
            add_member(org, make_user(f"{role}@acme.com"), role)
    for role in ("viewer", "member"):
        other = Client(app)
        other.sign_in(f"{role}@acme.com")
        html = other.get("/reconciliation/openai?from=2026-12-01&to=2026-12-05").get_data(as_text=True)
        assert 'id="price-fixes"' in html and "Set this price" not in html
        refused = other.post("/reconciliation/openai/price-fix", {"model": "gpt-4o", "from": "2026-12-01",
                                                                  "to": "2026-12-05"})
        assert refused.status_code == 403
    with app.app_context():
        assert PriceOverride.select().count() == 0


def test_a_refused_admin_key_and_bad_settings_answer_422_inline(app, admin_api, pinned, owner_client):
    client, _, org = owner_client
    refused = client.post("/reconciliation/connections", {"provider": "openai", "secret": "sk-admin-wrong-0000"})
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert 'class="field-error"' in html and "sk-admin-wrong-0000" not in html
    with app.app_context():
        assert connections.get(org, "openai") is None
        conn = connections.connect(org, SYSTEM, "openai", admin_api.openai_key)
    bad = client.post("/reconciliation/openai/settings", {"tolerance_pct": "lots", "shadow_alert_usd": "-5"})
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert "Enter a percentage between 0 and 100" in html and "Enter an amount in USD" in html
    assert 'aria-invalid="true"' in html
    with app.app_context():
        conn = connections.get(org, "openai")
        assert (conn.tolerance_bp, conn.shadow_alert_nanos) == (100, 10 * NANOS)
    good = client.post("/reconciliation/openai/settings", {"tolerance_pct": "2.5", "shadow_alert_usd": "20"})
    assert good.status_code == 303
    with app.app_context():
        assert connections.get(org, "openai").tolerance_bp == 250

"""`flask billing …`: the operator's commands for plans, Stripe set-up, the
sync, meter reports and each organization's state, run through Flask's CLI
runner against the test database and the local fake Stripe."""
from __future__ import annotations

from datetime import timedelta

import pytest

from costguardian.models import AuditLog, BillingAccount, MeterReport, Plan
from costguardian.services.billing import plans
from costguardian.services.usage import ingest
from tests.billing_support import SETTINGS, T0, billing_on, live, owner, subscribe, traveller  # noqa: F401
from tests.support import SYSTEM


@pytest.fixture
def cli(app_ctx):
    runner = app_ctx.test_cli_runner()

    def invoke(*args: str):
        return runner.invoke(args=["billing", *args])

    return invoke


@pytest.fixture
def stripe_keys(app, app_ctx, stripe_api):
    """Billing on against the fake Stripe, before any product or price exists there."""
    saved = {name: app.config.get(name) for name in SETTINGS}
    app.config.update(BILLING_ENABLED=True, STRIPE_SECRET_KEY=stripe_api.api_key,
                      STRIPE_WEBHOOK_SECRET=stripe_api.webhook_secret, STRIPE_API_BASE=stripe_api.url)
    try:
        yield stripe_api
    finally:
        app.config.update(saved)


# --- plans and plan-set ----------------------------------------------------------

def test_plans_lists_every_plan_with_its_prices_limits_and_features(cli):
    result = cli("plans")

    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split()[:4] == ["CODE", "NAME", "ACTIVE", "MONTHLY/SEAT"]
    assert [row.split()[0] for row in rows] == ["free", "team", "business"]
    team = rows[1]
    for text in ("Team", "yes", "$20.00", "$192.00", "5 (+extra)", "1,000,000", "metered $2.00/1,000", "14",
                 "365 days", "gateway,provider_sync,webhooks,request_logging"):
        assert text in team, (text, team)
    assert "sso" not in team and team.rstrip().endswith("-")  # no Stripe price yet
    assert "show" in rows[0] and "$0.00" in rows[0]


def test_plans_shows_the_stripe_price_ids_after_set_up(cli, billing_on):
    team = plans.by_code("team")

    result = cli("plans")

    assert result.exit_code == 0, result.output
    assert (f"month={team.stripe_monthly_price} year={team.stripe_yearly_price} "
            f"metered={team.stripe_metered_price}") in result.output


def test_plan_set_changes_the_fields_and_records_it(cli):
    result = cli("plan-set", "team", "monthly_usd=25.50", "events_included=2000000", "feature.sso=true")

    assert result.exit_code == 0, result.output
    assert "updated team: events_included, feature.sso, monthly_usd" in result.output
    team = plans.by_code("team")
    assert (team.monthly_nanos, team.events_included, team.has("sso")) == (25_500_000_000, 2_000_000, True)
    assert AuditLog.select().where(AuditLog.action == "billing.plan_updated").count() == 1


def test_plan_set_with_bad_values_prints_each_and_saves_nothing(cli):
    before = plans.by_code("team").updated_at

    result = cli("plan-set", "team", "monthly_usd=cheap", "seats_included=0", "name=Team Plus", "colour=red")

    assert result.exit_code == 1
    assert "monthly_usd: expected dollars per seat, like 20 or 19.50" in result.output
    assert "seats_included: expected a whole number from 1 to 100,000" in result.output
    assert "colour: not a plan field; fields: name, position" in result.output
    assert "name:" not in result.output  # the good value is not an error, and is not saved either
    team = Plan.get(Plan.code == "team")
    assert (team.name, team.monthly_nanos, team.updated_at) == ("Team", 20_000_000_000, before)


def test_plan_set_of_an_unknown_plan_names_the_plans(cli):
    result = cli("plan-set", "gold", "name=Gold")

    assert result.exit_code == 1
    assert "code: No plan 'gold'; the plans are free, team, business" in result.output


def test_plan_set_needs_name_equals_value(cli):
    result = cli("plan-set", "team", "monthly_usd")

    assert result.exit_code == 1
    assert "'monthly_usd' is not NAME=VALUE" in result.output


# --- stripe-setup ----------------------------------------------------------------

def test_stripe_setup_refuses_with_billing_off(cli, app):
    assert not app.config["BILLING_ENABLED"]

    result = cli("stripe-setup")

    assert result.exit_code == 1
    assert "billing is off on this installation (BILLING_ENABLED)" in result.output
    assert Plan.select().where(Plan.stripe_monthly_price.is_null(False)).count() == 0


def test_stripe_setup_refuses_without_the_keys(cli, stripe_keys, app):
    app.config["STRIPE_SECRET_KEY"] = None

    result = cli("stripe-setup")

    assert result.exit_code == 1
    assert "STRIPE_SECRET_KEY not set" in result.output
    assert not stripe_keys.requests


def test_stripe_setup_creates_the_prices_and_meter_once(cli, stripe_keys):
    result = cli("stripe-setup")

    assert result.exit_code == 0, result.output
    team = plans.by_code("team")
    assert f"team: created the monthly price {team.stripe_monthly_price}" in result.output
    assert f"team: created the monthly overage price {team.stripe_metered_price}" in result.output
    assert f"team: created the yearly overage price {team.stripe_metered_yearly_price}" in result.output
    assert "created the meter mtr_test_" in result.output and "(cg_tracked_events)" in result.output
    assert result.output.count("created the") == 9  # 2 × (monthly, yearly, monthly and yearly overage) + the meter

    again = cli("stripe-setup")

    assert again.exit_code == 0, again.output
    assert "created" not in again.output and "nothing to create" in again.output
    assert plans.by_code("team").stripe_monthly_price == team.stripe_monthly_price


# --- sync, report-usage, status --------------------------------------------------

def test_sync_and_report_usage_refuse_with_billing_off(cli):
    for command in ("sync", "report-usage"):
        result = cli(command)
        assert result.exit_code == 1 and "billing is off on this installation" in result.output, command


def test_sync_reads_a_subscription_whose_webhooks_were_lost(cli, owner, live):
    client, user, org = owner
    live.auto_deliver = False
    subscribe(client)
    assert BillingAccount.in_org(org).get().status == ""

    result = cli("sync")

    assert result.exit_code == 0, result.output
    assert "accounts synced: 1, failed: 0" in result.output
    account = BillingAccount.in_org(org).get()
    assert (account.plan.code, account.status, account.seats) == ("team", "trialing", 5)


def _overage(org, count: int = 30):
    """`count` tracked events beyond a 100-event allowance, in the first day of the period."""
    ingest.ingest(org, None, [
        {"event_id": f"c{i}", "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 5,
         "occurred_at": (T0 + timedelta(hours=3)).replace(tzinfo=None).isoformat() + "Z"} for i in range(100 + count)])


def test_report_usage_prints_what_it_created_sent_and_failed(cli, owner, live, traveller):
    client, user, org = owner
    plans.update("team", {"events_included": "100"}, SYSTEM)
    subscribe(client)
    traveller.move_to(T0 + timedelta(days=1, hours=1))
    _overage(org)
    live.fail_next(500, times=3)  # the first try and the library's two retries

    failed = cli("report-usage")

    assert failed.exit_code == 1
    assert "reports created: 1, sent: 0, failed: 1" in failed.output
    assert "they stay failed and are sent again by the next run" in failed.output

    result = cli("report-usage")

    assert result.exit_code == 0, result.output
    assert "reports created: 0, sent: 1, failed: 0" in result.output
    assert [r.status for r in MeterReport.in_org(org)] == ["sent"]


def test_status_shows_each_account_with_its_failed_reports_and_last_sync(cli, owner, live, traveller, make_org):
    client, user, org = owner
    plans.update("team", {"events_included": "100"}, SYSTEM)
    subscribe(client)
    make_org("Globex")  # no billing account: not listed
    traveller.move_to(T0 + timedelta(days=1, hours=1))
    _overage(org)
    live.fail_next(500, times=3)
    cli("report-usage")

    result = cli("status")

    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split() == ["ORGANIZATION", "PLAN", "STATUS", "SEATS", "FAILED", "REPORTS", "LAST", "SYNC"]
    [row] = rows
    synced = BillingAccount.in_org(org).get().synced_at
    assert row.split() == ["Acme", f"({org.slug})", "team", "trialing", "5", "1", synced.strftime("%Y-%m-%d"),
                           synced.strftime("%H:%M"), "UTC"]


def test_status_with_billing_off_says_so(cli, owner):
    result = cli("status")

    assert result.exit_code == 0, result.output
    assert "billing is off on this installation" in result.output
    assert "no organization has a billing account yet" in result.output

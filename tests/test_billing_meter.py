"""Usage-based billing against the local fake Stripe: tracked events beyond a
metered plan's allowance reach Stripe's meter exactly once, whatever happens
to a report on the way (a lost answer, a failure, events that arrive late),
nothing is reported below the allowance, and the renewal invoice bills the
overage."""
from __future__ import annotations

from datetime import timedelta

from costguardian.models import BillingAccount, MeterReport
from costguardian.services.billing import meter, plans
from costguardian.services.usage import ingest
from tests.billing_support import T0, billing_on, live, owner, subscribe, traveller  # noqa: F401
from tests.support import SYSTEM

ALLOWANCE = 100
DAY_ONE = T0 + timedelta(hours=3)  # an hour inside the first day of the period (which starts at about T0)


def _metered(client, org, allowance: int = ALLOWANCE) -> BillingAccount:
    """Acme on Team (metered) without a trial, `allowance` tracked events a period."""
    plans.update("team", {"events_included": str(allowance), "trial_days": "0"}, SYSTEM)
    subscribe(client)
    account = BillingAccount.in_org(org).get()
    assert account.status == "active" and account.metered_item_id, (account.status, account.metered_item_id)
    return account


def _events(org, count: int, at, first: int = 0) -> None:
    result = ingest.ingest(org, None, [
        {"event_id": f"m{first + i}", "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10,
         "output_tokens": 5, "occurred_at": at.replace(tzinfo=None).isoformat() + "Z"} for i in range(count)])
    assert result.count("accepted") == count, result.as_json()["results"][:1]


def _stripe_total(account, live) -> float:
    meter_id = live.get(plans.by_code("team").stripe_metered_price)["recurring"]["meter"]
    return meter.reconcile(account, client=live.client(), meter_id=meter_id).stripe_total


def _meter_events(live, identifier: str | None = None) -> list[dict]:
    return [e for e in live.state.meter_events if identifier is None or e["identifier"] == identifier]


def test_an_overage_is_reported_once_with_a_day_identifier(owner, live, traveller):
    client, user, org = owner
    account = _metered(client, org)
    traveller.move_to(T0 + timedelta(days=1, hours=1))
    _events(org, ALLOWANCE + 30, DAY_ONE)

    run = meter.report_usage()

    assert (run.created, run.sent, run.failed) == (1, 1, 0)
    [report] = MeterReport.in_org(org)
    assert (report.value, report.revision, report.status) == (30, 0, "sent")
    assert report.identifier == f"cg-{org.id}-{T0:%Y%m%d}-0"
    assert [e["payload"]["value"] for e in _meter_events(live)] == ["30"]
    assert meter.report_usage().created == 0  # nothing new: nothing reported twice
    assert _stripe_total(account, live) == 30


def test_a_report_whose_answer_was_lost_is_counted_once(owner, live, traveller, app):
    client, user, org = owner
    account = _metered(client, org)
    traveller.move_to(T0 + timedelta(days=1, hours=1))
    _events(org, ALLOWANCE + 30, DAY_ONE)
    identifier = f"cg-{org.id}-{T0:%Y%m%d}-0"
    # Stripe received the report, but its answer never came back: the row was not marked sent.
    live.client().v1.billing.meter_events.create(params={
        "event_name": app.config["STRIPE_METER_EVENT_NAME"], "identifier": identifier,
        "timestamp": int((T0 + timedelta(hours=11)).timestamp()),
        "payload": {"stripe_customer_id": account.stripe_customer_id, "value": "30"}})

    run = meter.report_usage()

    assert (run.created, run.sent, run.failed) == (1, 1, 0)  # "already exists" means Stripe has it
    [report] = MeterReport.in_org(org)
    assert (report.identifier, report.status, report.last_error) == (identifier, "sent", "")
    assert len(_meter_events(live, identifier)) == 1
    assert _stripe_total(account, live) == 30 == meter.reconcile(account).owed


def test_late_events_make_a_correction_with_a_new_identifier(owner, live, traveller):
    client, user, org = owner
    account = _metered(client, org)
    traveller.move_to(T0 + timedelta(days=1, hours=1))
    _events(org, ALLOWANCE + 30, DAY_ONE)
    meter.report_usage()
    _events(org, 20, DAY_ONE, first=1000)  # arrived late, for a day already reported

    run = meter.report_usage()

    assert (run.created, run.sent, run.failed) == (1, 1, 0)
    reports = list(MeterReport.in_org(org).order_by(MeterReport.revision))
    assert [(r.day, r.revision, r.value, r.status) for r in reports] == [
        (T0.date(), 0, 30, "sent"), (T0.date(), 1, 20, "sent")]
    assert reports[1].identifier == f"cg-{org.id}-{T0:%Y%m%d}-1"
    figures = meter.reconcile(account)
    assert (figures.owed, figures.reported, figures.pending) == (50, 50, 0) and figures.matches
    assert _stripe_total(account, live) == 50


def test_a_failed_report_stays_failed_and_the_next_run_sends_it(owner, live, traveller):
    client, user, org = owner
    account = _metered(client, org)
    traveller.move_to(T0 + timedelta(days=1, hours=1))
    _events(org, ALLOWANCE + 30, DAY_ONE)
    live.fail_next(500, times=3)  # the first try and the library's two retries

    run = meter.report_usage()

    assert (run.created, run.sent, run.failed) == (1, 0, 1)
    [report] = MeterReport.in_org(org)
    assert (report.status, report.attempts) == ("failed", 1) and report.last_error
    assert not _meter_events(live)
    figures = meter.reconcile(account)
    assert (figures.owed, figures.reported, figures.pending) == (30, 0, 30) and not figures.matches

    traveller.move_to(T0 + timedelta(days=1, hours=2))
    run = meter.report_usage()

    assert (run.created, run.sent, run.failed) == (0, 1, 0)
    report = MeterReport.get_by_id(report.id)
    assert (report.status, report.attempts, report.last_error) == ("sent", 2, "")
    assert _stripe_total(account, live) == 30


def test_nothing_is_reported_below_the_allowance(owner, live, traveller):
    client, user, org = owner
    account = _metered(client, org)
    traveller.move_to(T0 + timedelta(days=2, hours=1))
    _events(org, ALLOWANCE, DAY_ONE)  # exactly the allowance

    run = meter.report_usage()

    assert (run.created, run.sent, run.failed) == (0, 0, 0)
    assert not MeterReport.in_org(org).exists() and not _meter_events(live)
    figures = meter.reconcile(account)
    assert (figures.owed, figures.reported, figures.pending) == (0, 0, 0) and figures.matches


def test_the_renewal_invoice_bills_the_overage(owner, live, traveller):
    client, user, org = owner
    account = _metered(client, org)
    traveller.move_to(T0 + timedelta(days=1, hours=1))
    _events(org, ALLOWANCE + 30, DAY_ONE)
    meter.report_usage()
    renewal = account.period_end + timedelta(hours=1)

    traveller.move_to(renewal)
    live.advance(renewal)

    [invoice] = [i for i in live.state.objects.values()
                 if i.get("object") == "invoice" and i["billing_reason"] == "subscription_cycle"]
    metered_price = plans.by_code("team").stripe_metered_price
    [usage] = [line for line in invoice["lines"]["data"]
               if (line["pricing"] or {}).get("price_details", {}).get("price") == metered_price]
    assert usage["quantity"] == 30
    assert usage["amount"] == 6  # $2 per 1,000 events: 0.2 cents each
    assert invoice["status"] == "paid"

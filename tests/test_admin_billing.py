"""The superadmins' billing health page: whether billing is on, meter reports
Stripe has not accepted (with "Retry now", which never counts a report twice),
the latest Stripe events, accounts the sync has not read lately and each
metered account's reconciliation; nobody else can see it."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from costguardian.models import BillingAccount, MeterReport
from costguardian.services.billing import meter, plans
from costguardian.services.usage import ingest
from tests.billing_support import T0, billing_on, live, owner, subscribe, traveller  # noqa: F401
from tests.support import SYSTEM, Client

PAGE = "/admin/billing/"


@pytest.fixture
def superadmin(app, traveller, make_user):
    user = make_user("root@example.com", name="Root", superadmin=True)
    client = Client(app)
    client.sign_in(user.email)
    return client


def _failed_report(client, org, live, traveller) -> MeterReport:
    """Acme on Team (metered, 100 events included) with 30 events beyond it on the first day of the
    period, whose report Stripe refused the next day."""
    plans.update("team", {"events_included": "100"}, SYSTEM)
    subscribe(client)
    traveller.move_to(T0 + timedelta(days=1, hours=1))
    ingest.ingest(org, None, [
        {"event_id": f"a{i}", "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 5,
         "occurred_at": (T0 + timedelta(hours=3)).replace(tzinfo=None).isoformat() + "Z"} for i in range(130)])
    live.fail_next(500, times=3)  # the first try and the library's two retries
    assert meter.report_usage().failed == 1
    return MeterReport.in_org(org).get()


def _row(html: str, testid: str, marker: str) -> str:
    table = html.split(f'data-testid="{testid}"', 1)[1].split("</table>", 1)[0]
    return next(row for row in re.findall(r"<tr.*?</tr>", table, re.S) if marker in row)


def test_a_superadmin_sees_billing_off_and_empty_tables(superadmin):
    html = superadmin.get(PAGE).get_data(as_text=True)

    assert "Billing is <strong>off</strong>" in html
    assert "No failed or pending reports" in html and "No Stripe event received yet." in html
    assert "No account is on a metered plan." in html


def test_owners_and_everyone_else_get_403(owner, billing_on):
    client, user, org = owner

    assert client.get(PAGE).status_code == 403
    assert client.post(f"{PAGE}retry/{org.id}").status_code == 403


def test_the_page_shows_failed_reports_events_and_reconciliation(superadmin, owner, live, traveller):
    client, user, org = owner
    report = _failed_report(client, org, live, traveller)

    html = superadmin.get(PAGE).get_data(as_text=True)

    assert "Billing is <strong>on</strong>" in html
    row = _row(html, "meter-reports", report.identifier)
    assert report.last_error
    for text in ("Acme", "2026-03-10", "<td>0</td>", "<td>30</td>", "failed", "<td>1</td>", report.last_error,
                 f"/admin/billing/retry/{org.id}", "Retry now"):
        assert text in row, text
    assert 'name="csrf_token"' in row
    events = html.split('data-testid="stripe-events"', 1)[1]
    assert "checkout.session.completed" in events and "customer.subscription.created" in events
    reconciled = _row(html, "reconciliation", 'data-org="acme"')
    assert re.findall(r"<td>([\d,]+)</td>", reconciled) == ["30", "0", "30"]  # owed, reported, pending
    assert "pending reports to send" in reconciled
    assert "Every account was synced in the last 36 hours." in html

    traveller.move_to(T0 + timedelta(hours=37))  # the nightly sync missed a night
    html = superadmin.get(PAGE).get_data(as_text=True)
    assert "Acme" in _row(html, "stale-accounts", "cus_")


def test_retry_now_sends_the_failed_report_once(superadmin, owner, live, traveller):
    client, user, org = owner
    report = _failed_report(client, org, live, traveller)

    answer = superadmin.post(f"{PAGE}retry/{org.id}")

    assert answer.status_code == 302 and answer.headers["Location"] == PAGE
    report = MeterReport.get_by_id(report.id)
    assert (report.status, report.attempts, report.last_error) == ("sent", 2, "")
    assert [e["payload"]["value"] for e in live.state.meter_events if e["identifier"] == report.identifier] == ["30"]
    html = superadmin.get(PAGE).get_data(as_text=True)
    assert "1 report(s) sent to Stripe." in html and "No failed or pending reports" in html
    assert "in step" in _row(html, "reconciliation", 'data-org="acme"')


def test_retry_of_a_report_stripe_already_has_marks_it_sent_and_counts_it_once(superadmin, owner, live, traveller,
                                                                               app):
    client, user, org = owner
    report = _failed_report(client, org, live, traveller)
    # Stripe took the report after all (only its answer was lost).
    live.client().v1.billing.meter_events.create(params={
        "event_name": app.config["STRIPE_METER_EVENT_NAME"], "identifier": report.identifier,
        "timestamp": int((T0 + timedelta(hours=11)).timestamp()),
        "payload": {"stripe_customer_id": BillingAccount.in_org(org).get().stripe_customer_id, "value": "30"}})

    superadmin.post(f"{PAGE}retry/{org.id}")

    assert MeterReport.get_by_id(report.id).status == "sent"
    assert len([e for e in live.state.meter_events if e["identifier"] == report.identifier]) == 1


def test_retry_without_the_csrf_token_is_refused(superadmin, owner, live, traveller):
    client, user, org = owner
    report = _failed_report(client, org, live, traveller)

    answer = superadmin.post(f"{PAGE}retry/{org.id}", csrf=False)

    assert answer.status_code == 400
    assert MeterReport.get_by_id(report.id).status == "failed" and not live.state.meter_events

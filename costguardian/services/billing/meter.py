"""Usage-based billing: tracked events beyond the plan's allowance, reported
daily to Stripe's Billing Meter (POST /v1/billing/meter_events).

The billing period is cut into days counted from its start. For each day
up to now (the current one up to its last whole hour), the overage up to its end (events since the period began,
minus the allowance, never below 0) is compared with what was already
reported for the period; the difference becomes one MeterReport with an
identifier of the organization, the day and a revision. Stripe deduplicates
identifiers, so a report whose answer was lost and that is sent again is
counted once; events that arrive late make a new revision (a correction),
never a second copy. Reports that fail stay `failed` and are sent again by
the next run (and show on the superadmin's billing health page)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import IntegrityError, fn

from flask import current_app

from costguardian import clock
from costguardian.extensions import db
from costguardian.models import BillingAccount, MeterReport
from costguardian.services import billing
from costguardian.services.billing import accounts

MAX_AGE = timedelta(days=35)  # Stripe refuses meter events older than this
STALE = timedelta(days=34)  # with a day's margin for the report to arrive


@dataclass
class Run:
    created: int = 0
    sent: int = 0
    failed: int = 0


def _metered_accounts():
    return (BillingAccount.select().where(BillingAccount.stripe_customer_id.is_null(False),
                                          BillingAccount.metered_item_id.is_null(False),
                                          BillingAccount.status.in_(("trialing", "active", "past_due"))))


def _this_period(start: datetime) -> tuple:
    """The reports of the period that began at `start`: a period can restart on
    the day another ended (a new interval, a new subscription), and that day's
    reports of the old period must not count against the new one."""
    return MeterReport.day >= start.date(), MeterReport.created_at >= start


def windows(start: datetime, end: datetime, now: datetime):
    """The period's days (counted from its start) up to `now`: whole days,
    then the day in progress up to the last whole hour (the task runs hourly,
    so an overage is reported within about an hour, also on a period's last day)."""
    day = start
    hour = now.replace(minute=0, second=0, microsecond=0)
    while day < end:
        until = min(day + timedelta(days=1), end)
        if until > now:
            if hour > day:
                yield day, min(hour, until)
            return
        yield day, until
        day = until


def plan_reports(account: BillingAccount, now: datetime) -> int:
    """Create the reports the ended days of the current period still owe."""
    org = account.organization
    access = accounts.access(org, account, now)
    if access.plan.overage != "metered" or not account.period_start or not account.period_end:
        return 0
    start, end = account.period_start, account.period_end
    allowance = accounts.allowance(access, account)
    created = 0
    for day_start, day_end in windows(start, end, now):
        if now - day_end > STALE:
            continue  # Stripe would refuse it; reconcile() shows the gap
        owed = max(0, accounts.events_between(org, start, day_end) - allowance)
        reported = (MeterReport.in_org(org).select(fn.COALESCE(fn.SUM(MeterReport.value), 0))
                    .where(*_this_period(start), MeterReport.day <= day_start.date()).scalar()) or 0
        if owed <= reported:
            continue
        revision = MeterReport.in_org(org).where(MeterReport.day == day_start.date()).count()
        try:
            with db.atomic():
                MeterReport.create(organization=org, day=day_start.date(), revision=revision,
                                   identifier=f"cg-{org.id}-{day_start:%Y%m%d}-{revision}", value=owed - reported)
            created += 1
        except IntegrityError:
            continue  # a concurrent run made it
    return created


def send_pending(account: BillingAccount, client, now: datetime) -> tuple[int, int]:
    """Send the account's pending and failed reports; (sent, failed)."""
    import stripe

    sent = failed = 0
    event_name = current_app.config.get("STRIPE_METER_EVENT_NAME", "cg_tracked_events")
    reports = MeterReport.in_org(account.organization_id).where(MeterReport.status != "sent").order_by(
        MeterReport.day, MeterReport.revision)
    for report in reports:
        moment = min(datetime.combine(report.day, datetime.min.time()) + timedelta(days=1) - timedelta(seconds=1),
                     now)
        if account.period_start and moment < account.period_start:
            moment = account.period_start
        error = ""
        try:
            client.v1.billing.meter_events.create(params={
                "event_name": event_name, "identifier": report.identifier,
                "timestamp": int(moment.replace(tzinfo=clock.now_aware().tzinfo).timestamp()),
                "payload": {"stripe_customer_id": account.stripe_customer_id, "value": str(report.value)}})
        except stripe.InvalidRequestError as exc:
            if "already exists with identifier" not in str(exc.user_message or exc):
                error = billing.stripe_message(exc)
            # else: Stripe has it already (an earlier answer was lost): it counted once
        except stripe.StripeError as exc:
            error = billing.stripe_message(exc)
        values = {"attempts": MeterReport.attempts + 1, "updated_at": clock.now()}
        if error:
            values.update(status="failed", last_error=error[:500])
            failed += 1
        else:
            values.update(status="sent", sent_at=clock.now(), last_error="")
            sent += 1
        MeterReport.update(**values).where(MeterReport.id == report.id).execute()
    return sent, failed


def report_usage(now: datetime | None = None, client=None) -> Run:
    """The hourly task: plan and send every metered organization's reports."""
    run = Run()
    if not billing.enabled():
        return run
    now = now or clock.now()
    client = client or billing.client()
    for account in _metered_accounts():
        run.created += plan_reports(account, now)
        sent, failed = send_pending(account, client, now)
        run.sent += sent
        run.failed += failed
    return run


@dataclass
class Reconciliation:
    owed: int  # overage counted locally for the period so far (ended days)
    reported: int  # sum of the reports Stripe accepted
    pending: int  # sum of reports not yet accepted
    stripe_total: float | None  # what Stripe's meter summarizes for the customer (None: not read)

    @property
    def matches(self) -> bool:
        return self.owed == self.reported and (self.stripe_total is None or int(self.stripe_total) == self.reported)


def reconcile(account: BillingAccount, now: datetime | None = None, client=None, meter_id: str | None = None
              ) -> Reconciliation:
    """Compare the local count with what was reported (and with Stripe's
    meter summary when `meter_id` is given)."""
    now = now or clock.now()
    org = account.organization
    access = accounts.access(org, account, now)
    if not account.period_start or not account.period_end:
        return Reconciliation(0, 0, 0, None)
    start = account.period_start
    ended = [w for w in windows(start, account.period_end, now)]
    until = ended[-1][1] if ended else start
    owed = max(0, accounts.events_between(org, start, until) - accounts.allowance(access, account)) if ended else 0
    rows = MeterReport.in_org(org).where(*_this_period(start))
    reported = sum(r.value for r in rows if r.status == "sent")
    pending = sum(r.value for r in rows if r.status != "sent")
    stripe_total = None
    if meter_id and client is not None:
        minute = lambda d: int(d.replace(second=0, microsecond=0, tzinfo=clock.now_aware().tzinfo).timestamp())  # noqa: E731
        summaries = client.v1.billing.meters.event_summaries.list(meter_id, params={
            "customer": account.stripe_customer_id, "start_time": minute(start),
            "end_time": minute(now) + 60})
        stripe_total = sum(float(s.aggregated_value) for s in summaries.data)
    return Reconciliation(owed, reported, pending, stripe_total)

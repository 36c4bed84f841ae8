"""An organization's billing account and what its subscription's status means
for access: the one table (ACCESS) that docs/BILLING.md shows and a test
compares with it. Also the two measures plans limit: seats and tracked
events per billing period."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from peewee import JOIN, IntegrityError, fn

from costguardian import clock
from costguardian.extensions import db
from costguardian.models import BillingAccount, Invitation, Membership, Organization, Plan, UsageRollup
from costguardian.services.billing import plans
from costguardian.services.usage import rollups
from costguardian.timefmt import format_time

# Stripe's subscription status (or "comped") -> (the subscribed plan's limits apply,
# what owners and billing members read).
# "past_due" keeps the plan for BILLING_GRACE_DAYS after the first failed payment, then Free limits apply.
ACCESS: dict[str, tuple[str, str]] = {
    "": ("Free", ""),
    "trialing": ("plan", ""),
    "active": ("plan", ""),
    "past_due": ("plan during the grace period, then Free",
                 "The last payment failed. Update the payment method before {grace_until} to keep {plan}."),
    "unpaid": ("Free", "Payments kept failing, so Free limits apply. Pay the open invoice to restore {plan}."),
    "incomplete": ("Free", "The first payment for {plan} is not complete. Finish it to start the plan."),
    "incomplete_expired": ("Free", ""),
    "canceled": ("Free", ""),
    "paused": ("Free", "The subscription to {plan} is paused, so Free limits apply."),
    # Not Stripe's: a platform admin granted the plan (set_manual_plan); no Stripe subscription.
    "comped": ("plan", ""),
}


@dataclass
class Access:
    plan: Plan  # the plan whose limits apply now
    subscribed: Plan | None  # the paid plan of the subscription, if any
    status: str  # Stripe's status ("" without a subscription)
    fallen_back: bool  # a subscription exists but Free limits apply
    message: str  # the banner for owners and billing members ("" for none)
    grace_until: datetime | None = None


def account_for(org: Organization) -> BillingAccount:
    """The organization's billing account, created on first use (race-safe)."""
    account = BillingAccount.in_org(org).first()
    if account is not None:
        return account
    try:
        with db.atomic():
            return BillingAccount.create(organization=org)
    except IntegrityError:
        return BillingAccount.in_org(org).get()


def access(org: Organization, account: BillingAccount | None = None, now: datetime | None = None) -> Access:
    """Which plan's limits apply to `org` now, and what to tell its owners."""
    return _decide(account or account_for(org), plans.free(), now or clock.now())


def access_many(orgs: list[Organization], now: datetime | None = None) -> dict[int, Access]:
    """access() of each organization (by id) in two queries, for lists; an
    organization without a billing account is on Free (none is created)."""
    now = now or clock.now()
    free = plans.free()
    found = {a.organization_id: a for a in BillingAccount.select(BillingAccount, Plan)
             .join(Plan, JOIN.LEFT_OUTER).where(BillingAccount.organization.in_([o.id for o in orgs]))}
    return {o.id: _decide(found.get(o.id) or BillingAccount(organization=o), free, now) for o in orgs}


def _decide(account: BillingAccount, free: Plan, now: datetime) -> Access:
    status = account.status or ""
    subscribed = account.plan if account.plan_id and status not in ("", "canceled", "incomplete_expired") else None
    rule, message = ACCESS.get(status, ("Free", ""))
    grace_until = None
    keeps = rule.startswith("plan") and subscribed is not None
    if status == "past_due" and subscribed is not None:
        since = account.past_due_since or now
        grace_until = since + timedelta(days=int(current_app.config.get("BILLING_GRACE_DAYS", 14)))
        if now >= grace_until:
            keeps = False
            message = ("Payments have failed since {since}, so Free limits apply; nothing was deleted. "
                       "Update the payment method to restore {plan}.")
    text = message.format(plan=subscribed.name if subscribed else "the plan",
                          grace_until=format_time(grace_until, account.organization, "day"),
                          since=format_time(account.past_due_since or now, account.organization, "day")) if message else ""
    return Access(plan=subscribed if keeps else free, subscribed=subscribed, status=status,
                  fallen_back=subscribed is not None and not keeps, message=text, grace_until=grace_until)


def allowance(access: Access, account: BillingAccount) -> int:
    """Tracked events included in the current billing period: the plan's
    monthly allowance, twelve times over for a yearly subscription's period."""
    yearly = account.interval == "year" and access.subscribed is not None and not access.fallen_back
    return access.plan.events_included * (12 if yearly else 1)


def period(account: BillingAccount, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The billing period now: the subscription's, else the UTC calendar month."""
    now = now or clock.now()
    if account.period_start and account.period_end and account.period_start <= now < account.period_end \
            and account.status not in ("", "canceled", "incomplete_expired"):
        return account.period_start, account.period_end
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def events_between(org: Organization, start: datetime, end: datetime) -> int:
    """Tracked events (calls recorded by ingest or the gateway) from the hourly
    rollups: every bucket (the organization's local hour) that starts in
    [start, end) counts whole."""
    first = rollups.bucket_at_or_after(rollups.alignment(org), start)
    total = (UsageRollup.select(fn.COALESCE(fn.SUM(UsageRollup.requests), 0))
             .where(UsageRollup.organization == org, UsageRollup.hour >= first, UsageRollup.hour < end).scalar())
    return int(total or 0)


def seats_used(org: Organization, now: datetime | None = None) -> int:
    """Members plus pending invitations: an invitation holds its seat."""
    now = now or clock.now()
    members = Membership.in_org(org).count()
    pending = Invitation.in_org(org).where(Invitation.accepted_at.is_null(), Invitation.revoked_at.is_null(),
                                           Invitation.expires_at > now).count()
    return members + pending


def seats_allowed(org: Organization, account: BillingAccount | None = None) -> int | None:
    """How many seats the organization has now (None: no limit, billing off)."""
    from costguardian.services import billing

    if not billing.enabled():
        return None
    account = account or account_for(org)
    now_access = access(org, account)
    if now_access.plan.is_free:
        return now_access.plan.seats_included
    if account.status == "comped":  # no subscription to add seats to: at least the plan's own
        return max(account.seats or 0, now_access.plan.seats_included)
    return max(account.seats or 0, 1)


def set_manual_plan(org: Organization, plan_code: str, actor) -> BillingAccount:
    """A platform grant (a comped plan): `plan_code`'s limits apply with no
    Stripe subscription (status "comped", monthly allowance); the free plan
    removes the grant. Refused while a live Stripe subscription decides the
    plan. The nightly sync leaves a comped account alone until a live
    subscription replaces it (sync.store)."""
    from costguardian.db import locked
    from costguardian.services.billing import sync
    from costguardian.services.errors import RuleViolation, ValidationError
    from costguardian.services.team import audit

    plan = plans.by_code(plan_code) if isinstance(plan_code, str) and plans.CODE.fullmatch(plan_code) else None
    if plan is None:
        raise ValidationError({"plan": "Choose one of the plans: " + ", ".join(p.code for p in plans.listed()) + "."})
    account = account_for(org)
    with locked(account):
        account = BillingAccount.get_by_id(account.id)
        if account.stripe_subscription_id and account.status in sync.LIVE:
            raise RuleViolation(f"{org.name} pays through a Stripe subscription ({account.status}); cancel it "
                                "before granting a plan by hand.")
        before = account.plan.code if account.plan_id and account.status == "comped" else None
        if plan.is_free:
            if account.status != "comped":
                return account  # nothing granted, nothing to remove
            account.status, account.plan, account.seats = "", None, 0
        else:
            account.status, account.plan, account.interval = "comped", plan, "month"
            account.seats = max(plan.seats_included, seats_used(org))
            account.stripe_subscription_id = account.seat_item_id = account.metered_item_id = None
            account.period_start = account.period_end = account.trial_end = None
            account.cancel_at, account.cancel_at_period_end, account.past_due_since = None, False, None
        account.updated_at = clock.now()
        account.save()
    audit.record(actor, "billing.plan_granted" if not plan.is_free else "billing.grant_removed", org=org,
                 target=account, plan=plan.code, before=before)
    return account

"""The plan's limits where the product enforces them: seats (inviting beyond
them is refused), tracked events (warnings at 80% and 100%; usage is never
dropped: metered plans bill the overage, the others show "over plan") and
feature flags. With billing off, nothing here limits anything."""
from __future__ import annotations

from datetime import datetime

from flask import url_for

from costguardian import clock
from costguardian.models import BillingAccount, Organization
from costguardian.services import billing
from costguardian.services.billing import accounts
from costguardian.services.errors import RuleViolation
from costguardian.timefmt import format_time

WARN_AT = (80, 100)


class SeatLimit(RuleViolation):
    """Adding people would go beyond the plan's seats."""

    def __init__(self, message: str, upgrade_url: str):
        super().__init__(message)
        self.upgrade_url = upgrade_url


def seats_held(org: Organization):
    """A transaction holding the billing account's row lock (billing on), in
    which seats are counted and taken; a no-op context with billing off."""
    from contextlib import nullcontext

    from costguardian.db import locked

    if not billing.enabled():
        return nullcontext()
    return locked(accounts.account_for(org))


def check_seats(org: Organization, adding: int) -> None:
    """Refuse `adding` more people (members or invitations) beyond the seats."""
    if adding <= 0 or not billing.enabled():
        return
    account = accounts.account_for(org)
    allowed = accounts.seats_allowed(org, account)
    used = accounts.seats_used(org)
    if allowed is None or used + adding <= allowed:
        return
    access = accounts.access(org, account)
    needed = used + adding
    try:
        url = url_for("billing.index", seats=needed) + "#change"
    except RuntimeError:  # outside a request (CLI)
        url = "/billing/"
    if access.plan.is_free:
        message = (f"{org.name} is on the {access.plan.name} plan, which includes {allowed} seats; "
                   f"{used} are taken (members and pending invitations). Upgrade to invite more people.")
    elif access.plan.extra_seats:
        message = (f"All {allowed} seats of {access.plan.name} are taken ({used} members and pending invitations). "
                   f"Add seats on the billing page (prorated) to invite {adding} more.")
    else:
        message = (f"All {allowed} seats of {access.plan.name} are taken. Change to a plan with more seats "
                   "to invite more people.")
    raise SeatLimit(message, url)


def forced_feature(org: Organization, feature: str) -> bool | None:
    """A platform admin's override of the plan for this organization
    (Organization.feature_overrides): True or False, None when the plan decides."""
    value = (org.feature_overrides or {}).get(feature)
    return value if isinstance(value, bool) else None


def _label(feature: str) -> str:
    from costguardian.models.billing import FEATURES

    label = FEATURES[feature]
    return label if label[:2].isupper() else label[0].lower() + label[1:]  # "LLM gateway", "webhooks"


def has_feature(org: Organization, feature: str) -> bool:
    """Whether `org` has `feature`: a platform admin's override, else the plan
    that applies now (always, with billing off)."""
    forced = forced_feature(org, feature)
    if forced is not None:
        return forced
    if not billing.enabled():
        return True
    return accounts.access(org).plan.has(feature)


def feature_refusal(org: Organization, feature: str) -> str | None:
    """Why `feature` cannot be turned on for `org` now (None: it can): a
    platform admin turned it off, or the plan that applies lacks it."""
    forced = forced_feature(org, feature)
    if forced is not None:
        return None if forced else (f"The platform's administrators turned off {_label(feature)} for {org.name}; "
                                    "contact them to have it back.")
    if not billing.enabled():
        return None
    plan = accounts.access(org).plan
    if plan.has(feature):
        return None
    return (f"The {plan.name} plan does not include {_label(feature)}. An owner or billing member "
            "can upgrade on the billing page.")


# organization id -> (refusal or None, monotonic time read): the gateway asks on
# every call, so the answer is kept for a short while per process.
_GATEWAY_ANSWERS: dict[int, tuple[str | None, float]] = {}
GATEWAY_ANSWER_SECONDS = 30.0


def gateway_refusal(org: Organization) -> str | None:
    """Why the gateway refuses `org`'s calls (a platform admin's override, or
    its plan leaves the gateway out), or None. The override is read from the
    organization row the key brought; the plan only with billing on, and its
    answer is kept for GATEWAY_ANSWER_SECONDS, so a plan change reaches the
    gateway within that."""
    if forced_feature(org, "gateway") is not None:
        return feature_refusal(org, "gateway")
    if not billing.enabled():
        return None
    now = clock.monotonic()
    known = _GATEWAY_ANSWERS.get(org.id)
    if known is not None and now - known[1] < GATEWAY_ANSWER_SECONDS:
        return known[0]
    refusal = feature_refusal(org, "gateway")
    _GATEWAY_ANSWERS[org.id] = (refusal, now)
    return refusal


def _consequence(plan) -> str:
    if plan.overage == "metered":
        return "Events beyond it are still recorded and billed per 1,000."
    return "Events beyond it are still recorded; the organization shows as over its plan."


def allowance_message(org: Organization, account: BillingAccount, access) -> str:
    """The banner about tracked events, from the last periodic count ("" below 80%)."""
    start, end = accounts.period(account)
    if account.events_counted_at is None or not start <= account.events_counted_at < end:
        return ""
    allowance = accounts.allowance(access, account)
    if not allowance:
        return ""
    percent = 100 * account.events_counted // allowance
    if percent < WARN_AT[0]:
        return ""
    if account.events_counted > allowance:
        return (f"Over plan: {account.events_counted:,} tracked events this period, {allowance:,} included in "
                f"{access.plan.name}. {_consequence(access.plan)}")
    return (f"{percent}% of {access.plan.name}'s {allowance:,} tracked events used this period "
            f"(until {format_time(end, org, 'day')}).")


def check_allowances(now: datetime | None = None) -> int:
    """Count every organization's tracked events this period, store the count
    for the banner, and notify at 80% and 100% (once per period and level).
    Returns how many notices were sent."""
    from costguardian.services.notifications import notify as notifications

    if not billing.enabled():
        return 0
    now = now or clock.now()
    sent = 0
    for org in Organization.select():
        account = accounts.account_for(org)
        access = accounts.access(org, account, now)
        start, end = accounts.period(account, now)
        events = accounts.events_between(org, start, end)
        allowance = accounts.allowance(access, account)
        warned = account.events_warned if account.events_warned.startswith(start.date().isoformat()) else ""
        level = max((w for w in WARN_AT if allowance and events * 100 >= allowance * w), default=None)
        BillingAccount.update(events_counted=events, events_counted_at=now).where(
            BillingAccount.id == account.id).execute()
        if level is None or (warned and int(warned.rsplit(":", 1)[1]) >= level):
            continue
        notifications.notify(org, "billing.events_allowance", {
            "percent": level, "plan": access.plan.name, "events": f"{events:,}", "allowance": f"{allowance:,}",
            "period_end": format_time(end, org, "day"), "consequence": _consequence(access.plan)},
            once=f"billing.events_allowance:{start.date().isoformat()}:{level}")
        BillingAccount.update(events_warned=f"{start.date().isoformat()}:{level}").where(
            BillingAccount.id == account.id).execute()
        sent += 1
    return sent

"""The platform console's organizations: the list (plan, members, this
month's spend and events, status), one organization's whole picture, and a
superadmin's actions on it: create, suspend and reinstate, schedule and
cancel deletion (the daily purge deletes it after the grace period),
transfer ownership and per-organization feature flags. Every change is
audit-logged; the JSON API (/api/v1/admin/organizations) calls the same
functions. Comped plans are services/billing/accounts.set_manual_plan."""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from peewee import JOIN, fn

from costguardian import clock, permissions
from costguardian.db import locked, write_transaction
from costguardian.models import (ApiKey, AuditLog, BillingAccount, Department, Membership, Organization, UsageRollup,
                                 User)
from costguardian.models.billing import FEATURES
from costguardian.models.org import MAX_ID
from costguardian.services.actor import Actor
from costguardian.services.billing import accounts, plans
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.services.platform.guards import require_superadmin
from costguardian.services.team import audit, orgs as team_orgs

log = logging.getLogger(__name__)

PER_PAGE = 50
DELETION_GRACE = timedelta(days=30)  # from "delete" to the purge; cancellable until then
STATUSES = {"active": "Active", "suspended": "Suspended", "deletion": "Deletion scheduled"}
MAX_REASON = 500
AUDIT_SHOWN = 50
FEATURE_CHOICES = ("inherit", "on", "off")
# The suspension a scheduled deletion starts; cancelling the deletion lifts it.
DELETION_NOTICE = "Scheduled for deletion on {day} (UTC)."


def status_of(org: Organization) -> str:
    if org.delete_after is not None:
        return "deletion"
    return "suspended" if org.suspended_at is not None else "active"


def find(ref) -> Organization | None:
    """An organization by id (digits) or slug."""
    text = str(ref or "").strip()
    if text.isascii() and text.isdigit():
        return Organization.get_or_none(Organization.id == int(text)) if 0 < int(text) <= MAX_ID else None
    return Organization.get_or_none(Organization.slug == text.lower()) if text else None


# --- the list --------------------------------------------------------------------

def parse_filters(args) -> tuple[dict, int, dict[str, str]]:
    """The list's filters from a query string: (filters, page, errors). An
    unknown status or plan is an error, and that filter then matches nothing."""
    errors: dict[str, str] = {}
    filters = {"q": (args.get("q") or "").strip()[:200], "status": "", "plan": ""}
    status = (args.get("status") or "").strip()
    if status in STATUSES:
        filters["status"] = status
    elif status:
        errors["status"] = "Choose active, suspended or deletion."
        filters["status"] = "none"
    plan = (args.get("plan") or "").strip()
    if plan:
        filters["plan"] = plan
        if not plans.CODE.fullmatch(plan) or plans.by_code(plan) is None:
            errors["plan"] = "One of the plans: " + ", ".join(p.code for p in plans.listed()) + "."
    try:
        page = min(max(int(args.get("page") or 1), 1), 100_000)
    except (TypeError, ValueError):
        page = 1
    return filters, page, errors


def _on_plan(plan, now: datetime):
    """SQL: the organizations whose billing account makes `plan` apply now
    (accounts.access, in SQL: the statuses ACCESS gives the plan, past_due
    within its grace period)."""
    from flask import current_app

    keeping = [status for status, (rule, _) in accounts.ACCESS.items() if rule == "plan"]
    grace = timedelta(days=int(current_app.config.get("BILLING_GRACE_DAYS", 14)))
    applies = BillingAccount.status.in_(keeping) | (
        (BillingAccount.status == "past_due")
        & (BillingAccount.past_due_since.is_null() | (BillingAccount.past_due_since > now - grace)))
    return BillingAccount.select(BillingAccount.organization).where(
        BillingAccount.plan.is_null(False), BillingAccount.plan == plan.id, applies)


def _filtered(filters: dict, now: datetime):
    query = Organization.select()
    if filters.get("q"):
        q = filters["q"]
        query = query.where(Organization.name.contains(q) | Organization.slug.contains(q))  # case-insensitive
    status = filters.get("status")
    if status == "active":
        query = query.where(Organization.suspended_at.is_null(), Organization.delete_after.is_null())
    elif status == "suspended":
        query = query.where(Organization.suspended_at.is_null(False), Organization.delete_after.is_null())
    elif status == "deletion":
        query = query.where(Organization.delete_after.is_null(False))
    elif status:
        query = query.where(Organization.id == 0)
    if filters.get("plan"):
        plan = plans.by_code(filters["plan"]) if plans.CODE.fullmatch(filters["plan"]) else None
        if plan is None:
            query = query.where(Organization.id == 0)
        elif plan.is_free:  # every organization no other plan applies to
            paid = [p for p in plans.listed() if not p.is_free]
            for other in paid:
                query = query.where(Organization.id.not_in(_on_plan(other, now)))
        else:
            query = query.where(Organization.id.in_(_on_plan(plan, now)))
    return query


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar month of `now`: the list's "this month" for every organization alike."""
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, (start + timedelta(days=32)).replace(day=1)


def search(filters: dict, page: int = 1, per_page: int = PER_PAGE) -> tuple[list[dict], int]:
    """One page of organizations, newest first, and how many match. Each row:
    id, name, slug, plan (the name of the plan that applies now), plan_code,
    members, spend_nanos_month, events_month (the UTC calendar month),
    status, created_at, delete_after. A fixed handful of queries (seven)
    whatever the page size."""
    now = clock.now()
    query = _filtered(filters, now)
    total = query.count()
    found = list(query.order_by(Organization.created_at.desc(), Organization.id.desc())
                 .offset((max(page, 1) - 1) * per_page).limit(per_page))
    ids = [o.id for o in found]
    if not ids:
        return [], total
    members = dict(Membership.select(Membership.organization, fn.COUNT(Membership.id))
                   .where(Membership.organization.in_(ids)).group_by(Membership.organization).tuples())
    start, end = month_bounds(now)
    usage = {org_id: (int(cost or 0), int(requests or 0)) for org_id, cost, requests in
             UsageRollup.select(UsageRollup.organization, fn.SUM(UsageRollup.cost_nanos), fn.SUM(UsageRollup.requests))
             .where(UsageRollup.organization.in_(ids), UsageRollup.hour >= start, UsageRollup.hour < end)
             .group_by(UsageRollup.organization).tuples()}
    access = accounts.access_many(found, now)
    rows = []
    for org in found:
        cost, events = usage.get(org.id, (0, 0))
        plan = access[org.id].plan
        rows.append({"id": org.id, "name": org.name, "slug": org.slug, "plan": plan.name, "plan_code": plan.code,
                     "members": members.get(org.id, 0), "spend_nanos_month": cost, "events_month": events,
                     "status": status_of(org), "created_at": org.created_at, "delete_after": org.delete_after})
    return rows, total


# --- one organization --------------------------------------------------------------

def _usage_by_provider(org: Organization, first: date, last: date):
    from costguardian.services.usage import queries

    rows = queries.summarize(org, queries.UsageFilter(start=first, end=last), "provider")
    total = queries.Totals()
    for row in rows:
        total.add(row)
    return {"first": first, "last": last, "rows": rows, "total": total}


def features(org: Organization, plan) -> list[dict]:
    """Each plan feature: what the plan gives, the override, and what applies."""
    from costguardian.services import billing

    rows = []
    for name, label in FEATURES.items():
        forced = (org.feature_overrides or {}).get(name)
        forced = forced if isinstance(forced, bool) else None
        by_plan = plan.has(name) or not billing.enabled()
        rows.append({"name": name, "label": label, "plan": plan.has(name), "forced": forced,
                     "choice": "inherit" if forced is None else ("on" if forced else "off"),
                     "effective": by_plan if forced is None else forced})
    return rows


def detail(org: Organization, actor: Actor, now: datetime | None = None, record: bool = True) -> dict:
    """Everything the console shows about one organization; the read is
    audit-logged ("platform.viewed") unless `record` is False."""
    from costguardian.services.budgets import budgets
    from costguardian.services.usage import queries

    now = now or clock.now()
    members = list(Membership.in_org(org).select(Membership, User, Department).join(User)
                   .switch(Membership).join(Department, JOIN.LEFT_OUTER, on=(Membership.department == Department.id))
                   .order_by(Membership.role != permissions.OWNER, fn.LOWER(User.name), User.email))
    keys = list(ApiKey.in_org(org).order_by(ApiKey.created_at.desc(), ApiKey.id.desc()))
    account = BillingAccount.in_org(org).first() or BillingAccount(organization=org)
    access = accounts.access(org, account, now)
    today = queries.today(org)
    this_first, this_last = queries.month_range(today)
    last_first, last_last = queries.month_range(this_first - timedelta(days=1))
    trail = list(AuditLog.select(AuditLog, User).join(User, JOIN.LEFT_OUTER, on=(AuditLog.actor == User.id))
                 .where(AuditLog.organization == org).order_by(AuditLog.id.desc()).limit(AUDIT_SHOWN))
    if record:
        audit.record(actor, "platform.viewed", org=org, target=org, page="organization")
    return {
        "org": org, "org_status": status_of(org), "members": members, "keys": keys, "now": now,
        "budgets": budgets.org_statuses(org, now), "account": account, "access": access,
        "seats_used": accounts.seats_used(org, now),
        "this_month": _usage_by_provider(org, this_first, today),
        "last_month": _usage_by_provider(org, last_first, last_last),
        "audit": trail, "features": features(org, access.plan), "plans": plans.listed(),
    }


# --- actions ---------------------------------------------------------------------

def create(name: str, owner_email: str, actor: Actor, time_zone: str = "UTC") -> Organization:
    """A new organization whose first owner is an existing account."""
    require_superadmin(actor)  # the console checks too; the API and any other caller get the same rule
    errors: dict[str, str] = {}
    try:
        team_orgs.validated_settings(name, time_zone, "USD")
    except ValidationError as exc:
        errors.update(exc.errors)
    email = (owner_email or "").strip()
    owner = User.by_email(email) if email else None
    if not email:
        errors["owner_email"] = "Enter the email address of the account that will own it."
    elif owner is None:
        errors["owner_email"] = f"No account uses {email[:254]}; the owner must sign up (or be invited) first."
    elif owner.is_disabled:
        errors["owner_email"] = f"{owner.email}'s account is disabled; enable it first or choose someone else."
    if errors:
        raise ValidationError(errors)
    return team_orgs.create_organization(name, owner, actor, time_zone=time_zone)


def _reason(reason) -> str:
    text = (reason or "").strip() if isinstance(reason, str) else ""
    if not text:
        raise ValidationError({"reason": "Give the reason; the organization's members will read it."})
    if len(text) > MAX_REASON:
        raise ValidationError({"reason": f"At most {MAX_REASON} characters."})
    return text


def suspend(org: Organization, reason: str, actor: Actor) -> Organization:
    """Members see a notice with `reason`; ingest and gateway answer 403.
    Nothing is deleted. Suspending a suspended organization changes the reason."""
    require_superadmin(actor)  # the console checks too; the API and any other caller get the same rule
    reason = _reason(reason)
    already = org.suspended_at is not None
    org.suspended_at = org.suspended_at or clock.now()
    org.suspended_reason, org.updated_at = reason, clock.now()
    org.save(only=[Organization.suspended_at, Organization.suspended_reason, Organization.updated_at])
    audit.record(actor, "org.suspended", org=org, target=org, reason=reason, **({"updated": True} if already else {}))
    return org


def unsuspend(org: Organization, actor: Actor) -> Organization:
    require_superadmin(actor)  # the console checks too; the API and any other caller get the same rule
    if org.suspended_at is None:
        raise RuleViolation(f"{org.name} is not suspended.")
    if org.delete_after is not None:
        raise RuleViolation(f"{org.name} is to be deleted: cancel the deletion to reinstate it.")
    reason = org.suspended_reason
    org.suspended_at, org.suspended_reason, org.updated_at = None, "", clock.now()
    org.save(only=[Organization.suspended_at, Organization.suspended_reason, Organization.updated_at])
    audit.record(actor, "org.unsuspended", org=org, target=org, reason=reason)
    return org


def suspension_detail(org: Organization) -> str:
    """What the ingest API and the gateway tell a suspended organization's callers."""
    reason = f" ({org.suspended_reason.strip().rstrip('.')})" if org.suspended_reason.strip() else ""
    return (f"The organization {org.name} is suspended by the platform's administrators{reason}. Calls are "
            "refused until it is reinstated; nothing was deleted.")


def _live_subscription(org: Organization) -> BillingAccount | None:
    from costguardian.services.billing import sync

    account = BillingAccount.in_org(org).first()
    if account is not None and account.stripe_subscription_id and account.status in sync.LIVE:
        return account
    return None


def schedule_deletion(org: Organization, actor: Actor, confirm: str) -> Organization:
    """Delete `org` after DELETION_GRACE (the daily purge does it), once
    `confirm` is its slug. It is suspended at once (unless it already is),
    so members see the date; cancel_deletion undoes both."""
    require_superadmin(actor)  # the console checks too; the API and any other caller get the same rule
    if (confirm or "").strip() != org.slug:
        raise ValidationError({"confirm": f"Type the organization's address, {org.slug}, to confirm."})
    if org.delete_after is not None:
        raise RuleViolation(f"{org.name} is already scheduled for deletion on {org.delete_after:%Y-%m-%d}.")
    account = _live_subscription(org)
    if account is not None:
        raise RuleViolation(f"{org.name} pays through a Stripe subscription ({account.status}); cancel it first, "
                            "so nobody is billed for a deleted organization.")
    now = clock.now()
    org.delete_after, org.updated_at = now + DELETION_GRACE, now
    suspended = org.suspended_at is None
    if suspended:
        org.suspended_at, org.suspended_reason = now, DELETION_NOTICE.format(day=f"{org.delete_after:%Y-%m-%d}")
    org.save(only=[Organization.delete_after, Organization.suspended_at, Organization.suspended_reason,
                   Organization.updated_at])
    audit.record(actor, "org.deletion_scheduled", org=org, target=org,
                 delete_after=org.delete_after.isoformat(timespec="minutes"), suspended=suspended)
    return org


def cancel_deletion(org: Organization, actor: Actor) -> Organization:
    require_superadmin(actor)  # the console checks too; the API and any other caller get the same rule
    if org.delete_after is None:
        raise RuleViolation(f"{org.name} is not scheduled for deletion.")
    lifted = org.suspended_reason == DELETION_NOTICE.format(day=f"{org.delete_after:%Y-%m-%d}")
    org.delete_after, org.updated_at = None, clock.now()
    if lifted:
        org.suspended_at, org.suspended_reason = None, ""
    org.save(only=[Organization.delete_after, Organization.suspended_at, Organization.suspended_reason,
                   Organization.updated_at])
    audit.record(actor, "org.deletion_cancelled", org=org, target=org, unsuspended=lifted)
    return org


def purge_due(now: datetime | None = None) -> int:
    """Delete every organization whose grace period is over, with everything
    it owns (the database cascades), and write an audit row without an
    organization naming it. One with a live Stripe subscription is kept and
    logged (it was subscribed during the grace period). Returns how many."""
    now = now or clock.now()
    purged = 0
    for org in Organization.select().where(Organization.delete_after.is_null(False),
                                           Organization.delete_after <= now).order_by(Organization.id):
        if _live_subscription(org) is not None:
            log.warning("organization %s is due for deletion but has a live Stripe subscription; kept", org.id)
            continue
        scheduled = (AuditLog.select(AuditLog, User).join(User, JOIN.LEFT_OUTER, on=(AuditLog.actor == User.id))
                     .where(AuditLog.organization == org, AuditLog.action == "org.deletion_scheduled")
                     .order_by(AuditLog.id.desc()).first())
        with write_transaction():  # the condition again: a deletion cancelled meanwhile stands
            deleted = Organization.delete().where(Organization.id == org.id, Organization.delete_after <= now).execute()
        if not deleted:
            continue
        audit.record(Actor.system(), "org.deleted", org=None, organization_id=org.id, name=org.name, slug=org.slug,
                     delete_after=org.delete_after.isoformat(timespec="minutes"),
                     scheduled_by=scheduled.actor.email if scheduled is not None and scheduled.actor else None)
        purged += 1
    return purged


def transfer_ownership(org: Organization, membership_id, actor: Actor) -> Membership:
    """Make one member the organization's only owner; the previous owners stay
    members, as admins."""
    require_superadmin(actor)  # the console checks too; the API and any other caller get the same rule
    from costguardian.services.team.members import parse_id

    number = parse_id(membership_id) if membership_id not in (None, "") else None
    target = Membership.get_in_org(org, number) if number else None
    if target is None:
        raise ValidationError({"member": "Choose a member of this organization."})
    with locked(org):
        target = Membership.get_or_none(Membership.id == target.id)
        if target is None:
            raise RuleViolation("This person is no longer a member.")
        if target.user.is_disabled:
            raise RuleViolation(f"{target.user.email}'s account is disabled: enable it first, or choose another "
                                "member.")
        previous = list(Membership.in_org(org).select(Membership, User).join(User)
                        .where(Membership.role == permissions.OWNER, Membership.id != target.id))
        if target.role == permissions.OWNER and not previous:
            raise RuleViolation(f"{target.user.email} already is the only owner.")
        Membership.update(role=permissions.ADMIN).where(Membership.id.in_([m.id for m in previous])).execute()
        old_role = target.role
        Membership.update(role=permissions.OWNER).where(Membership.id == target.id).execute()
    audit.record(actor, "org.ownership_transferred", org=org, target=target, user=target.user.email,
                 old_role=old_role, previous_owners=[m.user.email for m in previous])
    return Membership.get_by_id(target.id)


def set_plan(org: Organization, plan_code: str, actor: Actor):
    """A comped plan granted from the console (or the free plan, which ends
    the grant): billing.accounts.set_manual_plan under the platform's rule."""
    require_superadmin(actor)  # the console checks too; the API and any other caller get the same rule
    return accounts.set_manual_plan(org, plan_code, actor)


def set_features(org: Organization, choices: dict, actor: Actor) -> Organization:
    """Force plan features on or off for this organization, or let the plan
    decide ("inherit"): `choices` maps feature names to on/off/inherit (a
    feature left out keeps its setting)."""
    require_superadmin(actor)  # the console checks too; the API and any other caller get the same rule
    errors = {f"feature.{name}": "Choose inherit, on or off." for name, value in choices.items()
              if name in FEATURES and value not in FEATURE_CHOICES}
    errors.update({f"feature.{name}": "Not a plan feature." for name in choices if name not in FEATURES})
    if errors:
        raise ValidationError(errors)
    current = {k: v for k, v in (org.feature_overrides or {}).items() if k in FEATURES and isinstance(v, bool)}
    wanted = dict(current)
    for name, value in choices.items():
        if value == "inherit":
            wanted.pop(name, None)
        else:
            wanted[name] = value == "on"
    if wanted == current:
        return org
    changes = {name: [_word(current.get(name)), _word(wanted.get(name))] for name in FEATURES
               if current.get(name) != wanted.get(name)}
    org.feature_overrides, org.updated_at = wanted, clock.now()
    org.save(only=[Organization.feature_overrides, Organization.updated_at])
    audit.record(actor, "org.features_changed", org=org, target=org, changes=changes)
    return org


def _word(value: bool | None) -> str:
    return "inherit" if value is None else ("on" if value else "off")

"""What people do to their own data: a member deletes their own account, and
an organization's owner schedules (or cancels) its deletion.

The rules are the platform console's (services/platform/users.py and
services/platform/orgs.py), checked here for a person acting on their own:
the last owner of an organization cannot leave it ownerless, the last active
superadmin cannot disappear, an organization paying through a live Stripe
subscription is not deleted, and the deletion waits DELETION_GRACE (the
daily purge, `orgs.purge_due`, carries it out). A deletion a platform admin
scheduled is theirs to cancel, not the owners'. Nothing here works while a
platform admin acts as someone else. Every step is audit-logged.
"""
from __future__ import annotations

from peewee import JOIN

from costguardian import clock, permissions
from costguardian.extensions import db
from costguardian.models import ApiKey, AuditLog, Membership, Organization, PlatformToken, User, UserSession
from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted, RuleViolation, ValidationError
from costguardian.services.platform import orgs as platform_orgs, users as platform_users
from costguardian.services.team import audit


def _only_yourself(actor: Actor, user: User | None = None) -> None:
    if actor.impersonator is not None:
        raise NotPermitted("Not while acting as someone else: only the person themselves can do this.")
    if actor.user is None or (user is not None and actor.user.id != user.id):
        raise NotPermitted("Only the account's own user can do this.")


# --- a member's own account -------------------------------------------------------

def account_deletion_refusal(user: User) -> str | None:
    """Why the user may not delete their account now, or None."""
    lonely = platform_users.last_owner_of(user)
    if lonely:
        names = ", ".join(org.name for org in lonely)
        return (f"You are the last owner of {names}: make another member owner first, or delete the "
                "organization in its settings.")
    others = (User.select().where(User.platform_role == "superadmin", User.is_disabled == False,  # noqa: E712
                                  User.id != user.id).count())
    if user.is_superadmin and others == 0:
        return "You are the last active superadmin: make someone else superadmin first."
    return None


def delete_own_account(user: User, actor: Actor, confirm: str) -> None:
    """Delete the signed-in user's account for good, once `confirm` is their
    email address: as the console's delete_user (memberships, sessions,
    identities, tokens and notifications go with it; API keys they created
    stay with the organization; audit rows stay with the actor emptied)."""
    _only_yourself(actor, user)
    problem = account_deletion_refusal(user)
    if problem:
        raise RuleViolation(problem)
    if (confirm or "").strip().lower() != user.email:
        raise ValidationError({"confirm": f"Type your email address ({user.email}) to confirm."})
    memberships = [{"id": m.organization_id, "name": m.organization.name, "role": m.role}
                   for m in Membership.for_user(user)]
    keys_kept = ApiKey.select().where(ApiKey.created_by == user).count()
    with db.atomic():
        audit.record(actor, "user.deleted", target=user, email=user.email, name=user.name, self_service=True,
                     platform_role=user.platform_role, organizations=memberships, api_keys_kept=keys_kept)
        UserSession.delete().where(UserSession.user == user).execute()
        PlatformToken.delete().where(PlatformToken.user == user).execute()
        User.delete().where(User.id == user.id).execute()


# --- an organization's deletion, by its owners -------------------------------------

def _require_owner(org: Organization, actor: Actor) -> None:
    _only_yourself(actor)
    membership = Membership.of(actor.user, org)
    if membership is None or membership.role != permissions.OWNER:
        raise NotPermitted("Only an owner can delete the organization.")


def scheduled_by_owner(org: Organization) -> bool:
    """Was the pending deletion scheduled by one of the organization's owners
    (so that owners may cancel it)? False when none is pending."""
    if org.delete_after is None:
        return False
    row = (AuditLog.select(AuditLog.detail).where(AuditLog.organization == org,
                                                  AuditLog.action == "org.deletion_scheduled")
           .order_by(AuditLog.id.desc()).first())
    return row is not None and bool((row.detail or {}).get("by_owner"))


def deletion_refusal(org: Organization) -> str | None:
    """Why the organization cannot be scheduled for deletion now, or None."""
    if org.delete_after is not None:
        return f"{org.name} is already scheduled for deletion on {org.delete_after:%Y-%m-%d}."
    account = platform_orgs._live_subscription(org)
    if account is not None:
        return (f"{org.name} pays through a Stripe subscription ({account.status}); cancel it on the Billing page "
                "first, so nobody is billed for a deleted organization.")
    return None


def schedule_org_deletion(org: Organization, actor: Actor, confirm: str) -> Organization:
    """Delete `org` after the grace period, once `confirm` is its address
    (slug). As in the console, the organization is suspended at once (its
    ingest API and gateway refuse calls, members see the date); cancelling
    lifts both. The owners are notified."""
    _require_owner(org, actor)
    problem = deletion_refusal(org)
    if problem:
        raise RuleViolation(problem)
    if (confirm or "").strip() != org.slug:
        raise ValidationError({"confirm": f"Type the organization's address, {org.slug}, to confirm."})
    now = clock.now()
    org.delete_after, org.updated_at = now + platform_orgs.DELETION_GRACE, now
    suspended = org.suspended_at is None
    if suspended:
        org.suspended_at = now
        org.suspended_reason = platform_orgs.DELETION_NOTICE.format(day=f"{org.delete_after:%Y-%m-%d}")
    org.save(only=[Organization.delete_after, Organization.suspended_at, Organization.suspended_reason,
                   Organization.updated_at])
    audit.record(actor, "org.deletion_scheduled", org=org, target=org, by_owner=True,
                 delete_after=org.delete_after.isoformat(timespec="minutes"), suspended=suspended)
    _tell_owners(org, "org.deletion_scheduled", actor)
    return org


def cancel_org_deletion(org: Organization, actor: Actor) -> Organization:
    """Keep the organization: undo a deletion an owner scheduled."""
    _require_owner(org, actor)
    if org.delete_after is None:
        raise RuleViolation(f"{org.name} is not scheduled for deletion.")
    if not scheduled_by_owner(org):
        raise RuleViolation("The platform's administrators scheduled this deletion; ask them to cancel it.")
    lifted = org.suspended_reason == platform_orgs.DELETION_NOTICE.format(day=f"{org.delete_after:%Y-%m-%d}")
    org.delete_after, org.updated_at = None, clock.now()
    if lifted:
        org.suspended_at, org.suspended_reason = None, ""
    org.save(only=[Organization.delete_after, Organization.suspended_at, Organization.suspended_reason,
                   Organization.updated_at])
    audit.record(actor, "org.deletion_cancelled", org=org, target=org, by_owner=True, unsuspended=lifted)
    _tell_owners(org, "org.deletion_cancelled", actor)
    return org


def _tell_owners(org: Organization, event_type: str, actor: Actor) -> None:
    from costguardian.services.notifications import notify

    owners = list(Membership.in_org(org).select(Membership, User).join(User, JOIN.INNER)
                  .where(Membership.role == permissions.OWNER))
    notify.notify(org, event_type, {"by": actor.user.email if actor.user else "",
                                    "day": f"{org.delete_after:%Y-%m-%d}" if org.delete_after else ""},
                  recipients=owners)

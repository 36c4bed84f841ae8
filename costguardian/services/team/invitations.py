"""Invitations: invite many addresses at once (a result per address), resend,
revoke, and accept with the single-use emailed token (only its SHA-256 is
stored), by a new or an existing account with the invited address."""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, has_request_context
from peewee import JOIN

from costguardian import clock
from costguardian import permissions
from costguardian.db import write_transaction
from costguardian.models import Department, Invitation, Membership, Organization, User
from costguardian.services.notifications import notify as notifications
from costguardian.services.team import audit, orgs
from costguardian.services.team.accounts import normalize_email
from costguardian.services.actor import Actor
from costguardian.services.billing import limits
from costguardian.services.errors import NotPermitted, RuleViolation, ValidationError
from costguardian.timefmt import format_time

TTL_DAYS = 7
MAX_ADDRESSES = 500
_SEPARATORS = re.compile(r"[\s,;]+")

INVITED, INVALID, DUPLICATE, MEMBER, PENDING = "invited", "invalid", "duplicate", "member", "pending"
RESULT_LABELS = {INVITED: "Invited", INVALID: "Invalid address", DUPLICATE: "Duplicate in the list",
                 MEMBER: "Already a member", PENDING: "Already invited (pending)"}


@dataclass
class InviteResult:
    address: str  # as typed
    status: str  # one of RESULT_LABELS
    message: str
    invitation: Invitation | None = None

    @property
    def ok(self) -> bool:
        return self.status == INVITED


def token_hash(token: str) -> str:
    return hashlib.sha256((token or "").encode()).hexdigest()


def split_addresses(text) -> list[str]:
    """The addresses in pasted text (one a line, or separated by commas,
    semicolons or spaces), or in a list of strings: one address per item
    (the JSON API's `emails`: each item gets its own result, a blank or
    "a@x.com, b@y.com" item the result invalid)."""
    if isinstance(text, (list, tuple)):
        return [str(part).strip() for part in text]
    return [part for part in _SEPARATORS.split(text or "") if part]


def _check_role(org: Organization, actor: Actor, role: str) -> None:
    if role not in permissions.ROLES:
        raise ValidationError({"role": "Choose a role from the list."})
    grantable = orgs.roles_actor_may_grant(org, actor)
    if not grantable:
        raise NotPermitted("You cannot invite people to this organization.")
    if role not in grantable:
        raise NotPermitted(f"Your role cannot grant the {role} role.")


def invite(org: Organization, addresses, role: str, actor: Actor, department: Department | None = None,
           ttl_days: int = TTL_DAYS) -> list[InviteResult]:
    """Invite each address (see split_addresses) with `role` and optional
    `department`; one result per address, in the order given."""
    _check_role(org, actor, role)
    if department is not None and department.organization_id != org.id:
        raise ValidationError({"department": "Choose a department of this organization."})
    typed = split_addresses(addresses)
    if not typed:
        raise ValidationError({"emails": "Enter at least one email address."})
    if len(typed) > MAX_ADDRESSES:
        raise ValidationError({"emails": f"Invite at most {MAX_ADDRESSES} addresses at once."})
    normalized: dict[str, str | None] = {}
    for address in typed:
        try:
            normalized[address] = normalize_email(address)
        except ValidationError:
            normalized[address] = None
    valid = {email for email in normalized.values() if email}
    members = {u.email for u in User.select(User.email).join(Membership)
               .where(Membership.organization == org, User.email.in_(list(valid)))} if valid else set()
    pending = {i.email for i in Invitation.pending_in(org).where(Invitation.email.in_(list(valid)))} if valid else set()
    results, seen, to_invite = [], set(), []
    for address in typed:
        email = normalized[address]
        if email is None:
            results.append(InviteResult(address, INVALID, "This is not a valid email address."))
        elif email in seen:
            results.append(InviteResult(address, DUPLICATE, "This address is already in the list above."))
        elif email in members:
            results.append(InviteResult(address, MEMBER, f"{email} is already a member of {org.name}."))
        elif email in pending:
            results.append(InviteResult(address, PENDING,
                                        f"{email} already has a pending invitation; resend it instead."))
        else:
            results.append(None)
            to_invite.append((len(results) - 1, address, email))
        if email:
            seen.add(email)
    # An invitation holds a seat: beyond the plan's seats nobody is invited
    # (billing.limits.SeatLimit); counted and created under one lock, so two
    # people inviting at once cannot both take the last seat.
    with limits.seats_held(org):
        limits.check_seats(org, len(to_invite))
        created = [(index, address, email, _create(org, email, role, department, actor, ttl_days))
                   for index, address, email in to_invite]
    for index, address, email, invitation in created:
        results[index] = InviteResult(address, INVITED, f"Invitation sent to {email}.", invitation)
    return results


def _create(org, email, role, department, actor, ttl_days) -> Invitation:
    token = secrets.token_urlsafe(32)
    now = clock.now()
    invitation = Invitation.create(organization=org, email=email, role=role, department=department,
                                   token_hash=token_hash(token), invited_by=actor.user, created_at=now,
                                   sent_at=now, expires_at=now + timedelta(days=ttl_days))
    audit.record(actor, "invitation.sent", org=org, target=invitation, email=email, role=role,
                 department=department.name if department is not None else None)
    _send_invitation_email(invitation, token)
    return invitation


def _send_invitation_email(invitation: Invitation, token: str) -> None:
    """The one place an invitation email leaves: through `notify`, so it is
    composed from the `member.invited` templates (or the organization's
    override), queued with retries and listed in the deliveries log."""
    from costguardian.rendering import external_url

    if has_request_context():
        link = external_url("invitations.accept", token=token)
    else:  # the CLI or a task: no request to take the host from
        base = current_app.config.get("CG_BASE_URL") or "http://localhost:5000"
        with current_app.test_request_context("/", base_url=base):
            link = external_url("invitations.accept", token=token)
    inviter = invitation.invited_by if invitation.invited_by_id else None
    department = (Department.get_or_none(Department.id == invitation.department_id)
                  if invitation.department_id else None)
    payload = {
        "inviter": inviter.display_name if inviter is not None else "An administrator",
        "inviter_email": inviter.email if inviter is not None else "",
        "role": invitation.role,
        "department": department.name if department is not None else "",
        "accept_url": link,
        "expires": format_time(invitation.expires_at, invitation.organization),
        "email": invitation.email,
    }
    notifications.notify(invitation.organization, "member.invited", payload, recipients=[],
                         emails=[invitation.email])


def resend(invitation: Invitation, actor: Actor, ttl_days: int = TTL_DAYS) -> Invitation:
    """A new token and expiry for a pending or expired invitation; the old link stops working."""
    if invitation.status() not in ("pending", "expired"):
        raise RuleViolation(f"This invitation is {invitation.status()}; it cannot be resent.")
    _check_role(invitation.organization, actor, invitation.role)
    token = secrets.token_urlsafe(32)
    now = clock.now()
    updated = (Invitation.update(token_hash=token_hash(token), sent_at=now, expires_at=now + timedelta(days=ttl_days))
               .where(Invitation.id == invitation.id, Invitation.accepted_at.is_null(),
                      Invitation.revoked_at.is_null()).execute())
    if not updated:
        raise RuleViolation("This invitation was accepted or revoked meanwhile; it cannot be resent.")
    invitation = Invitation.get_by_id(invitation.id)
    audit.record(actor, "invitation.resent", org=invitation.organization, target=invitation, email=invitation.email)
    _send_invitation_email(invitation, token)
    return invitation


def revoke(invitation: Invitation, actor: Actor) -> Invitation:
    if invitation.status() not in ("pending", "expired"):
        raise RuleViolation(f"This invitation is {invitation.status()}; there is nothing to revoke.")
    if not orgs.roles_actor_may_grant(invitation.organization, actor):
        raise NotPermitted("You cannot manage invitations of this organization.")
    now = clock.now()
    updated = (Invitation.update(revoked_at=now)
               .where(Invitation.id == invitation.id, Invitation.accepted_at.is_null(),
                      Invitation.revoked_at.is_null()).execute())
    if not updated:
        raise RuleViolation("This invitation was accepted or revoked meanwhile.")
    invitation.revoked_at = now
    audit.record(actor, "invitation.revoked", org=invitation.organization, target=invitation, email=invitation.email)
    return invitation


def invitations_of(org: Organization, status: str = ""):
    """The organization's invitations, newest first; `status` narrows them."""
    now = clock.now()
    query = (Invitation.in_org(org).select(Invitation, User, Department)
             .join(User, JOIN.LEFT_OUTER, on=(Invitation.invited_by == User.id))
             .switch(Invitation).join(Department, JOIN.LEFT_OUTER, on=(Invitation.department == Department.id))
             .order_by(Invitation.created_at.desc(), Invitation.id.desc()))
    if status == "pending":
        query = query.where(Invitation.accepted_at.is_null(), Invitation.revoked_at.is_null(),
                            Invitation.expires_at > now)
    elif status == "accepted":
        query = query.where(Invitation.accepted_at.is_null(False))
    elif status == "revoked":
        query = query.where(Invitation.accepted_at.is_null(), Invitation.revoked_at.is_null(False))
    elif status == "expired":
        query = query.where(Invitation.accepted_at.is_null(), Invitation.revoked_at.is_null(),
                            Invitation.expires_at <= now)
    return query


def listed(org: Organization, status: str = "", limit: int = 500) -> list[Invitation]:
    """The newest `limit` invitations as the list shows them (inviter and department loaded)."""
    return list(invitations_of(org, status).limit(limit))


def get(org: Organization, invitation_id) -> Invitation | None:
    """The organization's invitation with this id; None for an unknown id or another tenant's."""
    return Invitation.get_in_org(org, invitation_id)


def row_of(org: Organization, invitation_id: int) -> Invitation | None:
    """One invitation as the list shows it (inviter and department loaded)."""
    return invitations_of(org).where(Invitation.id == invitation_id).first()


# --- accepting ------------------------------------------------------------------

def by_token(token: str) -> Invitation | None:
    """The invitation this link names, whatever its status (None: no such link)."""
    if not token or len(token) > 100:
        return None
    return (Invitation.select(Invitation, Organization).join(Organization)
            .where(Invitation.token_hash == token_hash(token)).first())


def masked(email: str) -> str:
    """j…@example.com: enough to recognise one's address, not to learn it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}…@{domain}"


def check_can_accept(invitation: Invitation | None, user: User | None) -> None:
    """RuleViolation with the reason when this link cannot be used (by `user`, if given)."""
    if invitation is None:
        raise RuleViolation("This invitation link is not valid. Ask for a new invitation.")
    status = invitation.status()
    if status == "accepted":
        raise RuleViolation("This invitation has already been used.")
    if status == "revoked":
        raise RuleViolation("This invitation was revoked. Ask for a new invitation.")
    if status == "expired":
        raise RuleViolation("This invitation has expired. Ask for a new invitation.")
    if user is not None and user.email != invitation.email:
        raise NotPermitted(f"This invitation is for {masked(invitation.email)}; you are signed in as {user.email}. "
                           "Sign out and open the link again, or ask for an invitation to your address.")


def accept(token: str, user: User, actor: Actor) -> Membership:
    """Join the invitation's organization as `user` (whose email must be the
    invited one); the token is claimed first, so it works once."""
    invitation = by_token(token)
    check_can_accept(invitation, user)
    org = invitation.organization
    joined = False
    with write_transaction():
        claimed = (Invitation.update(accepted_at=clock.now(), accepted_by=user)
                   .where(Invitation.id == invitation.id, Invitation.accepted_at.is_null(),
                          Invitation.revoked_at.is_null(), Invitation.expires_at > clock.now()).execute())
        if not claimed:
            raise RuleViolation("This invitation has already been used.")
        # Not a proof of the address: the token can leak (an organization's
        # email template override can print accept_url), so holding it must
        # not confirm the address, and so must not open domain join.
        membership = Membership.of(user, org)
        if membership is None:
            department = (Department.get_or_none(Department.id == invitation.department_id)
                          if invitation.department_id else None)
            membership = orgs.add_member(org, user, invitation.role, actor, department=department,
                                         action="member.joined", via="invitation", invitation=invitation.id)
            joined = True
    if joined:  # after the commit: the queued deliveries must find their rows
        orgs.announce_join(membership, user, via="invitation")
    return membership

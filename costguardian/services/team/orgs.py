"""Organizations and memberships: creation, settings, roles and their rules."""
from __future__ import annotations

import logging

import re
import unicodedata
from zoneinfo import available_timezones

from peewee import IntegrityError, fn

from costguardian import clock
from costguardian import permissions
from costguardian.db import locked, write_transaction
from costguardian.extensions import db
from costguardian.models import DomainJoin, Membership, Organization, User
from costguardian.services.team import audit
from costguardian.services.actor import Actor
from costguardian.services.usage import rollups
from costguardian.services.errors import NotPermitted, RuleViolation, ValidationError

CURRENCIES = {"USD": "US dollar", "EUR": "Euro", "GBP": "Pound sterling", "JPY": "Japanese yen",
              "CAD": "Canadian dollar", "AUD": "Australian dollar", "CHF": "Swiss franc", "INR": "Indian rupee"}
RESERVED_SLUGS = {"admin", "api", "app", "static", "login", "logout", "signup", "settings", "new", "www"}
_TIME_ZONES: frozenset[str] | None = None


def time_zones() -> list[str]:
    global _TIME_ZONES
    if _TIME_ZONES is None:
        _TIME_ZONES = frozenset(z for z in available_timezones() if "/" in z or z == "UTC")
    return sorted(_TIME_ZONES)


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:50].strip("-")
    return slug or "org"


def validated_settings(name: str, time_zone: str, currency: str) -> tuple[str, str, str]:
    errors = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = "Give the organization a name."
    elif len(name) > 120:
        errors["name"] = "Use at most 120 characters."
    if time_zone not in time_zones():
        errors["time_zone"] = "Choose a time zone from the list."
    if currency not in CURRENCIES:
        errors["currency"] = "Choose a currency from the list."
    if errors:
        raise ValidationError(errors)
    return name, time_zone, currency


def create_organization(name: str, owner: User, actor: Actor, time_zone: str = "UTC",
                        currency: str = "USD") -> Organization:
    """A new organization with `owner` as its first owner and a unique slug."""
    name, time_zone, currency = validated_settings(name, time_zone, currency)
    base = slugify(name)
    for attempt in range(1, 1000):
        slug = base if attempt == 1 and base not in RESERVED_SLUGS else f"{base}-{attempt}"
        if Organization.get_or_none(Organization.slug == slug):
            continue
        try:
            with db.atomic():
                # No usage yet, so its daily rollups are complete (and empty) in its zone.
                org = Organization.create(name=name, slug=slug, time_zone=time_zone, currency=currency,
                                          rollup_offset_minutes=rollups.alignment_of(time_zone),
                                          day_rollup_zone=time_zone, day_rollups_until=None)
                membership = Membership.create(organization=org, user=owner, role=permissions.OWNER)
        except IntegrityError:  # lost a race for this slug; try the next one
            continue
        audit.record(actor, "org.created", org=org, target=org, name=name, slug=slug)
        audit.record(actor, "member.added", org=org, target=membership, user=owner.email, role=permissions.OWNER)
        _grant_default_plan(org, actor)
        return org
    raise RuleViolation("Could not find a free address for this organization; choose another name.")


def _grant_default_plan(org: Organization, actor: Actor) -> None:
    """The platform's default plan for new organizations (the `default_plan`
    setting), when it is not Free: granted as a comped plan, no subscription."""
    from costguardian.services.billing import accounts, plans
    from costguardian.services.platform import settings

    code = settings.get("default_plan")
    if not code or code == "free":
        return
    plan = plans.by_code(code) if isinstance(code, str) else None
    if plan is not None and not plan.is_free:
        accounts.set_manual_plan(org, plan.code, actor)


def update_settings(org: Organization, actor: Actor, name: str, time_zone: str, currency: str) -> Organization:
    name, time_zone, currency = validated_settings(name, time_zone, currency)
    changes = {field: [getattr(org, field), new]
               for field, new in (("name", name), ("time_zone", time_zone), ("currency", currency))
               if getattr(org, field) != new}
    if not changes:
        return org
    org.name, org.time_zone, org.currency, org.updated_at = name, time_zone, currency, clock.now()
    only = [Organization.name, Organization.time_zone, Organization.currency, Organization.updated_at]
    if "time_zone" in changes:
        # The daily rollups are in another zone's days now: none are read or
        # written until a build has summed them again (services/usage/days.py),
        # even if the zone changes back before it ran (their rows missed the writes).
        org.day_rollup_zone, org.day_rollups_until = None, None
        only += [Organization.day_rollup_zone, Organization.day_rollups_until]
    # Never the rollups' alignment: only realign.change_alignment writes it, with the rollups.
    org.save(only=only)
    audit.record(actor, "org.updated", org=org, target=org, changes=changes)
    if "time_zone" in changes:  # budget periods start at another instant now
        from costguardian.services.budgets import accounting as budget_accounting
        from costguardian.services.usage import realign

        # A new bucket alignment moves the rollups in a task, whose last batch rebuilds the budgets again.
        realign.change_alignment(org, rollups.alignment_of(time_zone))
        budget_accounting.rebuild_org(org)
        # The daily rollups' days have other edges now: pages read the hourly
        # ones until a task has summed them again in the new zone (usage/days.py).
        _enqueue_day_build(org.id)
    return org


def _enqueue_day_build(org_id: int) -> None:
    from costguardian.services import queue

    try:
        queue.enqueue("build_day_rollups", org_id)
    except Exception:  # the hourly build_stale_day_rollups task finds the organization
        logging.getLogger(__name__).exception("could not enqueue the daily rollups' build of organization %s",
                                              org_id)


# --- memberships --------------------------------------------------------------

def members(org: Organization):
    return (Membership.in_org(org).select(Membership, User).join(User)
            .order_by(fn.LOWER(User.name), User.email))


def membership_by_slug(user: User, slug: str) -> Membership | None:
    """The user's membership of the organization with this slug (None: not a member, or no such organization)."""
    return Membership.for_user(user).where(Organization.slug == slug).first()


def add_member(org: Organization, user: User, role: str, actor: Actor, department=None,
               action: str = "member.added", **detail) -> Membership:
    if role not in permissions.ROLES:
        raise ValidationError({"role": "Choose a role from the list."})
    if department is not None and department.organization_id != org.id:
        department = None
    try:
        with db.atomic():
            membership = Membership.create(organization=org, user=user, role=role, department=department)
    except IntegrityError as exc:
        raise RuleViolation(f"{user.email} is already a member of {org.name}.") from exc
    audit.record(actor, action, org=org, target=membership, user=user.email, role=role, **detail)
    return membership


def _owner_count(org: Organization) -> int:
    return Membership.in_org(org).where(Membership.role == permissions.OWNER).count()


def acting_member(org: Organization, actor: Actor) -> tuple[int | None, str | None] | None:
    """Who acts and with which role in `org`: the signed-in user and their
    role; for an API key, the role its creator holds now (an operator's key,
    made at the CLI, acts as an admin); None for operators at the CLI."""
    if actor.user is not None:
        membership = Membership.of(actor.user, org)
        return actor.user.id, membership.role if membership else None
    key = getattr(actor, "api_key", None)
    if key is not None:
        if key.created_by_id is None:
            return None, permissions.ADMIN
        membership = Membership.in_org(org).where(Membership.user == key.created_by_id).first()
        return key.created_by_id, membership.role if membership else None
    return None


def roles_actor_may_grant(org: Organization, actor: Actor) -> list[str]:
    acting = acting_member(org, actor)
    if acting is None:
        return list(permissions.ROLES)
    return permissions.grantable_roles(acting[1] or "")


def _check_actor_may_manage(org: Organization, actor: Actor, target: Membership, new_role: str | None):
    """The rules shared by role changes and removals, for a human actor or an API key."""
    acting = acting_member(org, actor)
    if acting is None:  # operators at the CLI
        return
    acting_user_id, acting_role = acting
    if acting_role is None or not permissions.role_can(acting_role, "members:manage"):
        if actor.user is None:
            raise NotPermitted("This API key's creator can no longer manage members; create a new key.")
        raise NotPermitted("You cannot manage members of this organization.")
    if new_role is not None and acting_user_id is not None and target.user_id == acting_user_id:
        raise NotPermitted("You cannot change your own role; ask another owner or admin.")
    grantable = permissions.grantable_roles(acting_role)
    if target.role == permissions.OWNER and acting_role != permissions.OWNER:
        raise NotPermitted("Only an owner can change or remove another owner.")
    if new_role is not None and new_role not in grantable:
        raise NotPermitted(f"Your role cannot grant the {new_role} role.")


def _reloaded(membership: Membership) -> Membership:
    fresh = Membership.get_or_none(Membership.id == membership.id)
    if fresh is None:
        raise RuleViolation("This person is no longer a member.")
    return fresh


def change_role(membership: Membership, new_role: str, actor: Actor) -> Membership:
    org = membership.organization
    if new_role not in permissions.ROLES:
        raise ValidationError({"role": "Choose a role from the list."})
    if new_role == membership.role:
        return membership
    _check_actor_may_manage(org, actor, membership, new_role)
    with locked(org):
        membership = _reloaded(membership)
        if membership.role == permissions.OWNER and _owner_count(org) <= 1:
            raise RuleViolation("An organization needs at least one owner; make someone else owner first.")
        old_role = membership.role
        membership.role = new_role
        membership.save(only=[Membership.role])
    audit.record(actor, "member.role_changed", org=org, target=membership,
                 user=membership.user.email, old_role=old_role, new_role=new_role)
    return membership


def remove_member(membership: Membership, actor: Actor) -> None:
    org = membership.organization
    acting = acting_member(org, actor)
    if acting is not None and membership.user_id != acting[0]:
        _check_actor_may_manage(org, actor, membership, None)
    with locked(org):
        membership = _reloaded(membership)
        if membership.role == permissions.OWNER and _owner_count(org) <= 1:
            raise RuleViolation("The last owner cannot leave or be removed; make someone else owner first.")
        membership.delete_instance()
        # Whoever leaves is never added back by domain join (see join_by_email_domain).
        (DomainJoin.insert(organization=org, user=membership.user_id, joined_at=membership.created_at)
         .on_conflict_ignore().execute())
    audit.record(actor, "member.removed", org=org, target=membership,
                 user=membership.user.email, role=membership.role)


def move_to_department(membership: Membership, department, actor: Actor) -> Membership:
    """Put a member in a department of the same organization (None: no department)."""
    org = membership.organization
    acting = acting_member(org, actor)
    if acting is not None and not permissions.role_can(acting[1] or "", "members:manage"):
        raise NotPermitted("You cannot manage members of this organization.")
    if department is not None and department.organization_id != org.id:
        raise ValidationError({"department": "Choose a department of this organization."})
    new_id = department.id if department is not None else None
    if membership.department_id == new_id:
        return membership
    old_name = membership.department.name if membership.department_id else None
    membership.department = department
    membership.save(only=[Membership.department])
    audit.record(actor, "member.department_changed", org=org, target=membership, user=membership.user.email,
                 old_department=old_name, new_department=department.name if department is not None else None)
    return membership


# --- joining by email domain -----------------------------------------------------

_DOMAIN = re.compile(r"(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
# Addresses anyone can get: a domain rule on these would let the world in.
PUBLIC_EMAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com",
    "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de", "web.de",
    "yandex.com", "mail.com", "zoho.com", "fastmail.com", "hey.com",
})
JOIN_ROLES = (permissions.ADMIN, permissions.BILLING, permissions.MEMBER, permissions.VIEWER)


def validated_join_domain(domain: str, role: str, grantable: list[str]) -> tuple[str | None, str | None]:
    domain = (domain or "").strip().lower().lstrip("@").rstrip(".")
    if not domain:
        return None, None
    errors = {}
    if not _DOMAIN.fullmatch(domain):
        errors["join_domain"] = "Enter a domain like example.com (without the @)."
    elif domain in PUBLIC_EMAIL_DOMAINS:
        errors["join_domain"] = f"Anyone can have an address at {domain}; use your organization's own domain."
    else:
        from costguardian.services.team import domain_verification

        if domain_verification.is_public_suffix(domain):
            errors["join_domain"] = (f"{domain} is a public suffix (many unrelated owners share it); enter your "
                                     "own domain under it.")
    if role not in JOIN_ROLES:
        errors["join_domain_role"] = "Choose the role people joining this way get (not owner)."
    elif role not in grantable:
        errors["join_domain_role"] = f"Your role cannot grant the {role} role."
    if errors:
        raise ValidationError(errors)
    return domain, role


def update_join_domain(org: Organization, actor: Actor, domain: str, role: str) -> Organization:
    """Set (or clear, with an empty domain) the domain whose verified addresses
    join automatically. A new domain needs verifying again before it applies."""
    domain, role = validated_join_domain(domain, role, roles_actor_may_grant(org, actor))
    if (domain, role) == (org.join_domain, org.join_domain_role):
        return org
    changes = {"join_domain": [org.join_domain, domain], "join_domain_role": [org.join_domain_role, role]}
    if domain != org.join_domain:
        org.join_domain_verified_at = None
    org.join_domain, org.join_domain_role, org.updated_at = domain, role, clock.now()
    org.save(only=[Organization.join_domain, Organization.join_domain_role, Organization.join_domain_verified_at,
                   Organization.updated_at])
    audit.record(actor, "org.join_domain_changed", org=org, target=org, changes=changes)
    return org


def verify_join_domain(org: Organization, domain: str, actor: Actor) -> Organization:
    """Mark `domain` verified for `org` (operators, until onboarding verifies
    domains itself); members without a join role yet get `member`."""
    domain, _ = validated_join_domain(domain, org.join_domain_role or permissions.MEMBER, list(JOIN_ROLES))
    if domain is None:
        raise ValidationError({"join_domain": "Enter a domain like example.com."})
    taken = (Organization.select().where(Organization.join_domain == domain,
                                         Organization.join_domain_verified_at.is_null(False),
                                         Organization.id != org.id).first())
    if taken is not None:
        raise RuleViolation(f"{domain} is already verified for {taken.slug}.")
    org.join_domain, org.join_domain_verified_at = domain, clock.now()
    org.join_domain_role = org.join_domain_role or permissions.MEMBER
    org.save(only=[Organization.join_domain, Organization.join_domain_verified_at, Organization.join_domain_role])
    audit.record(actor, "org.join_domain_verified", org=org, target=org, domain=domain)
    return org


def join_by_email_domain(user: User, actor: Actor) -> list[Membership]:
    """Memberships for every organization whose verified join domain is the
    domain of `user`'s address and that `user` is not yet in. Only for an
    address the user has proved is theirs (`email_verified_at`): anyone can
    type any address at sign-up. Once per (organization, user): a DomainJoin
    row is written with the join (and by `remove_member`), and a pair with a
    row is never joined again, so a removal or a departure sticks. Call it
    outside a transaction: each join is announced (`member.joined`) to the
    organization's managers."""
    domain = user.email.rpartition("@")[2]
    if not domain or user.email_verified_at is None:
        return []
    joined = []
    candidates = (Organization.select().where(Organization.join_domain == domain,
                                              Organization.join_domain_verified_at.is_null(False),
                                              Organization.join_domain_role.is_null(False)))
    for org in candidates:
        if DomainJoin.in_org(org).where(DomainJoin.user == user).exists() or Membership.of(user, org) is not None:
            continue
        try:
            with write_transaction():
                DomainJoin.create(organization=org, user=user)  # the unique pair: one join, even concurrently
                membership = add_member(org, user, org.join_domain_role, actor, action="member.joined",
                                        via="domain", domain=domain)
        except (IntegrityError, RuleViolation):  # joined concurrently, or became a member meanwhile
            continue
        announce_join(membership, user, via="domain")
        joined.append(membership)
    return joined


def announce_join(membership: Membership, user: User, via: str) -> None:
    """Tell the organization's managers (the event type's default roles) that
    `user` joined, `via` "invitation" or "domain"; not the newcomer themselves.
    Call it after the join is committed: the deliveries are queued at once."""
    from costguardian.services.notifications import types as notification_types, notify as notifications

    org = membership.organization
    roles = notification_types.get("member.joined").roles
    managers = (Membership.in_org(org).where(Membership.role.in_(roles), Membership.user != user.id)
                .order_by(Membership.id))
    notifications.notify(org, "member.joined",
                         {"member": user.name or user.email, "email": user.email, "role": membership.role,
                          "via": via},
                         recipients=[m.user_id for m in managers])

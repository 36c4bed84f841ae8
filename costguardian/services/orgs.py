"""Organizations and memberships: creation, settings, roles and their rules."""
from __future__ import annotations

import re
import unicodedata
from zoneinfo import available_timezones

from peewee import IntegrityError, fn

from costguardian import permissions
from costguardian.db import locked
from costguardian.extensions import db
from costguardian.models import Membership, Organization, User, utcnow
from costguardian.services import audit
from costguardian.services.actor import Actor
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
                org = Organization.create(name=name, slug=slug, time_zone=time_zone, currency=currency)
                membership = Membership.create(organization=org, user=owner, role=permissions.OWNER)
        except IntegrityError:  # lost a race for this slug; try the next one
            continue
        audit.record(actor, "org.created", org=org, target=org, name=name, slug=slug)
        audit.record(actor, "member.added", org=org, target=membership, user=owner.email, role=permissions.OWNER)
        return org
    raise RuleViolation("Could not find a free address for this organization; choose another name.")


def update_settings(org: Organization, actor: Actor, name: str, time_zone: str, currency: str) -> Organization:
    name, time_zone, currency = validated_settings(name, time_zone, currency)
    changes = {field: [getattr(org, field), new]
               for field, new in (("name", name), ("time_zone", time_zone), ("currency", currency))
               if getattr(org, field) != new}
    if not changes:
        return org
    org.name, org.time_zone, org.currency, org.updated_at = name, time_zone, currency, utcnow()
    org.save()
    audit.record(actor, "org.updated", org=org, target=org, changes=changes)
    return org


# --- memberships --------------------------------------------------------------

def members(org: Organization):
    return (Membership.in_org(org).select(Membership, User).join(User)
            .order_by(fn.LOWER(User.name), User.email))


def add_member(org: Organization, user: User, role: str, actor: Actor) -> Membership:
    if role not in permissions.ROLES:
        raise ValidationError({"role": "Choose a role from the list."})
    try:
        with db.atomic():
            membership = Membership.create(organization=org, user=user, role=role)
    except IntegrityError as exc:
        raise RuleViolation(f"{user.email} is already a member of {org.name}.") from exc
    audit.record(actor, "member.added", org=org, target=membership, user=user.email, role=role)
    return membership


def _owner_count(org: Organization) -> int:
    return Membership.in_org(org).where(Membership.role == permissions.OWNER).count()


def _check_actor_may_manage(org: Organization, actor: Actor, target: Membership, new_role: str | None):
    """The rules shared by role changes and removals, for a human actor."""
    if actor.user is None:  # operators at the CLI
        return
    acting = Membership.of(actor.user, org)
    if acting is None or not permissions.role_can(acting.role, "members:manage"):
        raise NotPermitted("You cannot manage members of this organization.")
    if new_role is not None and target.user_id == actor.user.id:
        raise NotPermitted("You cannot change your own role; ask another owner or admin.")
    grantable = permissions.grantable_roles(acting.role)
    if target.role == permissions.OWNER and acting.role != permissions.OWNER:
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
    if actor.user is not None and membership.user_id != actor.user.id:
        _check_actor_may_manage(org, actor, membership, None)
    with locked(org):
        membership = _reloaded(membership)
        if membership.role == permissions.OWNER and _owner_count(org) <= 1:
            raise RuleViolation("The last owner cannot leave or be removed; make someone else owner first.")
        membership.delete_instance()
    audit.record(actor, "member.removed", org=org, target=membership,
                 user=membership.user.email, role=membership.role)

"""Whose spend a person may see in detail. Owners, admins, billing and
viewers see everyone's; a member sees the organization's and departments'
totals and their own usage in detail, unless the organization lets members
see everyone (Organization.members_see_everyone, on the Settings page).
The explorer, its exports, team analytics and the API's usage summary
(for keys bound to a member) all ask here."""
from __future__ import annotations

from costguardian.models import Membership, Organization
from costguardian.permissions import MEMBER

# Groupings that show one row per person (a key bound to someone is their spend).
PER_PERSON_GROUPS = ("user", "key")
LIMITED = ("Members see the organization's and departments' totals and their own usage in detail; "
           "an owner or admin can let members see everyone's in Settings.")


def sees_everyone(org, role: str | None) -> bool:
    return role != MEMBER or bool(org.members_see_everyone)


def own_ref(user) -> str:
    """The usage `user` dimension of a member's own usage (their email)."""
    return user.email.lower()


def is_own(user, ref: str | None) -> bool:
    return bool(ref) and ref.lower() == own_ref(user)


def explorer_errors(org, role: str | None, user, *, user_ref: str, group: str, key=None,
                    events: bool = False) -> dict[str, str]:
    """What a filter of the explorer (or an export) asks that this person may
    not see, as field -> message; {} when everything is allowed. `events`:
    a per-event export, which names each event's user."""
    if sees_everyone(org, role):
        return {}
    errors = {}
    own = is_own(user, user_ref)
    if user_ref and not own:
        errors["user"] = "You can see only your own usage in detail. " + LIMITED
    if key is not None and key.user_id not in (None, user.id) and not own:
        errors["key"] = "You can see only your own keys' usage in detail. " + LIMITED
    if events and not own and "user" not in errors:
        errors["user"] = "An export of events names every event's user: choose yourself as User. " + LIMITED
    if group in PER_PERSON_GROUPS and not own and not events:
        errors["group_by"] = "Grouping by person or key needs your own user filter. " + LIMITED
    return errors


def set_members_see_everyone(org, actor, value: bool) -> None:
    from costguardian.services.team import audit

    value = bool(value)
    if org.members_see_everyone == value:
        return
    org.members_see_everyone = value
    Organization.update(members_see_everyone=value).where(Organization.id == org.id).execute()
    audit.record(actor, "org.member_visibility_changed", org=org, members_see_everyone=value)


def may_see_member(org, role: str | None, user, membership: Membership) -> bool:
    return sees_everyone(org, role) or membership.user_id == user.id


def key_holder_role(key) -> str | None:
    """The role in the key's organization of the person a key is bound to
    (None for a key bound to nobody: a service key made by an owner or admin)."""
    if key.user_id is None:
        return None
    membership = Membership.get_or_none(Membership.organization == key.organization_id,
                                        Membership.user == key.user_id)
    return membership.role if membership is not None else None

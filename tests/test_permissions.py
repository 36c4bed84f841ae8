"""Roles and permissions as data: the matrix the code enforces."""
from __future__ import annotations

import pytest

from costguardian import permissions
from costguardian.permissions import ADMIN, BILLING, MEMBER, OWNER, PERMISSIONS, ROLE_PERMISSIONS, ROLES, VIEWER

# Using the organization's models for oneself (the chat) changes nothing of the organization's.
PERSONAL_USE = {"chat:use"}
WRITES = {p for p in PERMISSIONS if not p.endswith(":read")} - PERSONAL_USE


def test_every_role_has_a_permission_set_and_no_more():
    assert set(ROLE_PERMISSIONS) == set(ROLES)
    assert list(ROLES) == [OWNER, ADMIN, BILLING, MEMBER, VIEWER]  # decreasing power, as forms list them


@pytest.mark.parametrize("role", list(ROLES))
def test_each_role_permission_set_is_a_subset_of_the_known_permissions(role):
    assert ROLE_PERMISSIONS[role] <= set(PERMISSIONS)
    assert "usage:read" in ROLE_PERMISSIONS[role]  # everyone in an org sees its usage


def test_owner_has_every_permission():
    assert ROLE_PERMISSIONS[OWNER] == set(PERMISSIONS)
    assert all(permissions.role_can(OWNER, p) for p in PERMISSIONS)


def test_viewer_has_no_write_permission():
    assert WRITES  # the split means something
    assert not ROLE_PERMISSIONS[VIEWER] & WRITES
    assert not any(permissions.role_can(VIEWER, p) for p in WRITES)


def test_the_subscription_is_for_owners_and_billing_members_only():
    """An admin has every permission but billing:manage; billing has it but not members:manage."""
    assert ROLE_PERMISSIONS[ADMIN] == set(PERMISSIONS) - {"billing:manage"}
    assert permissions.role_can(BILLING, "billing:manage") and permissions.role_can(OWNER, "billing:manage")
    assert not any(permissions.role_can(role, "billing:manage") for role in (ADMIN, MEMBER, VIEWER))
    assert not permissions.role_can(BILLING, "members:manage")


def test_member_writes_only_their_own_keys_and_viewer_nothing():
    assert ROLE_PERMISSIONS[MEMBER] & WRITES == {"keys:own"}
    assert not ROLE_PERMISSIONS[VIEWER] & WRITES


def test_everyone_but_viewers_may_chat():
    assert [role for role in ROLES if permissions.role_can(role, "chat:use")] == [OWNER, ADMIN, BILLING, MEMBER]


def test_roles_are_ordered_by_power():
    """Each role can do at least what a later role can, except billing, which
    is a side role (billing:manage, once billing exists, without members:manage)."""
    assert ROLE_PERMISSIONS[OWNER] >= ROLE_PERMISSIONS[ADMIN] >= ROLE_PERMISSIONS[MEMBER] >= ROLE_PERMISSIONS[VIEWER]
    assert ROLE_PERMISSIONS[OWNER] >= ROLE_PERMISSIONS[BILLING] >= ROLE_PERMISSIONS[MEMBER]


@pytest.mark.parametrize("permission", ["usage:write", "", "USAGE:READ", "members"])
def test_role_can_raises_on_an_unknown_permission(permission):
    with pytest.raises(KeyError):
        permissions.role_can(OWNER, permission)
    with pytest.raises(KeyError):
        permissions.role_can(None, permission)


@pytest.mark.parametrize("role", [None, "", "superadmin", "Owner"])
def test_no_role_or_an_unknown_role_can_do_nothing(role):
    assert not any(permissions.role_can(role, p) for p in PERMISSIONS)


def test_grantable_roles():
    assert permissions.grantable_roles(OWNER) == list(ROLES)
    assert permissions.grantable_roles(ADMIN) == [ADMIN, BILLING, MEMBER, VIEWER]
    for role in (BILLING, MEMBER, VIEWER, "", "nobody"):
        assert permissions.grantable_roles(role) == []


@pytest.mark.parametrize("role", list(ROLES))
def test_a_role_grants_roles_only_if_it_manages_members(role):
    assert bool(permissions.grantable_roles(role)) == permissions.role_can(role, "members:manage")


def test_every_role_and_permission_is_described():
    assert all(isinstance(text, str) and text.strip() for text in ROLES.values())
    assert all(isinstance(text, str) and text.strip() for text in PERMISSIONS.values())
    assert all(":" in p for p in PERMISSIONS)

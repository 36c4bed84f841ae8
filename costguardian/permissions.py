"""Roles and permissions, as data: the one copy that code enforces and the
permission-matrix page shows."""
from __future__ import annotations

OWNER, ADMIN, BILLING, MEMBER, VIEWER = "owner", "admin", "billing", "member", "viewer"

# In order of decreasing power; forms and tables list roles in this order.
ROLES: dict[str, str] = {
    OWNER: "Full control, including billing and deleting the organization.",
    ADMIN: "Manages members, keys, budgets and settings; cannot grant ownership.",
    BILLING: "Sees usage and manages the subscription and invoices.",
    MEMBER: "Sees usage and budgets and uses the organization's keys.",
    VIEWER: "Read-only access to usage and budgets.",
}

PERMISSIONS: dict[str, str] = {
    "usage:read": "See usage, costs and the dashboard.",
    "budgets:read": "See budgets and their alerts.",
    "budgets:write": "Create, change and delete budgets.",
    "members:read": "See who is in the organization and their roles.",
    "members:manage": "Add and remove members and change their roles.",
    "keys:manage": "Create, rotate and revoke API keys.",
    "prices:manage": "Set the organization's own model prices and model aliases.",
    "billing:manage": "Change the subscription, payment method and invoices.",
    "org:settings": "Change the organization's name, time zone and settings.",
    "audit:read": "Read the organization's audit log.",
}

_READ = {"usage:read", "budgets:read", "members:read"}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    OWNER: frozenset(PERMISSIONS),
    ADMIN: frozenset(PERMISSIONS) - {"billing:manage"},
    BILLING: frozenset(_READ | {"billing:manage"}),
    MEMBER: frozenset(_READ),
    VIEWER: frozenset(_READ),
}


def role_can(role: str | None, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return permission in ROLE_PERMISSIONS.get(role or "", frozenset())


def grantable_roles(actor_role: str) -> list[str]:
    """Roles this role may hand out: only an owner can make another owner."""
    if actor_role == OWNER:
        return list(ROLES)
    if actor_role == ADMIN:
        return [r for r in ROLES if r != OWNER]
    return []

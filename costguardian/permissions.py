"""Roles and permissions, as data: the one copy that code enforces and the
permission-matrix page shows."""
from __future__ import annotations

OWNER, ADMIN, BILLING, MEMBER, VIEWER = "owner", "admin", "billing", "member", "viewer"

# In order of decreasing power; forms and tables list roles in this order.
ROLES: dict[str, str] = {
    OWNER: "Full control of the organization, including making other people owners.",
    ADMIN: "Manages members, departments, API keys, provider keys, prices, budgets and settings; cannot grant ownership.",
    BILLING: "Manages the subscription, payment methods and invoices (when billing is on); sees usage and members and manages budgets.",
    MEMBER: "Sees the organization's usage totals, members and budgets and their own usage in detail; creates, "
            "rotates and revokes API keys bound to themselves; chats. Sees everyone's spend only if the "
            "organization allows it (Settings).",
    VIEWER: "Read-only access to usage, members and budgets; changes nothing.",
}

PERMISSIONS: dict[str, str] = {
    "usage:read": "See usage, costs and the dashboard.",
    "members:read": "See who is in the organization and their roles.",
    "members:manage": "Invite and remove members, change their roles and manage departments.",
    "keys:manage": "Create, rotate and revoke every API key of the organization.",
    "keys:own": "Create, rotate and revoke API keys bound to yourself (their usage is attributed to you).",
    "prices:manage": "Set the organization's own model prices and model aliases.",
    "org:settings": "Change the organization's name, time zone and settings.",
    "audit:read": "Read the organization's audit log.",
    "notifications:manage": "Manage webhooks and email templates and see every notification delivery.",
    "budgets:read": "See budgets, their spend, forecasts and alerts.",
    "budgets:write": "Create, change, raise and delete budgets.",
    "providers:manage": "Add, check, change and delete the organization's AI provider keys (the gateway's vault).",
    "billing:manage": "See the plan and invoices, subscribe, change plan or seats, open the payment portal.",
    "chat:use": "Chat with the organization's models through the gateway (your own conversations only).",
}

# A permission here must guard at least one route (a test checks).
_READ = {"usage:read", "members:read", "budgets:read"}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    OWNER: frozenset(PERMISSIONS),
    ADMIN: frozenset(set(PERMISSIONS) - {"billing:manage"}),  # the subscription is the owner's and billing's
    BILLING: frozenset(_READ | {"budgets:write", "billing:manage", "chat:use", "keys:own"}),
    MEMBER: frozenset(_READ | {"chat:use", "keys:own"}),
    VIEWER: frozenset(_READ),
}


def roles_described(billing_enabled: bool) -> dict[str, str]:
    """ROLES as the pages show them: where billing is off, the billing role
    is described by what it does on this installation."""
    if billing_enabled:
        return ROLES
    return {**ROLES, BILLING: "Sees usage and members and manages budgets (this installation does not charge, "
                              "so there is no subscription to manage)."}


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

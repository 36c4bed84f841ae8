"""Data exports for people and organizations.

`account_export`: a member's own data as one JSON document (profile, sign-in
identities, memberships, the API keys they created or are attributed to —
metadata only —, their chat conversations and their audit trail), produced
piece by piece so it can be streamed.

`org_tables`: everything an organization owns, table by table, each read in
keyset chunks so memory stays bounded at any size; services/ops/org_export.py
writes them into the owner's archive in the background. Never exported:
secrets and their hashes (API key hashes, encrypted provider keys and admin
keys, webhook signing secrets, invitation and domain-verification tokens),
and the tables in NOT_EXPORTED (members' chat conversations, private to each
member; the gateway's kept request bodies; …).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from peewee import JOIN, Tuple

from costguardian import clock
from costguardian.models import (
    ApiKey,
    AuditLog,
    BillingAccount,
    Budget,
    BudgetAlert,
    BudgetIncrease,
    BudgetSpend,
    ChatMessage,
    Conversation,
    Delivery,
    DeliveryAttempt,
    Department,
    DomainJoin,
    DomainVerification,
    ExternalIdentity,
    GatewayRequest,
    GatewayRequestBody,
    GatewayReservation,
    Invitation,
    Invoice,
    KnownProviderKey,
    Membership,
    MeterReport,
    ModelAlias,
    Notification,
    NotificationOnce,
    NotificationPreference,
    NotificationSettings,
    OnboardingProgress,
    Organization,
    OrgExport,
    OrgSettingsVersion,
    PriceOverride,
    ProviderCostBucket,
    ProviderCredential,
    ProviderKey,
    ProviderKeyMatch,
    ProviderSyncConnection,
    ProviderUsageBucket,
    RollupMove,
    StripeEvent,
    TemplateOverride,
    UsageDayRollup,
    UsageDayTagRollup,
    UsageDimension,
    UsageEvent,
    UsageRollup,
    UsageTagRollup,
    User,
    WebhookEndpoint,
)
from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted
from costguardian.services.notifications.webhooks import redacted_url
from costguardian.services.team import audit

CHUNK = 1000
FORMAT_VERSION = 1
# Columns never exported, whatever the table: secrets, their hashes and tokens.
_SECRET_SUFFIXES = ("_hash", "_encrypted", "secret", "_token")
_SECRET_NAMES = {"token"}


def _plain(value):
    if isinstance(value, datetime):
        return value.replace(microsecond=0).isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return None
    return value


def _dumps(data) -> str:
    return json.dumps(data, default=_plain, ensure_ascii=False, separators=(",", ":"))


def _columns(model, without=()):
    return [f for f in model._meta.sorted_fields
            if f.name not in without and f.name not in _SECRET_NAMES and not f.name.endswith(_SECRET_SUFFIXES)]


def _row(model_row: dict) -> dict:
    return {name: _plain(value) for name, value in model_row.items()}


def refuse_impersonation(actor: Actor) -> None:
    if actor.impersonator is not None:
        raise NotPermitted("Not while acting as someone else: only the person themselves can do this.")


# --- a member's own data ----------------------------------------------------------

def _key_meta(key: ApiKey, user_id: int) -> dict:
    return {"id": key.id, "organization": key.organization.slug, "name": key.name, "key": key.display_key,
            "scopes": key.scope_list, "created_at": _plain(key.created_at), "expires_at": _plain(key.expires_at),
            "revoked_at": _plain(key.revoked_at), "last_used_at": _plain(key.last_used_at),
            "created_by_you": key.created_by_id == user_id, "attributed_to_you": key.user_id == user_id}


def account_filename(user: User) -> str:
    return f"costguardian-account-{user.id}-{clock.now():%Y-%m-%d}.json"


def account_export(user: User, actor: Actor, chunk: int = CHUNK):
    """The user's own data as JSON text, one piece after another (audit-logged
    once, before the first piece)."""
    refuse_impersonation(actor)
    audit.record(actor, "user.data_exported", target=user, email=user.email)
    return _account_pieces(user, chunk)


def _account_pieces(user: User, chunk: int):
    profile = {"id": user.id, "email": user.email, "name": user.name, "created_at": _plain(user.created_at),
               "email_verified_at": _plain(user.email_verified_at), "last_login_at": _plain(user.last_login_at),
               "platform_role": user.platform_role}
    yield ('{"format":"costguardian.account-export","version":%d,"exported_at":%s,"profile":%s'
           % (FORMAT_VERSION, _dumps(clock.now()), _dumps(profile)))
    identities = [{"issuer": i.issuer, "email": i.email, "created_at": i.created_at}
                  for i in ExternalIdentity.select().where(ExternalIdentity.user == user).order_by(ExternalIdentity.id)]
    yield ',"identities":' + _dumps(identities)
    memberships = [{"organization": {"id": m.organization_id, "name": m.organization.name,
                                     "slug": m.organization.slug},
                    "role": m.role, "department": m.department.name if m.department_id else None,
                    "joined_at": m.created_at}
                   for m in Membership.select(Membership, Organization, Department).join(Organization)
                   .switch(Membership).join(Department, JOIN.LEFT_OUTER, on=(Membership.department == Department.id))
                   .where(Membership.user == user).order_by(Membership.created_at, Membership.id)]
    yield ',"memberships":' + _dumps(memberships)
    keys = [_key_meta(key, user.id) for key in (ApiKey.select(ApiKey, Organization).join(Organization)
                                                .where((ApiKey.created_by == user) | (ApiKey.user == user))
                                                .order_by(ApiKey.id))]
    yield ',"api_keys":' + _dumps(keys)
    yield ',"conversations":['
    first = True
    for conversation in (Conversation.select(Conversation, Organization).join(Organization)
                         .where(Conversation.user == user).order_by(Conversation.id)):
        messages = [_row(m) for m in ChatMessage.select(*_columns(ChatMessage, ("organization", "conversation")))
                    .where(ChatMessage.conversation == conversation).order_by(ChatMessage.id).dicts()]
        item = {"id": conversation.id, "organization": conversation.organization.slug, "title": conversation.title,
                "kind": conversation.kind, "model": conversation.model,
                "system_prompt": conversation.system_prompt, "created_at": conversation.created_at,
                "updated_at": conversation.updated_at, "messages": messages}
        yield ("" if first else ",") + _dumps(item)
        first = False
    yield '],"audit_trail":['
    about_user = (AuditLog.target_type == "user") & (AuditLog.target_id == str(user.id))
    last, first = 0, True
    while True:
        rows = list(AuditLog.select(AuditLog.id, AuditLog.organization, AuditLog.action, AuditLog.target_type,
                                    AuditLog.target_id, AuditLog.detail, AuditLog.ip, AuditLog.created_at,
                                    AuditLog.actor)
                    .where(((AuditLog.actor == user) | about_user), AuditLog.id > last)
                    .order_by(AuditLog.id).limit(chunk).dicts())
        for row in rows:
            row["by_you"] = row.pop("actor") == user.id
            yield ("" if first else ",") + _dumps(_row(row))
            first = False
        if len(rows) < chunk:
            break
        last = rows[-1]["id"]
    yield "]}\n"


# --- everything of an organization --------------------------------------------------
# The tables of the organization's archive (services/ops/org_export.py writes
# them, one JSON-lines file each). Every model with an `organization` foreign
# key is either here or in NOT_EXPORTED (tests/test_org_export.py checks).


@dataclass(frozen=True)
class Table:
    name: str  # the archive's file is <name>.jsonl
    model: type
    rows: Callable  # rows(chunk) -> an iterator of dicts, read in keyset chunks


def _by_id(model, condition, without=()):
    def rows(chunk):
        last = 0
        while True:
            found = list(model.select(*_columns(model, without)).where(condition, model.id > last)
                         .order_by(model.id).limit(chunk).dicts())
            yield from found
            if len(found) < chunk:
                return
            last = found[-1]["id"]
    return rows


def _by_key(model, condition, key):
    """Tables with a composite primary key: a keyset on the key's columns."""
    def rows(chunk):
        last = None
        names = [c.name for c in key]
        while True:
            query = model.select(*_columns(model)).where(condition)
            if last is not None:
                query = query.where(key[0] >= last[0], Tuple(*key) > Tuple(*last))
            found = list(query.order_by(*key).limit(chunk).dicts())
            yield from found
            if len(found) < chunk:
                return
            last = [found[-1][name] for name in names]
    return rows


def _members(org):
    def rows(chunk):
        last = 0
        while True:
            found = list(Membership.select(Membership.id, Membership.role, Membership.department,
                                           Membership.created_at, User.id.alias("user_id"), User.email, User.name)
                         .join(User).where(Membership.organization == org, Membership.id > last)
                         .order_by(Membership.id).limit(chunk).dicts())
            yield from found
            if len(found) < chunk:
                return
            last = found[-1]["id"]
    return rows


def _cleaned(rows, clean):
    def cleaned(chunk):
        for row in rows(chunk):
            clean(row)
            yield row
    return cleaned


# A webhook's URL can itself be a secret (Slack's incoming webhooks): scheme and host only.
def _webhook_url(row: dict) -> None:
    row["url"] = redacted_url(row["url"])


def _webhook_recipient(row: dict) -> None:
    if row["channel"] == "webhook":
        row["recipient"] = redacted_url(row["recipient"])


# Org-scoped models left out of the archive, and why.
NOT_EXPORTED = {
    # Private to each member, who downloads their own from their account page.
    Conversation: "members' chat conversations (each member exports their own)",
    ChatMessage: "members' chat messages (each member exports their own)",
    # Whole prompts and answers, kept a few days for debugging only; may hold
    # members' private text and would dwarf the archive.
    GatewayRequestBody: "the gateway's kept request and answer bodies",
    # Holds of money for calls in flight, gone within the hour; budgets and
    # their spend are exported.
    GatewayReservation: "the gateway's in-flight budget holds",
    # Bookkeeping of the exports themselves (the one being built included).
    OrgExport: "the export jobs themselves",
    # A move of the rollups to a new time zone's hours, in progress; the
    # rollups themselves are exported.
    RollupMove: "rollup moves in progress (internal bookkeeping)",
    # The hourly rollups summed per local day: derived, the hourly rows are exported.
    UsageDayRollup: "daily sums of the hourly rollups (derived from usage_rollups)",
    UsageDayTagRollup: "daily sums of the per-tag rollups (derived from usage_tag_rollups)",
    # A number the database's triggers change with the settings: what processes keep in memory is checked by it.
    OrgSettingsVersion: "the settings' version number (kept by the database itself)",
}


def org_tables(org: Organization) -> list[Table]:
    """The archive's tables, in this order."""
    budgets = Budget.select(Budget.id).where(Budget.organization == org)
    deliveries = Delivery.select(Delivery.id).where(Delivery.organization == org)
    R, T, D = UsageRollup, UsageTagRollup, UsageDimension
    S, DA = BudgetSpend, DeliveryAttempt

    def table(name, model, condition=None, without=(), clean=None):
        condition = model.organization == org if condition is None else condition
        rows = _by_id(model, condition, without)
        return Table(name, model, rows if clean is None else _cleaned(rows, clean))

    return [
        table("organization", Organization, Organization.id == org.id),
        table("departments", Department),
        Table("members", Membership, _members(org)),
        table("invitations", Invitation),
        table("domain_joins", DomainJoin),
        table("domain_verifications", DomainVerification),
        table("onboarding", OnboardingProgress),
        table("api_keys", ApiKey),
        table("provider_credentials", ProviderCredential),
        table("provider_sync_connections", ProviderSyncConnection),
        table("provider_usage_buckets", ProviderUsageBucket),
        table("provider_cost_buckets", ProviderCostBucket),
        table("provider_keys", ProviderKey),
        table("known_provider_keys", KnownProviderKey),
        table("provider_key_matches", ProviderKeyMatch),
        table("budgets", Budget),
        Table("budget_spend", S, _by_key(S, S.budget.in_(budgets), [S.budget, S.period_start])),
        table("budget_increases", BudgetIncrease),
        table("budget_alerts", BudgetAlert),
        table("price_overrides", PriceOverride),
        table("model_aliases", ModelAlias),
        table("usage_events", UsageEvent),
        Table("usage_rollups", R, _by_key(R, R.organization == org, [R.hour, R.provider, R.model, R.api_key_id,
                                                                     R.user_ref, R.department_id])),
        Table("usage_tag_rollups", T, _by_key(T, T.organization == org, [T.tag, T.hour, T.provider, T.model,
                                                                         T.api_key_id, T.user_ref, T.department_id])),
        Table("usage_dimensions", D, _by_key(D, D.organization == org, [D.dimension, D.value])),
        table("gateway_requests", GatewayRequest),
        table("notifications", Notification),
        table("notification_settings", NotificationSettings),
        table("notification_preferences", NotificationPreference),
        table("notifications_once", NotificationOnce),
        table("webhooks", WebhookEndpoint, clean=_webhook_url),
        table("email_templates", TemplateOverride),
        table("deliveries", Delivery, without=("payload",), clean=_webhook_recipient),
        table("delivery_attempts", DA, DA.delivery.in_(deliveries)),
        table("billing_account", BillingAccount),
        table("invoices", Invoice),
        table("meter_reports", MeterReport),
        table("stripe_events", StripeEvent),
        table("audit_log", AuditLog, without=("user_agent",)),
    ]


def exported_models() -> set[type]:
    return {t.model for t in org_tables(Organization(id=0))}


def plain_row(row: dict) -> str:
    """One row as a line of the archive's JSON-lines files (no newline)."""
    return _dumps(_row(row))

"""Data exports for people and organizations.

`account_export`: a member's own data as one JSON document (profile, sign-in
identities, memberships, the API keys they created or are attributed to —
metadata only —, their chat conversations and their audit trail), produced
piece by piece so it can be streamed.

`org_export`: everything an organization owns as gzip-compressed JSON lines,
one table row per line (`{"table": …, "row": {…}}`, after a first line that
describes the archive). Tables are read in keyset chunks, so memory stays
bounded at any size. Never exported: secrets and their hashes (API key
hashes, encrypted provider keys, webhook signing secrets, invitation tokens),
members' chat conversations (private to each member; each downloads their
own) and the gateway's kept request bodies.
"""
from __future__ import annotations

import json
import zlib
from datetime import date, datetime
from decimal import Decimal

from peewee import JOIN, Tuple

from costguardian import clock, permissions
from costguardian.models import (ApiKey, AuditLog, BillingAccount, Budget, BudgetAlert, BudgetIncrease, BudgetSpend,
                                 ChatMessage, Conversation, Delivery, Department, DomainJoin, ExternalIdentity,
                                 GatewayRequest, Invitation, Invoice, Membership, ModelAlias, Notification,
                                 NotificationPreference, NotificationSettings, Organization, PriceOverride,
                                 ProviderCredential, ProviderSyncConnection, TemplateOverride, UsageEvent,
                                 UsageRollup, UsageTagRollup, User, WebhookEndpoint)
from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted
from costguardian.services.team import audit

CHUNK = 1000
FORMAT_VERSION = 1
# Columns never exported, whatever the table: secrets, their hashes and tokens.
_SECRET_SUFFIXES = ("_hash", "_encrypted", "secret", "_token")


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
            if f.name not in without and not f.name.endswith(_SECRET_SUFFIXES)]


def _row(model_row: dict) -> dict:
    return {name: _plain(value) for name, value in model_row.items()}


def _refuse_impersonation(actor: Actor) -> None:
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
    _refuse_impersonation(actor)
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

def org_filename(org: Organization) -> str:
    return f"{org.slug}-export-{clock.now():%Y-%m-%d}.jsonl.gz"


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


def _tables(org: Organization):
    """(name, rows(chunk)) for each table of the archive, in this order."""
    budgets = Budget.select(Budget.id).where(Budget.organization == org)
    R, T = UsageRollup, UsageTagRollup
    return [
        ("organization", _by_id(Organization, Organization.id == org.id)),
        ("departments", _by_id(Department, Department.organization == org)),
        ("members", _members(org)),
        ("invitations", _by_id(Invitation, Invitation.organization == org)),
        ("domain_joins", _by_id(DomainJoin, DomainJoin.organization == org)),
        ("api_keys", _by_id(ApiKey, ApiKey.organization == org)),
        ("provider_credentials", _by_id(ProviderCredential, ProviderCredential.organization == org)),
        ("provider_sync_connections", _by_id(ProviderSyncConnection, ProviderSyncConnection.organization == org,
                                             ("cursors",))),
        ("budgets", _by_id(Budget, Budget.organization == org)),
        ("budget_spend", _by_key(BudgetSpend, BudgetSpend.budget.in_(budgets),
                                 [BudgetSpend.budget, BudgetSpend.period_start])),
        ("budget_increases", _by_id(BudgetIncrease, BudgetIncrease.organization == org)),
        ("budget_alerts", _by_id(BudgetAlert, BudgetAlert.organization == org)),
        ("price_overrides", _by_id(PriceOverride, PriceOverride.organization == org)),
        ("model_aliases", _by_id(ModelAlias, ModelAlias.organization == org)),
        ("usage_events", _by_id(UsageEvent, UsageEvent.organization == org)),
        ("usage_rollups", _by_key(R, R.organization == org, [R.hour, R.provider, R.model, R.api_key_id, R.user_ref,
                                                             R.department_id])),
        ("usage_tag_rollups", _by_key(T, T.organization == org, [T.tag, T.hour, T.provider, T.model, T.api_key_id,
                                                                 T.user_ref, T.department_id])),
        ("gateway_requests", _by_id(GatewayRequest, GatewayRequest.organization == org)),
        ("notifications", _by_id(Notification, Notification.organization == org)),
        ("notification_settings", _by_id(NotificationSettings, NotificationSettings.organization == org)),
        ("notification_preferences", _by_id(NotificationPreference, NotificationPreference.organization == org)),
        ("webhooks", _by_id(WebhookEndpoint, WebhookEndpoint.organization == org)),
        ("email_templates", _by_id(TemplateOverride, TemplateOverride.organization == org)),
        ("deliveries", _by_id(Delivery, Delivery.organization == org, ("payload",))),
        ("billing_account", _by_id(BillingAccount, BillingAccount.organization == org)),
        ("invoices", _by_id(Invoice, Invoice.organization == org)),
        ("audit_log", _by_id(AuditLog, AuditLog.organization == org, ("user_agent",))),
    ]


TABLES = [name for name, _ in _tables(Organization(id=0))]


def org_export(org: Organization, actor: Actor, chunk: int = CHUNK):
    """The organization's archive: gzip bytes, one piece per chunk read
    (audit-logged once, before the first piece)."""
    _refuse_impersonation(actor)
    if actor.user is not None:
        membership = Membership.of(actor.user, org)
        if membership is None or membership.role != permissions.OWNER:
            raise NotPermitted("Only an owner can export the whole organization.")
    audit.record(actor, "org.exported", org=org, target=org)
    return _org_pieces(org, chunk)


def _org_pieces(org: Organization, chunk: int):
    gzip = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    head = {"format": "costguardian.org-export", "version": FORMAT_VERSION, "organization": org.slug,
            "exported_at": clock.now(), "tables": TABLES}
    yield gzip.compress((_dumps(head) + "\n").encode())
    for name, rows in _tables(org):
        lines = []
        for row in rows(chunk):
            lines.append(_dumps({"table": name, "row": _row(row)}))
            if len(lines) >= chunk:
                yield gzip.compress(("\n".join(lines) + "\n").encode())
                lines = []
        if lines:
            yield gzip.compress(("\n".join(lines) + "\n").encode())
    yield gzip.flush()

"""The organization's activity feed: its audit log told as sentences
("Olga Owner changed Ann's role from member to viewer"), filterable by who
acted and by action, with links to what each entry is about.

Every action the code records has a sentence here; an action without one
(a feature newer than this table) still reads as a generic sentence."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from peewee import JOIN

from costguardian.models import ApiKey, AuditLog, Department, Membership, User

PER_PAGE = 25

# Families of actions, for the filter: the prefix before the dot -> label.
FAMILIES = {"member": "Members", "invitation": "Invitations", "department": "Departments", "key": "API keys",
            "price_override": "Prices", "model_alias": "Model aliases", "org": "Organization settings",
            "webhook": "Webhooks", "notification_template": "Email templates",
            "provider_credential": "Provider keys", "billing": "Billing", "onboarding": "Setup"}


@dataclass
class Entry:
    row: AuditLog
    actor: str  # who did it: a person's name, an API key, or "Cost Guardian"
    parts: list  # the rest of the sentence: [(text, url or None)]
    when: datetime

    @property
    def text(self) -> str:
        return f"{self.actor} " + "".join(text for text, _ in self.parts)


# Who did what when no person did: one name on every page (activity, audit log, exports).
SYSTEM_ACTOR = "Cost Guardian"


def actor_name(row: AuditLog) -> str:
    """Who did it: a person, a platform admin acting as one, an API key, or Cost Guardian itself."""
    if row.actor_id and row.impersonator_id:  # a platform admin acting as the person
        return f"{row.impersonator.display_name} (platform admin, acting as {row.actor.display_name})"
    if row.actor_id:
        return row.actor.display_name
    if isinstance(row.detail, dict) and row.detail.get("api_key"):
        return f"API key {row.detail['api_key']}"
    return SYSTEM_ACTOR


def feed(org, actor_id: int | None = None, action: str = "", membership: Membership | None = None,
         page: int = 1, per_page: int = PER_PAGE) -> tuple[list[AuditLog], bool]:
    """One page of the organization's audit rows, newest first, with their
    actors; `action` is an action ("member.role_changed") or a family
    ("member"); `membership` keeps the rows by or about that member."""
    query = filtered(org, actor_id, action, membership)
    rows = list(query.order_by(AuditLog.id.desc()).offset((page - 1) * per_page).limit(per_page + 1))
    return rows[:per_page], len(rows) > per_page


def filtered(org, actor_id: int | None = None, action: str = "", membership: Membership | None = None):
    """The organization's audit rows the filters keep, with their actors (unordered)."""
    query = (AuditLog.select(AuditLog, User).join(User, JOIN.LEFT_OUTER, on=(AuditLog.actor == User.id))
             .where(AuditLog.organization == org))
    if actor_id is not None:
        query = query.where(AuditLog.actor == actor_id)
    if action:
        query = query.where(AuditLog.action.startswith(action + ".") if action in FAMILIES
                            else AuditLog.action == action)
    if membership is not None:
        query = query.where((AuditLog.actor == membership.user_id)
                            | ((AuditLog.target_type == "membership") & (AuditLog.target_id == str(membership.id)))
                            | ((AuditLog.target_type == "user") & (AuditLog.target_id == str(membership.user_id))))
    return query


def actions(org) -> list[str]:
    """The actions the organization's log holds, for the filter."""
    query = (AuditLog.select(AuditLog.action).where(AuditLog.organization == org).distinct()
             .order_by(AuditLog.action).tuples())
    return [action for action, in query]


def actors(org) -> list[tuple[int, str]]:
    """(user id, name) of everyone who acted in the organization's log."""
    ids = AuditLog.select(AuditLog.actor).where(AuditLog.organization == org, AuditLog.actor.is_null(False))
    return sorted(((u.id, u.display_name) for u in User.select(User.id, User.name, User.email)
                   .where(User.id.in_(ids))), key=lambda item: item[1].lower())


# --- sentences -------------------------------------------------------------------

@dataclass
class _Context:
    """What the sentences of one page need, loaded in a few queries."""

    names: dict  # lower-case email -> display name
    memberships: dict  # membership id -> membership id (still a member)
    keys: dict  # key id -> name
    departments: dict  # department id -> name (still there)
    links: object  # callable(kind, id) -> url or None


def _person(ctx: _Context, email) -> str:
    if not email:
        return "someone"
    return ctx.names.get(str(email).lower(), str(email))


def _quoted(value) -> str:
    return f"“{value}”"


def _provider_label(key: str) -> str:
    from costguardian.services.gateway import providers

    entry = providers.get(key)
    return entry.label if entry else key


def _changes(changes) -> str:
    if not isinstance(changes, dict) or not changes:
        return ""
    described = []
    for name, pair in changes.items():
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            old, new = pair
            described.append(f"{name.replace('_', ' ')} from {old or '—'} to {new or '—'}")
        else:
            described.append(name.replace("_", " "))
    return " (" + "; ".join(described) + ")"


def _sentence(row: AuditLog, ctx: _Context) -> list:
    d = row.detail if isinstance(row.detail, dict) else {}
    action, target_id = row.action, row.target_id
    member_link = ctx.links("membership", target_id) if row.target_type == "membership" and \
        target_id.isdigit() and int(target_id) in ctx.memberships else None
    key_link = ctx.links("key", target_id) if row.target_type == "apikey" else None
    department_link = ctx.links("department", target_id) if row.target_type == "department" and \
        target_id.isdigit() and int(target_id) in ctx.departments else None
    key_name = ctx.keys.get(int(target_id), d.get("name") or d.get("prefix", "")) \
        if row.target_type == "apikey" and target_id.isdigit() else d.get("name", "")
    user = (_person(ctx, d.get("user")), member_link)
    match action:
        case "org.created":
            return [("created the organization ", None), (_quoted(d.get("name", "")), ctx.links("org", None))]
        case "org.updated":
            return [("changed the organization's settings", ctx.links("org", None)), (_changes(d.get("changes")), None)]
        case "org.join_domain_changed":
            return [("changed who may join by email domain", ctx.links("org", None)),
                    (_changes(d.get("changes")), None)]
        case "org.member_visibility_changed":
            seen = "every person's spend" if d.get("members_see_everyone") else "department totals and their own"
            return [("let members see " + seen, ctx.links("org", None))]
        case "org.join_domain_verified":
            return [("verified the domain ", None), (str(d.get("domain", "")), ctx.links("org", None))]
        case "org.domain_verification_started":
            return [("started verifying the domain ", None), (str(d.get("domain", "")), ctx.links("org", None))]
        case "org.domain_unverified":
            return [("withdrew the domain ", None), (str(d.get("domain", "")), ctx.links("org", None)),
                    (" (its DNS record disappeared)", None)]
        case "org.request_bodies_deleted":
            count = d.get("count", 0)
            return [(f"deleted the {count} kept gateway request bod{'y' if count == 1 else 'ies'}", None)]
        case "member.added":
            return [("added ", None), user, (f" as {d.get('role', 'member')}", None)]
        case "member.joined":
            via = {"invitation": " by invitation", "domain": " through the organization's email domain"}
            return [("joined", member_link), (f" as {d.get('role', 'member')}{via.get(d.get('via'), '')}", None)]
        case "member.invited" | "invitation.sent":
            extra = f", in {d['department']}" if d.get("department") else ""
            return [(f"invited {d.get('email', '')} as {d.get('role', 'member')}{extra}",
                     ctx.links("invitations", None))]
        case "invitation.resent":
            return [(f"resent the invitation to {d.get('email', '')}", ctx.links("invitations", None))]
        case "invitation.revoked":
            return [(f"revoked the invitation to {d.get('email', '')}", ctx.links("invitations", None))]
        case "invitation.accepted":
            return [(f"accepted the invitation to {d.get('email', '')}", ctx.links("invitations", None))]
        case "member.role_changed":
            return [("changed ", None), user, (f"'s role from {d.get('old_role')} to {d.get('new_role')}", None)]
        case "member.removed":
            return [("removed ", None), (_person(ctx, d.get("user")), None), (f" ({d.get('role', '')})", None)]
        case "member.left":
            return [("left the organization", None)]
        case "member.department_changed":
            old, new = d.get("old_department"), d.get("new_department")
            if old and new:
                return [("moved ", None), user, (f" from {old} to {new}", None)]
            if new:
                return [("put ", None), user, (f" in {new}", None)]
            return [("took ", None), user, (f" out of {old or 'their department'}", None)]
        case "key.created":
            return [("created API key ", None), (_quoted(key_name), key_link)]
        case "key.rotated":
            return [("rotated API key ", None), (_quoted(key_name), key_link)]
        case "key.revoked":
            return [("revoked API key ", None), (_quoted(key_name), key_link)]
        case "key.limits_changed":
            return [("changed the gateway limits of API key ", None), (_quoted(key_name), key_link),
                    (_changes(d.get("changes")), None)]
        case "org.gateway_limits_changed":
            return [("changed the organization's gateway limits", None), (_changes(d.get("changes")), None)]
        case "price_override.created" | "price_override.updated" | "price_override.deleted":
            verb = {"created": "set", "updated": "changed", "deleted": "removed"}[action.split(".")[1]]
            return [(f"{verb} the organization's price for ", None),
                    (f"{d.get('provider', '')}/{d.get('model', '')}", ctx.links("prices", None))]
        case "model_alias.created":
            return [(f"made {d.get('alias', '')} a name for ", None),
                    (f"{d.get('provider', '')}/{d.get('model', '')}", ctx.links("prices", None))]
        case "model_alias.deleted":
            return [(f"removed the model name {d.get('alias', '')} (", None),
                    (f"{d.get('provider', '')}/{d.get('model', '')}", ctx.links("prices", None)), (")", None)]
        case "department.created":
            parent = f" under {d['parent']}" if d.get("parent") else ""
            return [("created the department ", None), (d.get("name", ""), department_link), (parent, None)]
        case "department.renamed":
            old = (d.get("changes") or {}).get("name", ["", ""])[0]
            return [(f"renamed the department {old} to ", None), (d.get("name", ""), department_link)]
        case "department.moved":
            old, new = (d.get("changes") or {}).get("parent", ["", ""])
            return [("moved the department ", None), (d.get("name", ""), department_link),
                    (f" from {old or 'the top level'} to {new or 'the top level'}", None)]
        case "department.updated":
            return [("changed the department ", None), (d.get("name", ""), department_link),
                    (_changes(d.get("changes")), None)]
        case "department.merged":
            return [(f"merged the department {d.get('name', '')} into ", None), (d.get("into", ""), department_link)]
        case "department.deleted":
            moved = f", moving its members to {d['moved_to']}" if d.get("moved_to") else ""
            return [(f"deleted the department {d.get('name', '')}{moved}", None)]
        case "webhook.created" | "webhook.updated" | "webhook.deleted" | "webhook.secret_rolled" | \
                "webhook.tested" | "webhook.disabled" | "webhook.redelivered":
            verb = {"created": "added the webhook ", "updated": "changed the webhook ",
                    "deleted": "deleted the webhook ", "secret_rolled": "rolled the signing secret of the webhook ",
                    "tested": "sent a test to the webhook ", "disabled": "turned off the failing webhook ",
                    "redelivered": "sent a delivery again to the webhook "}[action.split(".")[1]]
            link = ctx.links("webhook", target_id) if action != "webhook.deleted" and target_id.isdigit() else None
            return [(verb, None), (_quoted(d.get("name") or f"#{target_id}"), link)]
        case "budget.created" | "budget.updated" | "budget.deleted" | "budget.raised" | "budget.test_alert":
            name = _quoted(d.get("name") or f"#{target_id}")
            link = ctx.links("budget", target_id) if action != "budget.deleted" else None
            match action:
                case "budget.created":
                    return [("created the budget ", None), (name, link),
                            (f" ({d.get('amount', '')} {d.get('period', '')}, {d.get('scope', '')})", None)]
                case "budget.updated":
                    return [("changed the budget ", None), (name, link), (_changes(d.get("changes")), None)]
                case "budget.deleted":
                    return [(f"deleted the budget {name}", None)]
                case "budget.raised":
                    reason = f": {d['reason']}" if d.get("reason") else ""
                    return [("raised ", None), (name, link),
                            (f" by {d.get('increase', '')} for {d.get('period', 'this period')}{reason}", None)]
                case _:
                    return [("sent a test alert for the budget ", None), (name, link)]
        case "provider_credential.created" | "provider_credential.updated" | "provider_credential.secret_replaced" | \
                "provider_credential.checked" | "provider_credential.default_set" | "provider_credential.enabled" | \
                "provider_credential.disabled" | "provider_credential.deleted":
            verb = {"created": "added the {p} key ", "updated": "changed the {p} key ",
                    "secret_replaced": "replaced the {p} key ", "checked": "checked the {p} key ",
                    "default_set": "made the default {p} key ", "enabled": "enabled the {p} key ",
                    "disabled": "disabled the {p} key ", "deleted": "deleted the {p} key "}[action.split(".")[1]]
            provider = _provider_label(d.get("provider", ""))
            link = ctx.links("provider_credential", target_id) if action != "provider_credential.deleted" and \
                target_id.isdigit() else None
            ending = f" (…{d['last4']})" if d.get("last4") else ""
            extra = _changes(d.get("changes")) if action == "provider_credential.updated" else ""
            return [(verb.format(p=provider), None), (_quoted(d.get("label") or f"#{target_id}"), link),
                    (ending + extra, None)]
        case "notification_template.saved":
            return [("changed the email template for ", None), (str(d.get("event_type", "")), None)]
        case "notification_template.reset":
            return [("reset the email template for ", None), (str(d.get("event_type", "")), None),
                    (" to the default", None)]
        case "notifications.unsubscribed":
            return [(f"unsubscribed from {d.get('event_type') or 'notification'} emails", None)]
        case "billing.customer_created":
            return [("set up billing with Stripe", ctx.links("billing", None))]
        case "billing.checkout_started":
            return [(f"started Checkout for {str(d.get('plan', '')).title()} ({d.get('seats')} seats, "
                     f"{d.get('interval')}ly)", ctx.links("billing", None))]
        case "billing.portal_opened":
            return [("opened the Stripe Customer Portal", ctx.links("billing", None))]
        case "billing.subscription_changed":
            after = d.get("after") or ["", "", ""]
            return [(f"changed the subscription to {str(after[0]).title()}, {after[1]}ly, {after[2]} seats",
                     ctx.links("billing", None))]
        case "billing.cancellation_set":
            return [("cancelled the subscription at the end of the period", ctx.links("billing", None))]
        case "billing.reactivated":
            return [("kept the subscription (undid the cancellation)", ctx.links("billing", None))]
        case "billing.invoice_created":
            return [(f"invoiced pending items now (invoice {d.get('number') or ''}, ${d.get('total_usd', '')})",
                     ctx.links("billing", None))]
        case "billing.plan_updated" | "billing.stripe_setup":
            return [("changed the plans on sale", None)]
        case "onboarding.dismissed":
            return [("closed the setup checklist", None)]
        case "onboarding.step_done" | "onboarding.step_skipped":
            verb = "finished" if action.endswith("done") else "skipped"
            return [(f"{verb} the setup step “{d.get('step', '')}”", None)]
        # The platform console and its administrators (services/platform).
        case "org.suspended":
            again = " (new reason)" if d.get("updated") else ""
            return [(f"suspended the organization{again}: {d.get('reason', '')}", None)]
        case "org.unsuspended":
            return [("reinstated the organization", None)]
        case "org.deletion_scheduled":
            return [(f"scheduled the organization's deletion for {str(d.get('delete_after', ''))[:10]}", None)]
        case "org.deletion_cancelled":
            return [("cancelled the organization's deletion", None)]
        case "org.deleted":
            return [(f"deleted the organization {_quoted(d.get('name', ''))}", None)]
        case "org.usage_pruned":  # services/ops/retention.py
            return [(f"pruned {d.get('usage_events', 0):,} raw usage events and {d.get('gateway_requests', 0):,} "
                     f"gateway request rows older than {str(d.get('before', ''))[:10]} (totals are kept)", None)]
        case "org.exported":
            return [("downloaded an export of the whole organization", None)]
        case "org.export_requested":  # services/ops/org_export.py
            return [("asked for an export of the whole organization", None)]
        case "org.export_downloaded":
            return [("downloaded the export of the whole organization", None)]
        case "org.ownership_transferred":
            return [("made ", None), user, (" the organization's owner (the previous owners are admins now)", None)]
        case "org.features_changed":
            return [("changed the organization's features", None), (_changes(d.get("changes")), None)]
        case "billing.plan_granted":
            plan = str(d.get("plan", "")).title()
            return [(f"granted the {plan} plan (no subscription)", ctx.links("billing", None))]
        case "billing.grant_removed":
            return [("removed the granted plan", ctx.links("billing", None))]
        case "platform.viewed":
            return [("viewed the organization in the platform console", None)]
        case "impersonation.started":
            return [(f"began acting as {d.get('user_email', 'a user')}: {d.get('reason', '')}", None)]
        case "impersonation.ended":
            return [(f"stopped acting as a user ({d.get('reason', '')})", None)]
        case "impersonation.request":
            return [(f"opened {d.get('method', 'GET')} {d.get('path', '')} ({d.get('status', '')})", None)]
        case "platform.setting_changed":
            return [(f"changed the platform setting “{d.get('setting', '')}”", None)]
        case "platform.global_price_created" | "platform.global_price_updated" | "platform.global_price_deleted":
            verb = {"created": "added", "updated": "changed", "deleted": "deleted"}[action.rsplit("_", 1)[1]]
            return [(f"{verb} the global price of {d.get('provider', '')} {d.get('model', '')}", None)]
        case "platform.audit_exported" | "platform.users_exported" | "platform.usage_exported":
            what = action.split(".")[1].removesuffix("_exported")
            return [(f"exported the platform's {what} as CSV", None)]
        case "platform.delivery_retried":
            return [("sent a failed delivery again from the platform console", None)]
        case "platform_token.created":
            return [(f"created the platform API token {d.get('prefix', '')}", None)]
        case "platform_token.revoked":
            return [(f"revoked the platform API token {d.get('prefix', '')}", None)]
        # Provider usage sync (services/provider_sync).
        case "provider_sync.connected" | "provider_sync.key_replaced":
            verb = "connected" if action.endswith("connected") else "replaced"
            return [(f"{verb} the {d.get('provider', '')} admin key (…{d.get('last4', '')}) for usage sync",
                     ctx.links("reconciliation", d.get("provider")))]
        case "provider_sync.disconnected":
            return [(f"disconnected the {d.get('provider', '')} admin key (…{d.get('last4', '')})", None)]
        case "provider_sync.settings_changed":
            return [(f"changed the {d.get('provider', '')} reconciliation settings", None),
                    (_changes(d.get("changes")), None)]
        case "provider_sync.key_known" | "provider_sync.key_forgotten":
            what = "marked" if action.endswith("known") else "unmarked"
            return [(f"{what} the {d.get('provider', '')} key {d.get('key_id', '')} as one of the organization's own",
                     None)]
    if action.startswith("billing.") and d.get("event"):  # a Stripe event applied (services.billing.webhooks)
        return [(f"applied Stripe's {action[len('billing.'):]} (subscription {d.get('status') or 'none'})",
                 ctx.links("billing", None))]
    thing = row.target_type.replace("_", " ")
    return [(f"did “{action}”" + (f" on a {thing}" if thing else ""), None)]


def describe(org, rows: list[AuditLog], links) -> list[Entry]:
    """The rows as sentences. `links(kind, id)` gives the URL of a target's
    page (None when it has none or the viewer may not see it)."""
    emails = {str(r.detail.get("user")).lower() for r in rows if isinstance(r.detail, dict) and r.detail.get("user")}
    names = {u.email: u.display_name for u in User.select(User.email, User.name).where(User.email.in_(list(emails)))} \
        if emails else {}
    member_ids = [int(r.target_id) for r in rows if r.target_type == "membership" and r.target_id.isdigit()]
    memberships = {m: m for m, in Membership.in_org(org).select(Membership.id)
                   .where(Membership.id.in_(member_ids)).tuples()} if member_ids else {}
    key_ids = [int(r.target_id) for r in rows if r.target_type == "apikey" and r.target_id.isdigit()]
    key_names = dict(ApiKey.in_org(org).select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(key_ids)).tuples()) \
        if key_ids else {}
    dept_ids = [int(r.target_id) for r in rows if r.target_type == "department" and r.target_id.isdigit()]
    departments = dict(Department.in_org(org).select(Department.id, Department.name)
                       .where(Department.id.in_(dept_ids)).tuples()) if dept_ids else {}
    ctx = _Context(names, memberships, key_names, departments, links)
    entries = []
    for row in rows:
        entries.append(Entry(row, actor_name(row), _sentence(row, ctx), row.created_at))
    return entries

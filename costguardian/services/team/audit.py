"""Writing the audit log."""
from __future__ import annotations

from flask import g, has_request_context
from peewee import JOIN

from costguardian.models import AuditLog, User
from costguardian.services.actor import Actor


def record(actor: Actor, action: str, org=None, target=None, **detail) -> AuditLog:
    """One audit row: `action` like "org.updated", `target` any model instance."""
    if actor.api_key is not None:  # the JSON API: which key did it
        detail = {**detail, "api_key": actor.api_key.prefix}
    if actor.platform_token is not None:  # the platform admin API: which token
        detail = {**detail, "platform_token": actor.platform_token.prefix}
    if action == "platform.viewed" and has_request_context():
        g.platform_view_logged = True  # the console's generic read row is not needed then
    return AuditLog.create(
        organization=org,
        actor=actor.user,
        impersonator=actor.impersonator,
        action=action,
        target_type=type(target).__name__.lower() if target is not None else "",
        target_id=str(target.id) if target is not None else "",
        detail=detail,
        ip=actor.ip[:45],
        user_agent=actor.user_agent[:512],
    )


def for_org(org, page: int = 1, per_page: int = 50) -> tuple[list[AuditLog], bool]:
    """One page of the organization's audit rows, newest first, with their
    actors; and whether another page follows."""
    query = (AuditLog.select(AuditLog, User)
             .join(User, JOIN.LEFT_OUTER, on=(AuditLog.actor == User.id))
             .where(AuditLog.organization == org)
             .order_by(AuditLog.id.desc())
             .offset((page - 1) * per_page).limit(per_page + 1))
    rows = list(query)
    return rows[:per_page], len(rows) > per_page


# What a person's own security log shows: their sign-ins and credentials, and
# whatever platform admins did to their account (impersonation included).
SECURITY_ACTIONS = ("auth.", "impersonation.started", "impersonation.ended", "user.", "account.")


def security_log(user, limit: int = 30) -> list[AuditLog]:
    """Account-level events about this user (target) or by them (sign-ins),
    newest first, with the acting user and impersonator loaded."""
    actor = User.alias()
    admin = User.alias()
    about_user = (AuditLog.target_type == "user") & (AuditLog.target_id == str(user.id))
    prefixes = None
    for prefix in SECURITY_ACTIONS:
        clause = AuditLog.action.startswith(prefix) if prefix.endswith(".") else (AuditLog.action == prefix)
        prefixes = clause if prefixes is None else (prefixes | clause)
    query = (AuditLog.select(AuditLog, actor, admin)
             .join(actor, JOIN.LEFT_OUTER, on=(AuditLog.actor == actor.id), attr="actor_user")
             .switch(AuditLog)
             .join(admin, JOIN.LEFT_OUTER, on=(AuditLog.impersonator == admin.id), attr="impersonator_user")
             .where(about_user & prefixes)
             .order_by(AuditLog.id.desc()).limit(limit))
    return list(query)

"""Writing the audit log."""
from __future__ import annotations

from peewee import JOIN

from costguardian.models import AuditLog, User
from costguardian.services.actor import Actor


def record(actor: Actor, action: str, org=None, target=None, **detail) -> AuditLog:
    """One audit row: `action` like "org.updated", `target` any model instance."""
    if actor.api_key is not None:  # the JSON API: which key did it
        detail = {**detail, "api_key": actor.api_key.prefix}
    return AuditLog.create(
        organization=org,
        actor=actor.user,
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

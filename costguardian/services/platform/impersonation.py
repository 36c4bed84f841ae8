"""A platform admin acting as a user, by GitLab's rules: started from the
user's console page with a reason; never for yourself, a disabled user or
another platform admin, never from inside another impersonation; ends after
60 minutes, when the admin stops it or signs out. Every request made while
acting is audit-logged with both identities and the reason.

The admin's own signed-in session carries a random key; the row, bound to
that admin and found by the key's hash, is what makes it valid (the browser
holds no flag to forge)."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from costguardian import clock
from costguardian.models import Impersonation, User
from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted, ValidationError
from costguardian.services.platform import settings
from costguardian.services.team import audit

TTL = timedelta(minutes=60)
REASON_MAX = 500


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def refusal(admin: User, target: User, already_acting: bool = False) -> str | None:
    """Why `admin` may not act as `target` now, or None."""
    if not settings.get("impersonation_enabled"):
        return "Impersonation is switched off on this platform (Configuration)."
    if already_acting:
        return "You are already acting as someone: stop that first."
    if not admin.is_platform_admin:
        return "Only platform administrators may act as a user."
    if target.id == admin.id:
        return "You cannot act as yourself."
    if target.is_disabled:
        return "This account is disabled: enable it first."
    if target.is_platform_admin:
        return "Platform administrators cannot be impersonated."
    return None


def start(admin: User, target: User, reason: str, actor: Actor, already_acting: bool = False) -> str:
    """Begin acting as `target`; returns the key for the admin's session."""
    problem = refusal(admin, target, already_acting)
    if problem:
        raise NotPermitted(problem)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why you need to act as this user (it is audit-logged)."})
    if len(reason) > REASON_MAX:
        raise ValidationError({"reason": f"At most {REASON_MAX} characters."})
    now = clock.now()
    # One at a time: whatever this admin still had open ends here.
    for row in Impersonation.select().where(Impersonation.admin == admin, Impersonation.ended_at.is_null()):
        _end(row, "replaced", actor)
    key = secrets.token_urlsafe(32)
    row = Impersonation.create(admin=admin, user=target, reason=reason, key_hash=_hash(key), started_at=now,
                               expires_at=now + TTL, ip=actor.ip[:45])
    audit.record(actor, "impersonation.started", target=target, reason=reason, impersonation=row.id,
                 expires_at=row.expires_at.isoformat(timespec="seconds"), user_email=target.email)
    return key


def resolve(admin: User, key: str | None) -> Impersonation | None:
    """The live impersonation this admin's session names, or None (and an
    expired one, or one whose user was meanwhile disabled or made a platform
    admin, is ended here)."""
    if not key:
        return None
    row = (Impersonation.select(Impersonation, User).join(User, on=(Impersonation.user == User.id))
           .where(Impersonation.key_hash == _hash(key)).first())
    if row is None or row.admin_id != admin.id or row.ended_at is not None:
        return None
    system = Actor(user=admin, user_agent="impersonation")
    if not settings.get("impersonation_enabled"):
        _end(row, "switched_off", system)
        return None
    if clock.now() >= row.expires_at:
        _end(row, "expired", system)
        return None
    if row.user.is_disabled or row.user.is_platform_admin or not admin.is_platform_admin:
        _end(row, "no_longer_allowed", system)
        return None
    row.admin = admin
    return row


def _end(row: Impersonation, reason: str, actor: Actor) -> bool:
    ended = (Impersonation.update(ended_at=clock.now(), ended_reason=reason[:32])
             .where(Impersonation.id == row.id, Impersonation.ended_at.is_null()).execute())
    if ended:
        audit.record(Actor(user=actor.user, ip=actor.ip, user_agent=actor.user_agent), "impersonation.ended",
                     target=User(id=row.user_id), reason=reason, impersonation=row.id)
    return bool(ended)


def stop(row: Impersonation, actor: Actor, reason: str = "stopped") -> bool:
    """End it (the admin's click, sign-out); the actor is the admin."""
    return _end(row, reason, actor)


def history_for(user: User, limit: int = 50) -> list[Impersonation]:
    """Impersonations of this user (for their security log and the console)."""
    return list(Impersonation.select().where(Impersonation.user == user)
                .order_by(Impersonation.id.desc()).limit(limit))

"""Signed-in browsers (UserSession): started at sign-in, checked on every
request, ended by sign-out, by the user or a platform admin, or when the
account is disabled. The session cookie carries a random key; the row, found
by the key's SHA-256, is what keeps that browser signed in."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from costguardian import clock
from costguardian.models import User, UserSession
from costguardian.services.actor import Actor
from costguardian.services.team import audit

TOUCH_EVERY = timedelta(minutes=5)  # last_seen_at is written at most this often


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def start(user: User, actor: Actor, method: str) -> str:
    """A new session row for this browser; returns the key for its cookie."""
    key = secrets.token_urlsafe(32)
    UserSession.create(user=user, key_hash=_hash(key), ip=actor.ip[:45], user_agent=actor.user_agent[:512],
                       method=method[:16])
    return key


def remembered_recently(user: User, actor: Actor) -> bool:
    """Whether this browser (user agent and address) got a "remembered" row
    in the last minute."""
    return (UserSession.select().where(UserSession.user == user, UserSession.method == "remembered",
                                       UserSession.ip == actor.ip[:45],
                                       UserSession.user_agent == actor.user_agent[:512],
                                       UserSession.created_at >= clock.now() - timedelta(minutes=1)).exists())


def current(user: User, key: str | None) -> UserSession | None:
    """The live session this key names for this user, touched; None when it
    was ended (or never was, or belongs to someone else)."""
    if not key:
        return None
    row = UserSession.get_or_none(UserSession.key_hash == _hash(key))
    if row is None or row.user_id != user.id or row.ended_at is not None:
        return None
    now = clock.now()
    if now - row.last_seen_at >= TOUCH_EVERY:
        UserSession.update(last_seen_at=now).where(UserSession.id == row.id).execute()
        row.last_seen_at = now
    return row


def end(row: UserSession, reason: str) -> bool:
    """End one session; False when it had already ended."""
    return bool(UserSession.update(ended_at=clock.now(), ended_reason=reason[:32])
                .where(UserSession.id == row.id, UserSession.ended_at.is_null()).execute())


def end_by_key(key: str | None, reason: str) -> None:
    if key:
        UserSession.update(ended_at=clock.now(), ended_reason=reason[:32]).where(
            UserSession.key_hash == _hash(key), UserSession.ended_at.is_null()).execute()


def end_all(user: User, reason: str, actor: Actor | None = None) -> int:
    """End every session of this user, remembered browsers included (the
    session version is part of every cookie, so bumping it ends them all)."""
    ended = (UserSession.update(ended_at=clock.now(), ended_reason=reason[:32])
             .where(UserSession.user == user, UserSession.ended_at.is_null()).execute())
    bump_version(user)
    if actor is not None:
        audit.record(actor, "user.sessions_ended", target=user, reason=reason, sessions=ended)
    return ended


def bump_version(user: User) -> None:
    """A new session version: every cookie naming the old one (remember-me
    cookies included) stops working."""
    User.update(session_version=User.session_version + 1).where(User.id == user.id).execute()
    user.session_version = User.get_by_id(user.id).session_version


def live(user: User) -> list[UserSession]:
    """The user's sessions still signed in, most recently seen first."""
    return list(UserSession.select().where(UserSession.user == user, UserSession.ended_at.is_null())
                .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc()))


def recent(user: User, limit: int = 50) -> list[UserSession]:
    """Every session of this user, newest first (sign-in history)."""
    return list(UserSession.select().where(UserSession.user == user).order_by(UserSession.id.desc()).limit(limit))


def get_for(user: User, session_id) -> UserSession | None:
    try:
        session_id = int(session_id)
    except (TypeError, ValueError):
        return None
    return UserSession.get_or_none(UserSession.id == session_id, UserSession.user == user)

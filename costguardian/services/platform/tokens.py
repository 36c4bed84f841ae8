"""Personal platform-admin tokens for the admin JSON API (/api/v1/admin/…).

A token reads `cgp_<prefix>_<secret>`. Like organization API keys
(services/keys.py) only the prefix and the SHA-256 of the secret are stored,
and the whole token is shown once. A token never grants more than its owner
holds now: a support admin's token cannot write whatever its scopes say, and a
token whose owner lost the platform role or was disabled is refused.
"""
from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from costguardian import clock
from costguardian.models import PlatformToken, User
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted, ValidationError
from costguardian.services.team import audit

READ, WRITE = "platform:read", "platform:write"
SCOPES = {
    READ: "Read users, organizations and system-wide usage (support and superadmins).",
    WRITE: "Create, change and delete users and organizations (superadmins only).",
}
# The platform role a scope needs of the token's owner, now (authz.PLATFORM_LEVELS).
SCOPE_ROLES = {READ: ("support", "superadmin"), WRITE: ("superadmin",)}
MAX_NAME = 100
MAX_EXPIRY_DAYS = 365
LAST_USED_RESOLUTION = timedelta(seconds=60)  # last_used_at is written at most this often per token
_TOKEN = re.compile(r"cgp_([a-z0-9]{12})_([A-Za-z0-9_-]{32,64})")


@dataclass(frozen=True)
class NewToken:
    token: PlatformToken
    plaintext: str  # shown once, never stored


def scope_list(token: PlatformToken) -> list[str]:
    return token.scopes.split()


def status(token: PlatformToken, now: datetime | None = None) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= (now or clock.now()):
        return "expired"
    return "active"


def _validated(user: User, name, scopes, expires_in_days) -> tuple[str, str, datetime | None]:
    errors: dict[str, str] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = "Name the token after what uses it, e.g. \"nightly export\"."
    elif len(name) > MAX_NAME:
        errors["name"] = f"Use at most {MAX_NAME} characters."
    if isinstance(scopes, str):
        scopes = scopes.split()
    chosen = {s.strip() for s in (scopes or []) if s and s.strip()}
    unknown = sorted(chosen - set(SCOPES))
    if unknown:
        errors["scopes"] = f"Unknown scope: {', '.join(unknown)}."
    elif not chosen:
        errors["scopes"] = "Choose platform:read, or platform:read and platform:write."
    elif WRITE in chosen and not user.is_superadmin:
        errors["scopes"] = "Only a superadmin's token can have platform:write."
    scope_text = READ + (f" {WRITE}" if WRITE in chosen else "")  # write always comes with read
    expires_at = None
    if expires_in_days not in (None, ""):
        text = str(expires_in_days).strip()
        if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_EXPIRY_DAYS:
            expires_at = clock.now() + timedelta(days=int(text))
        else:
            errors["expires_in_days"] = f"A whole number of days from 1 to {MAX_EXPIRY_DAYS}, or empty for never."
    if errors:
        raise ValidationError(errors)
    return name, scope_text, expires_at


def create(user: User, actor: Actor, name: str, scopes, expires_in_days=None) -> NewToken:
    """A new token for `user` (a platform admin), shown once. `scopes`: a list
    or a space-separated string; `expires_in_days`: None (never) or 1..365."""
    if not user.is_platform_admin:
        raise NotPermitted("Only platform administrators can have platform tokens.")
    name, scope_text, expires_at = _validated(user, name, scopes, expires_in_days)
    secret = keys._new_secret()
    token = PlatformToken.create(user=user, name=name, prefix=keys._new_prefix(), token_hash=keys._hash(secret),
                                 scopes=scope_text, expires_at=expires_at)
    audit.record(actor, "platform_token.created", target=token, name=name, scopes=scope_text, prefix=token.prefix,
                 expires_at=expires_at.isoformat() + "Z" if expires_at else None)
    return NewToken(token, f"cgp_{token.prefix}_{secret}")


def revoke(token: PlatformToken, actor: Actor) -> PlatformToken:
    """Revoke the token (idempotent: a second revocation changes nothing)."""
    now = clock.now()
    if PlatformToken.update(revoked_at=now).where(PlatformToken.id == token.id,
                                                  PlatformToken.revoked_at.is_null()).execute():
        token.revoked_at = now
        audit.record(actor, "platform_token.revoked", target=token, name=token.name, prefix=token.prefix)
    return token


def tokens_of(user: User) -> list[PlatformToken]:
    """The user's tokens, live ones first, newest first."""
    return list(PlatformToken.select().where(PlatformToken.user == user)
                .order_by(PlatformToken.revoked_at.is_null(False), PlatformToken.created_at.desc(),
                          PlatformToken.id.desc()))


def get_for(user: User, token_id) -> PlatformToken | None:
    """The user's own token with this id; None for another person's or an unknown id."""
    return PlatformToken.get_or_none(PlatformToken.id == token_id, PlatformToken.user == user)


def authenticate(authorization: str | None, scope: str) -> PlatformToken:
    """The token in an `Authorization: Bearer cgp_…` header, if valid, granted
    `scope`, and its owner still holds the platform role the scope needs;
    otherwise keys.ApiKeyError with the HTTP status and a readable detail."""
    if scope not in SCOPES:
        raise KeyError(f"unknown platform scope {scope!r}")
    if not authorization:
        raise keys.ApiKeyError(401, "missing-platform-token",
                               "Send your platform token as 'Authorization: Bearer cgp_…'.")
    scheme, _, raw = authorization.strip().partition(" ")
    match = _TOKEN.fullmatch(raw.strip()) if scheme.lower() == "bearer" else None
    if match is None:
        raise keys.ApiKeyError(401, "invalid-platform-token",
                               "The Authorization header does not hold a platform token (cgp_…).")
    prefix, secret = match.groups()
    token = (PlatformToken.select(PlatformToken, User).join(User)
             .where(PlatformToken.prefix == prefix).first())
    if token is None or not hmac.compare_digest(keys._hash(secret), token.token_hash):
        raise keys.ApiKeyError(401, "invalid-platform-token", "This platform token is not valid.")
    now = clock.now()
    if token.revoked_at is not None:
        raise keys.ApiKeyError(401, "revoked-platform-token", "This platform token was revoked.")
    if token.expires_at is not None and token.expires_at <= now:
        raise keys.ApiKeyError(401, "expired-platform-token", "This platform token has expired.")
    owner = token.user
    if owner.is_disabled:
        raise keys.ApiKeyError(403, "not-permitted", "This platform token's owner is disabled.")
    if scope not in scope_list(token):
        raise keys.ApiKeyError(403, "insufficient-scope",
                               f"This platform token lacks the '{scope}' scope (it has: {token.scopes}).")
    if owner.platform_role not in SCOPE_ROLES[scope]:
        raise keys.ApiKeyError(403, "not-permitted",
                               "This platform token's owner is no longer a platform administrator"
                               if not owner.is_platform_admin else
                               "This platform token's owner is not a superadmin, so it cannot write.")
    touch(token, now)
    return token


def touch(token: PlatformToken, now: datetime) -> None:
    """Record use without a write per request: at most one UPDATE per token
    every LAST_USED_RESOLUTION, whichever process serves it."""
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    PlatformToken.update(last_used_at=now).where(
        PlatformToken.id == token.id,
        PlatformToken.last_used_at.is_null() | (PlatformToken.last_used_at <= now - LAST_USED_RESOLUTION)).execute()
    token.last_used_at = now


def actor_for(token: PlatformToken, ip: str = "", user_agent: str = "") -> Actor:
    """Who acts through this token: its owner, the token recorded beside them."""
    return Actor(user=token.user, ip=ip, user_agent=user_agent[:512], platform_token=token)

"""People who sign in, their external identities and password-reset tokens."""
from __future__ import annotations

from flask_login import UserMixin
from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField

from costguardian import clock
from costguardian.models.base import BaseModel


class User(BaseModel, UserMixin):  # peewee's __eq__/__hash__ (by id) win over UserMixin's
    email = CharField(max_length=254, unique=True)  # always stored lower-case
    name = CharField(max_length=120, default="")
    password_hash = CharField(max_length=255, null=True)  # None: signs in through OIDC only
    # "" (none), "support" (reads everything in the console, impersonates
    # non-admins) or "superadmin" (everything): models/platform.PLATFORM_ROLES.
    platform_role = CharField(max_length=16, default="")
    is_disabled = BooleanField(default=False)
    # Bumped on password change/reset; part of the session id, so every older
    # session (and remember-me cookie) stops working at once.
    session_version = IntegerField(default=0)
    created_at = DateTimeField(default=clock.now)
    last_login_at = DateTimeField(null=True)
    last_seen_at = DateTimeField(null=True)  # coalesced: written at most every few minutes
    # When the user proved they read this mailbox (the emailed confirmation link,
    # a password reset through it, or an identity provider that vouched for it);
    # domain join needs it.
    email_verified_at = DateTimeField(null=True)

    class Meta:
        table_name = "users"  # "user" is reserved in PostgreSQL

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return not self.is_disabled

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    @property
    def is_superadmin(self) -> bool:
        return self.platform_role == "superadmin"

    @property
    def is_platform_admin(self) -> bool:
        return self.platform_role in ("support", "superadmin")

    @property
    def display_name(self) -> str:
        return self.name or self.email

    @classmethod
    def by_email(cls, email: str) -> "User | None":
        return cls.get_or_none(cls.email == email.strip().lower())


class ExternalIdentity(BaseModel):
    """A user's account at an OIDC issuer (Google or any other)."""

    user = ForeignKeyField(User, backref="identities", on_delete="CASCADE")
    issuer = CharField(max_length=255)
    subject = CharField(max_length=255)
    email = CharField(max_length=254, default="")
    created_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("issuer", "subject"), True),)


class PasswordResetToken(BaseModel):
    """Single-use, expiring; only the SHA-256 of the emailed token is stored."""

    user = ForeignKeyField(User, backref="reset_tokens", on_delete="CASCADE")
    token_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=clock.now)
    expires_at = DateTimeField()
    used_at = DateTimeField(null=True)

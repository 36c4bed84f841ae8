"""The platform console's tables: signed-in sessions, impersonations,
platform settings, global price overrides, error counts, periodic-task runs
and personal platform-admin API tokens. None belongs to one organization."""
from __future__ import annotations

from peewee import BigIntegerField, CharField, DateTimeField, ForeignKeyField, IntegerField, JSONField, TextField

from costguardian import clock
from costguardian.models.base import BaseModel
from costguardian.models.user import User

PLATFORM_ROLES = ("support", "superadmin")  # "" on User.platform_role: no platform role


class UserSession(BaseModel):
    """One signed-in browser. The session cookie carries the raw key; only its
    SHA-256 is stored. Ending a row (sign-out, disable, an admin's "end
    session") signs that browser out at its next request."""

    user = ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    key_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=clock.now)
    last_seen_at = DateTimeField(default=clock.now)  # coalesced: written at most every few minutes
    ip = CharField(max_length=45, default="")
    user_agent = TextField(default="")
    method = CharField(max_length=16, default="")  # password, oidc, signup, reset
    ended_at = DateTimeField(null=True)
    ended_reason = CharField(max_length=32, default="")

    class Meta:
        table_name = "user_session"
        indexes = ((("user", "ended_at"), False),)


class Impersonation(BaseModel):
    """A platform admin acting as a user. The admin's own session carries the
    raw key; the row (bound to the admin) is what makes it valid, so nothing
    a browser sends can start, extend or redirect one."""

    admin = ForeignKeyField(User, backref="impersonations_made", on_delete="CASCADE")
    user = ForeignKeyField(User, backref="impersonations_received", on_delete="CASCADE")
    reason = TextField()
    key_hash = CharField(max_length=64, unique=True)
    started_at = DateTimeField(default=clock.now)
    expires_at = DateTimeField()
    ended_at = DateTimeField(null=True)
    ended_reason = CharField(max_length=32, default="")  # stopped, expired, admin_signed_out, ...
    ip = CharField(max_length=45, default="")

    class Meta:
        indexes = ((("admin", "ended_at"), False), (("user", "started_at"), False))


class PlatformSetting(BaseModel):
    """A platform configuration value set in the console (services/platform/settings.py
    names them); an environment variable, where set, wins."""

    key = CharField(max_length=64, primary_key=True)
    value = JSONField()
    updated_at = DateTimeField(default=clock.now)
    updated_by = ForeignKeyField(User, null=True, on_delete="SET NULL")

    class Meta:
        table_name = "platform_setting"


class GlobalPriceOverride(BaseModel):
    """A price for a model from a date on, for every organization that has no
    override of its own for that model (same units as PriceOverride)."""

    provider = CharField(max_length=64)
    model = CharField(max_length=128)
    effective_from = DateTimeField()
    input_nanos_per_mtok = BigIntegerField()
    cache_read_nanos_per_mtok = BigIntegerField(null=True)
    cache_write_nanos_per_mtok = BigIntegerField(null=True)
    output_nanos_per_mtok = BigIntegerField()
    note = CharField(max_length=200, default="")
    created_at = DateTimeField(default=clock.now)

    class Meta:
        table_name = "global_price_override"
        indexes = ((("provider", "model", "effective_from"), True),)


class ErrorCount(BaseModel):
    """Server errors (5xx) and unexpected exceptions per route and minute, for
    the system health page; old minutes are purged."""

    minute = DateTimeField()
    route = CharField(max_length=128)
    status = IntegerField()
    count = IntegerField(default=0)
    last_error = TextField(default="")

    class Meta:
        table_name = "error_count"
        indexes = ((("minute", "route", "status"), True),)


class TaskRun(BaseModel):
    """The last run of each periodic task, and the queue consumer's heartbeat
    (name "consumer.heartbeat", written every minute)."""

    name = CharField(max_length=128, primary_key=True)
    last_started_at = DateTimeField(null=True)
    last_finished_at = DateTimeField(null=True)
    last_status = CharField(max_length=16, default="")  # ok, error, running
    last_error = TextField(default="")
    runs = BigIntegerField(default=0)
    failures = BigIntegerField(default=0)

    class Meta:
        table_name = "task_run"


class PlatformToken(BaseModel):
    """A platform admin's personal token for /api/v1/admin/…, hashed like API keys."""

    user = ForeignKeyField(User, backref="platform_tokens", on_delete="CASCADE")
    name = CharField(max_length=100)
    prefix = CharField(max_length=16, unique=True)
    token_hash = CharField(max_length=64, unique=True)
    scopes = CharField(max_length=64)  # "platform:read" or "platform:read platform:write"
    created_at = DateTimeField(default=clock.now)
    last_used_at = DateTimeField(null=True)
    expires_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)

    class Meta:
        table_name = "platform_token"

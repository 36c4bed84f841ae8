"""Organization API keys: `cg_<env>_<prefix>_<secret>`, stored as prefix + SHA-256."""
from __future__ import annotations

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField

from costguardian import clock
from costguardian.models.org import Department, TenantModel
from costguardian.models.user import User


class ApiKey(TenantModel):
    name = CharField(max_length=80)
    env = CharField(max_length=8, default="live")  # live or test: part of the key's text
    prefix = CharField(max_length=16, unique=True)  # visible, and the lookup index
    secret_hash = CharField(max_length=64)
    # After a rotation the old secret keeps working until previous_valid_until.
    previous_secret_hash = CharField(max_length=64, null=True)
    previous_valid_until = DateTimeField(null=True)
    scopes = CharField(max_length=64)  # comma-separated, see services.keys.SCOPES
    user = ForeignKeyField(User, null=True, on_delete="SET NULL")  # default attribution
    department = ForeignKeyField(Department, null=True, on_delete="SET NULL")
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="created_keys")
    created_at = DateTimeField(default=clock.now)
    expires_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    rotated_at = DateTimeField(null=True)
    last_used_at = DateTimeField(null=True)
    expiry_warned_at = DateTimeField(null=True)  # when admins were told it expires soon
    # Gateway rate limits (services/gateway/ratelimits.py): None = no limit of the key's own.
    rpm_limit = IntegerField(null=True)  # requests per minute
    tpm_limit = IntegerField(null=True)  # tokens per minute
    # May a gateway call name another user, department or tags than the key's
    # defaults (X-CG-User, X-CG-Department, X-CG-Tags, the body's user)?
    attribution_override = BooleanField(default=True)

    @property
    def scope_list(self) -> list[str]:
        return [s for s in self.scopes.split(",") if s]

    @property
    def display_key(self) -> str:
        return f"cg_{self.env}_{self.prefix}_…"

    def status(self, now=None) -> str:
        now = now or clock.now()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

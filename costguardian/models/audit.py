"""The audit log: who did what, to what, from where, when."""
from __future__ import annotations

from peewee import CharField, DateTimeField, ForeignKeyField, JSONField, TextField

from costguardian import clock
from costguardian.models.base import BaseModel
from costguardian.models.org import Organization
from costguardian.models.user import User


class AuditLog(BaseModel):
    # Null for account-level events (sign-in, password reset) that belong to
    # no single organization.
    organization = ForeignKeyField(Organization, null=True, on_delete="CASCADE")
    actor = ForeignKeyField(User, null=True, on_delete="SET NULL")
    # The platform admin who acted as `actor` (impersonation): both identities.
    impersonator = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="audit_as_impersonator")
    action = CharField(max_length=64)
    target_type = CharField(max_length=32, default="")
    target_id = CharField(max_length=64, default="")
    detail = JSONField(default=dict)
    ip = CharField(max_length=45, default="")
    user_agent = TextField(default="")
    created_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = (
            # Newest first is id order (rows are append-only), so pages of an
            # organization's log walk this index without sorting.
            (("organization", "id"), False),
            (("actor", "id"), False),
            (("impersonator", "id"), False),
            # The activity feed's filters: its action list (DISTINCT over the
            # index, not the table) and a page of one action, newest first.
            (("organization", "action", "id"), False),
        )

    @classmethod
    def in_org(cls, org):
        return cls.select().where(cls.organization == org)

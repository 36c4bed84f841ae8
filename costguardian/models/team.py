"""Invitations to join an organization: single-use, expiring, only the
SHA-256 of the emailed token stored; and who joined once by email domain."""
from __future__ import annotations

from peewee import CharField, DateTimeField, ForeignKeyField

from costguardian import clock
from costguardian.models.org import Department, TenantModel
from costguardian.models.user import User

INVITATION_STATUSES = ("pending", "accepted", "expired", "revoked")


class Invitation(TenantModel):
    email = CharField(max_length=254)  # lower-case, like User.email
    role = CharField(max_length=16)
    department = ForeignKeyField(Department, null=True, on_delete="SET NULL")
    token_hash = CharField(max_length=64, unique=True)
    invited_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="invitations_sent")
    created_at = DateTimeField(default=clock.now)
    sent_at = DateTimeField(default=clock.now)
    expires_at = DateTimeField()
    accepted_at = DateTimeField(null=True)
    accepted_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="invitations_accepted")
    revoked_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("organization", "email"), False),)

    def status(self, now=None) -> str:
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= (now or clock.now()):
            return "expired"
        return "pending"

    @classmethod
    def pending_in(cls, org, now=None):
        return cls.in_org(org).where(cls.accepted_at.is_null(), cls.revoked_at.is_null(),
                                     cls.expires_at > (now or clock.now()))


class DomainJoin(TenantModel):
    """`user` joined `organization` once through its verified email domain.
    Domain join happens at most once per pair: a member removed later (or who
    left) is not added back at their next sign-in."""

    user = ForeignKeyField(User, backref="domain_joins", on_delete="CASCADE")
    joined_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "user"), True),)

"""Organizations (tenants), their departments and memberships."""
from __future__ import annotations

from peewee import CharField, DateTimeField, ForeignKeyField

from costguardian.models.base import BaseModel, utcnow
from costguardian.models.user import User


MAX_ID = 2**31 - 1


class Organization(BaseModel):
    name = CharField(max_length=120)
    slug = CharField(max_length=63, unique=True)
    time_zone = CharField(max_length=64, default="UTC")
    currency = CharField(max_length=3, default="USD")  # display only; money is stored in USD nanos
    # Anyone signing in with a verified address at join_domain joins as
    # join_domain_role, once the domain itself is verified (join_domain_verified_at).
    join_domain = CharField(max_length=253, null=True)
    join_domain_verified_at = DateTimeField(null=True)
    join_domain_role = CharField(max_length=16, null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


class TenantModel(BaseModel):
    """A row owned by one organization. Query it through `in_org`, so that a
    missing tenant scope is hard to write."""

    organization = ForeignKeyField(Organization, on_delete="CASCADE")

    @classmethod
    def in_org(cls, org, *fields):
        return cls.select(*fields).where(cls.organization == org)

    @classmethod
    def get_in_org(cls, org, pk):
        """The row with this id in this organization, or None (never another tenant's)."""
        try:
            pk = int(pk)
        except (TypeError, ValueError):
            return None
        if not 0 < pk <= MAX_ID:  # beyond INTEGER, PostgreSQL would raise instead of finding nothing
            return None
        return cls.in_org(org).where(cls._meta.primary_key == pk).first()


class Department(TenantModel):
    name = CharField(max_length=120)
    parent = ForeignKeyField("self", null=True, backref="children", on_delete="SET NULL")
    code = CharField(max_length=32, null=True)  # cost-centre code; NULL when unset, so only set codes are unique
    manager = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="managed_departments")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("organization", "name"), True), (("organization", "code"), True))


class Membership(TenantModel):
    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    role = CharField(max_length=16)
    department = ForeignKeyField(Department, null=True, backref="memberships", on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("organization", "user"), True),)

    @classmethod
    def of(cls, user, org) -> "Membership | None":
        return cls.in_org(org).where(cls.user == user).first()

    @classmethod
    def for_user(cls, user):
        """A user's memberships with their organizations, oldest first."""
        return (cls.select(cls, Organization).join(Organization)
                .where(cls.user == user).order_by(cls.created_at, cls.id))

"""Organizations (tenants), their departments and memberships."""
from __future__ import annotations

import unicodedata

from peewee import BooleanField, CharField, DateField, DateTimeField, ForeignKeyField, IntegerField, JSONField, TextField

from costguardian import clock
from costguardian.models.base import BaseModel
from costguardian.models.user import User


MAX_ID = 2**31 - 1


class Organization(BaseModel):
    name = CharField(max_length=120)
    slug = CharField(max_length=63, unique=True)
    time_zone = CharField(max_length=64, default="UTC")
    # Minutes past the UTC hour at which the rollups' hourly buckets start
    # (services/usage/rollups.py): the zone's standard offset mod 60, cached
    # when the organization is created and re-aligned when its zone changes.
    rollup_offset_minutes = IntegerField(default=0)
    # The zone the daily rollups (UsageDayRollup) were summed in, and how far
    # they are built: exact for the local days before day_rollups_until, for
    # every day when it is None. Queries read them only when the zone is
    # time_zone and they are complete (services/usage/days.py).
    day_rollup_zone = CharField(max_length=64, null=True)
    day_rollups_until = DateField(null=True)
    currency = CharField(max_length=3, default="USD")  # display only; money is stored in USD nanos
    # Anyone signing in with a verified address at join_domain joins as
    # join_domain_role, once the domain itself is verified (join_domain_verified_at).
    join_domain = CharField(max_length=253, null=True)
    join_domain_verified_at = DateTimeField(null=True)
    join_domain_role = CharField(max_length=16, null=True)
    # Gateway request logging: keep each call's request and answer bodies
    # (off by default) for request_log_days days (services/gateway/request_log.py).
    request_logging = BooleanField(default=False)
    request_log_days = IntegerField(default=7)
    # Gateway rate limits for the whole organization, every key together
    # (services/gateway/ratelimits.py): None = no limit.
    gateway_rpm_limit = IntegerField(null=True)  # requests per minute
    gateway_tpm_limit = IntegerField(null=True)  # tokens per minute
    # Raw usage events and gateway request rows older than this many days are
    # pruned (services/ops/retention.py); None keeps them. Rollups are kept forever.
    usage_event_retention_days = IntegerField(null=True)
    # Members see every person's spend and export events with every user's
    # email (services/team/visibility.py); off: department totals and their own.
    members_see_everyone = BooleanField(default=False)
    # Set by a platform admin: members see a notice, ingest and gateway answer
    # 403; nothing is deleted. delete_after: deletion requested, done by the
    # daily purge once this passes (unless cancelled).
    suspended_at = DateTimeField(null=True)
    suspended_reason = TextField(default="")
    delete_after = DateTimeField(null=True)
    # Feature flags a platform admin set for this organization, over its plan's:
    # {"sso": true, ...} (services/platform/settings.py names the flags).
    feature_overrides = JSONField(default=dict)
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)


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


def caseless(text: str) -> str:
    """The key under which two names are the same name: Unicode canonical
    caseless matching (NFD, casefold; stored as NFC), so "Émile", "ÉMILE" and
    "E\u0301mile" share one key. Computed in Python, the same on both
    databases (SQLite's LOWER() folds ASCII only; PostgreSQL's follows the
    database's locale). At most 3 characters per character of `text`."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold())


class Department(TenantModel):
    name = CharField(max_length=120)
    name_key = CharField(max_length=360)  # caseless(name), set by save(): names are unique ignoring case
    parent = ForeignKeyField("self", null=True, backref="children", on_delete="SET NULL")
    code = CharField(max_length=32, null=True)  # cost-centre code; NULL when unset, so only set codes are unique
    code_key = CharField(max_length=96, null=True)  # caseless(code), set by save()
    manager = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="managed_departments")
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "name"), True), (("organization", "code"), True),
                   (("organization", "name_key"), True), (("organization", "code_key"), True))

    def save(self, force_insert=False, only=None):
        self.name_key = caseless(self.name) if self.name is not None else None
        self.code_key = caseless(self.code) if self.code else None
        if only is not None:  # a partial save writes the keys with their fields
            names = {f if isinstance(f, str) else f.name for f in only}
            only = list(only) + [key for field, key in (("name", "name_key"), ("code", "code_key"))
                                 if field in names and key not in names]
        return super().save(force_insert=force_insert, only=only)


class Membership(TenantModel):
    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    role = CharField(max_length=16)
    department = ForeignKeyField(Department, null=True, backref="memberships", on_delete="SET NULL")
    created_at = DateTimeField(default=clock.now)

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

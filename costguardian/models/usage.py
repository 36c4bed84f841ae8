"""Usage: append-only events, hourly rollups (and per-tag rollups), prices
an organization sets itself and the names it gives its models."""
from __future__ import annotations

from peewee import (BigIntegerField, BooleanField, CharField, CompositeKey, DateField, DateTimeField,
                    ForeignKeyField, IntegerField, JSONField)

from costguardian import clock
from costguardian.models.base import BaseModel
from costguardian.models.keys import ApiKey
from costguardian.models.org import Department, Organization, TenantModel

# Rollup dimensions use these instead of NULL, so that the unique key (and
# INSERT … ON CONFLICT) works the same on SQLite and PostgreSQL.
NO_KEY = 0
NO_DEPARTMENT = 0
NO_USER = ""


class UsageEvent(TenantModel):
    """One priced call. Never updated, except its cost when prices change."""

    event_id = CharField(max_length=128)
    occurred_at = DateTimeField()
    received_at = DateTimeField(default=clock.now)
    provider = CharField(max_length=64)
    model = CharField(max_length=128)  # normalised: the same model is one name everywhere
    model_raw = CharField(max_length=200)  # as sent
    # No ON DELETE action: a key or department with usage history is never
    # deleted from under its events (keys are revoked; departments are merged),
    # so events and rollups keep agreeing on who spent what.
    api_key = ForeignKeyField(ApiKey, null=True)
    user_ref = CharField(max_length=200, default=NO_USER)  # a member's email or the sender's end-user id
    department = ForeignKeyField(Department, null=True)
    input_tokens = BigIntegerField(default=0)  # every prompt token, cached ones included
    cache_read_tokens = BigIntegerField(default=0)
    cache_write_tokens = BigIntegerField(default=0)
    output_tokens = BigIntegerField(default=0)
    batch = BooleanField(default=False)
    service_tier = CharField(max_length=16, default="")
    cost_nanos = BigIntegerField(null=True)  # None: no known price (never silently $0)
    priced_by = CharField(max_length=16, default="")  # catalog, override, or "" when unpriced
    tags = JSONField(default=list)
    # The vault credential (ProviderCredential) that served a gateway call;
    # None for ingest API events. No foreign key: deleting a credential must
    # not touch the events it served (GatewayRequest keeps its id the same way).
    credential_id = IntegerField(null=True)

    class Meta:
        indexes = (
            (("organization", "event_id"), True),
            (("organization", "occurred_at"), False),
            (("organization", "provider", "model", "occurred_at"), False),
        )


class RollupBase(BaseModel):
    """The columns every rollup shares: the organization, the attribution
    dimensions and the summed measures (no table of its own). Hourly rollups
    add their bucket's start (`hour`), daily ones the local date (`day`)."""

    organization = ForeignKeyField(Organization, on_delete="CASCADE", index=False)  # the key starts with it
    provider = CharField(max_length=64)
    model = CharField(max_length=128)
    api_key_id = IntegerField(default=NO_KEY)
    user_ref = CharField(max_length=200, default=NO_USER)
    department_id = IntegerField(default=NO_DEPARTMENT)
    requests = BigIntegerField(default=0)
    input_tokens = BigIntegerField(default=0)
    cache_read_tokens = BigIntegerField(default=0)
    cache_write_tokens = BigIntegerField(default=0)
    output_tokens = BigIntegerField(default=0)
    cost_nanos = BigIntegerField(default=0)  # of the priced requests
    unpriced_requests = BigIntegerField(default=0)

    DIMENSIONS = ("provider", "model", "api_key_id", "user_ref", "department_id")
    MEASURES = ("requests", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens",
                "cost_nanos", "unpriced_requests")


class UsageRollup(RollupBase):
    """Sums per UTC hour and dimension combination; dashboards read these."""

    hour = DateTimeField()  # the bucket's start, naive UTC (services/usage/rollups.py bucket_start)

    KEY = ("hour",) + RollupBase.DIMENSIONS  # with organization: the unique key

    class Meta:
        # The key is the primary key; on SQLite the migration also makes the
        # table WITHOUT ROWID, so rows are stored in key order and a time-range
        # scan reads them in sequence (4x faster dashboards at 1M events).
        primary_key = CompositeKey("organization", "hour", "provider", "model", "api_key_id", "user_ref",
                                   "department_id")


# The unpriced-models panel reads only the few rows with unknown cost.
UsageRollup.add_index(UsageRollup.index(UsageRollup.organization, UsageRollup.provider, UsageRollup.model,
                                        where=(UsageRollup.unpriced_requests > 0), name="usage_rollup_unpriced"))


class UsageTagRollup(RollupBase):
    """The same sums per tag, for filtering and grouping by tag."""

    hour = DateTimeField()
    tag = CharField(max_length=100)

    DIMENSIONS = ("tag",) + RollupBase.DIMENSIONS
    KEY = ("tag", "hour") + RollupBase.DIMENSIONS

    class Meta:
        primary_key = CompositeKey("organization", "tag", "hour", "provider", "model", "api_key_id", "user_ref",
                                   "department_id")


class UsageDayRollup(RollupBase):
    """The hourly rollups summed per local day of the organization's zone: the
    row of day D holds every hourly row whose bucket starts on D there. Kept
    in the same transaction as the hourly rows (services/usage/days.py), so
    long ranges read a 24th of the rows. Valid while
    Organization.day_rollup_zone is the organization's zone and
    day_rollups_until is None (complete)."""

    day = DateField()

    KEY = ("day",) + RollupBase.DIMENSIONS
    HOURLY = UsageRollup

    class Meta:
        primary_key = CompositeKey("organization", "day", "provider", "model", "api_key_id", "user_ref",
                                   "department_id")


class UsageDayTagRollup(RollupBase):
    """The per-tag rollups summed per local day, like UsageDayRollup."""

    day = DateField()
    tag = CharField(max_length=100)

    DIMENSIONS = ("tag",) + RollupBase.DIMENSIONS
    KEY = ("tag", "day") + RollupBase.DIMENSIONS
    HOURLY = UsageTagRollup

    class Meta:
        primary_key = CompositeKey("organization", "tag", "day", "provider", "model", "api_key_id", "user_ref",
                                   "department_id")


UsageRollup.DAILY = UsageDayRollup
UsageTagRollup.DAILY = UsageDayTagRollup


class UsageDimension(BaseModel):
    """Every provider, model, user and tag an organization's usage has carried,
    kept by ingest: the explorer's filter choices without scanning rollups."""

    organization = ForeignKeyField(Organization, on_delete="CASCADE", index=False)
    dimension = CharField(max_length=16)  # provider, model, user, tag
    value = CharField(max_length=200)
    last_hour = DateTimeField()

    class Meta:
        primary_key = CompositeKey("organization", "dimension", "value")


class PriceOverride(TenantModel):
    """An organization's own price for a model from a date on (negotiated
    discounts, fine-tuned or self-hosted models, providers the catalog lacks).
    Prices are nano-dollars per million tokens, so any price with up to 15
    decimal places per token is exact."""

    provider = CharField(max_length=64)
    model = CharField(max_length=128)
    effective_from = DateTimeField()
    input_nanos_per_mtok = BigIntegerField()
    cache_read_nanos_per_mtok = BigIntegerField(null=True)  # None: cached input costs the input price
    cache_write_nanos_per_mtok = BigIntegerField(null=True)
    output_nanos_per_mtok = BigIntegerField()
    note = CharField(max_length=200, default="")
    created_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "provider", "model", "effective_from"), True),)


class ModelAlias(TenantModel):
    """A name an organization uses for a model, e.g. an Azure deployment
    "prod-gpt4o" that is really gpt-4o."""

    provider = CharField(max_length=64)
    alias = CharField(max_length=200)
    model = CharField(max_length=128)
    created_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "provider", "alias"), True),)


class RollupMove(TenantModel):
    """A pending move of an organization's rollups to a new bucket alignment
    (services/usage/realign.py): the events with id up to `last_id` go from
    buckets under `old` to buckets under `new`; `after_id` is how far the
    move got, written in the same transaction as each moved batch, so a lost
    or repeated task resumes exactly where the last committed batch ended.
    The row is deleted when the move is done."""

    old = IntegerField()
    new = IntegerField()
    last_id = BigIntegerField()
    after_id = BigIntegerField(default=0)
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)

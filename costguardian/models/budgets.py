"""Budgets: a limit on a scope of spend per calendar period, their spend
counters (kept by ingest), temporary raises, and the alerts they raised."""
from __future__ import annotations

from peewee import (BigIntegerField, BooleanField, CharField, CompositeKey, DateField, DateTimeField,
                    ForeignKeyField, IntegerField, TextField)

from costguardian import clock
from costguardian.models.base import BaseModel
from costguardian.models.keys import ApiKey
from costguardian.models.org import Department, TenantModel
from costguardian.models.user import User


class Budget(TenantModel):
    name = CharField(max_length=120)
    amount_nanos = BigIntegerField()  # the limit per period, in nano-dollars
    period = CharField(max_length=16)  # daily, weekly, monthly, quarterly, yearly, custom
    custom_start = DateField(null=True)  # custom periods: local dates, both inclusive
    custom_end = DateField(null=True)
    thresholds = CharField(max_length=200, default="50,80,100")  # percents, ascending
    enforcement = CharField(max_length=8, default="soft")  # soft: alert only; hard: the gateway blocks
    notify_resolved = BooleanField(default=False)
    notify_roles = CharField(max_length=100, default="owner,admin")  # who hears the alerts, besides the owner
    owner = ForeignKeyField(User, null=True, on_delete="SET NULL")  # the person responsible
    # The scope: every set field must match (none set: the whole organization).
    scope_department = ForeignKeyField(Department, null=True, on_delete="CASCADE")  # with its sub-departments
    scope_user = CharField(max_length=200, null=True)  # a usage user_ref (a member's email or an end-user id)
    scope_api_key = ForeignKeyField(ApiKey, null=True, on_delete="CASCADE")
    scope_provider = CharField(max_length=64, null=True)
    scope_model = CharField(max_length=128, null=True)
    scope_tag = CharField(max_length=100, null=True)
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)

    @property
    def threshold_list(self) -> list[int]:
        return sorted({int(t) for t in self.thresholds.split(",") if t.strip()})

    @property
    def role_list(self) -> list[str]:
        return [r for r in self.notify_roles.split(",") if r]


class BudgetSpend(BaseModel):
    """What a budget's scope spent in one period: kept by ingest in the same
    transaction as the events, so it always equals the sum of the events."""

    budget = ForeignKeyField(Budget, on_delete="CASCADE", index=False)  # the key starts with it
    period_start = DateTimeField()  # UTC instant of the local period start
    spend_nanos = BigIntegerField(default=0)
    requests = BigIntegerField(default=0)
    updated_at = DateTimeField(default=clock.now)
    # The latest forecast for the period end (kept by the periodic check, so
    # reading a budget's status never computes one).
    forecast_nanos = BigIntegerField(null=True)
    forecast_low_nanos = BigIntegerField(null=True)
    forecast_high_nanos = BigIntegerField(null=True)
    forecast_exceeds_on = DateField(null=True)  # local day the projection crosses 100%
    forecast_at = DateTimeField(null=True)

    class Meta:
        primary_key = CompositeKey("budget", "period_start")


class BudgetIncrease(TenantModel):
    """A raise for one period only (the rest of the current period)."""

    budget = ForeignKeyField(Budget, backref="increases", on_delete="CASCADE")
    period_start = DateTimeField()
    amount_nanos = BigIntegerField()
    reason = CharField(max_length=200, default="")
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("budget", "period_start"), False),)


class BudgetAlert(TenantModel):
    """An alert a budget raised. The unique key makes "once per (budget,
    period, kind, threshold)" hold even with concurrent ingest workers."""

    budget = ForeignKeyField(Budget, backref="alerts", on_delete="CASCADE")
    period_start = DateTimeField()
    # The period's first local day: the key, so an alert stays sent when a new
    # time zone moves the period's UTC start.
    period_day = DateField()
    kind = CharField(max_length=16)  # threshold, forecast, resolved, blocked (the gateway refused a call)
    threshold = IntegerField(default=0)  # percent (0 for a period's resolved/forecast marker)
    spend_nanos = BigIntegerField()
    limit_nanos = BigIntegerField()
    forecast_nanos = BigIntegerField(null=True)
    message = TextField(default="")
    event_id = CharField(max_length=32, default="")  # the notification's event id
    created_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("budget", "period_day", "kind", "threshold"), True),)


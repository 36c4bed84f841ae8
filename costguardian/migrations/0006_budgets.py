"""Budgets, their per-period spend counters (with the latest forecast), temporary raises and alerts."""
# Generated from a schema diff on 2026-11-26 09:56.
from peewee import *


def up(migrator, db):
    class ApiKey(Model):
        class Meta:
            database = db
            table_name = 'api_key'

    class Department(Model):
        class Meta:
            database = db
            table_name = 'department'

    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class User(Model):
        class Meta:
            database = db
            table_name = 'users'

    class Budget(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        name = CharField(max_length=120)
        amount_nanos = BigIntegerField()
        period = CharField(max_length=16)
        custom_start = DateField(null=True)
        custom_end = DateField(null=True)
        thresholds = CharField(max_length=200, default='50,80,100')
        enforcement = CharField(max_length=8, default='soft')
        notify_resolved = BooleanField(default=False)
        notify_roles = CharField(max_length=100, default='owner,admin')
        owner = ForeignKeyField(User, null=True, on_delete='SET NULL')
        scope_department = ForeignKeyField(Department, null=True, on_delete='CASCADE')
        scope_user = CharField(null=True, max_length=200)
        scope_api_key = ForeignKeyField(ApiKey, null=True, on_delete='CASCADE')
        scope_provider = CharField(null=True, max_length=64)
        scope_model = CharField(null=True, max_length=128)
        scope_tag = CharField(null=True, max_length=100)
        created_by = ForeignKeyField(User, null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'budget'
    db.create_tables([Budget])

    class BudgetAlert(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        budget = ForeignKeyField(Budget, on_delete='CASCADE')
        period_start = DateTimeField()
        period_day = DateField()
        kind = CharField(max_length=16)
        threshold = IntegerField(default=0)
        spend_nanos = BigIntegerField()
        limit_nanos = BigIntegerField()
        forecast_nanos = BigIntegerField(null=True)
        message = TextField(default='')
        event_id = CharField(max_length=32, default='')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'budget_alert'
            indexes = ((('budget', 'period_day', 'kind', 'threshold'), True),)
    db.create_tables([BudgetAlert])

    class BudgetIncrease(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        budget = ForeignKeyField(Budget, on_delete='CASCADE')
        period_start = DateTimeField()
        amount_nanos = BigIntegerField()
        reason = CharField(max_length=200, default='')
        created_by = ForeignKeyField(User, null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'budget_increase'
            indexes = ((('budget', 'period_start'), False),)
    db.create_tables([BudgetIncrease])

    class BudgetSpend(Model):
        budget = ForeignKeyField(Budget, on_delete='CASCADE', index=False)  # the primary key starts with it
        period_start = DateTimeField()
        spend_nanos = BigIntegerField(default=0)
        requests = BigIntegerField(default=0)
        updated_at = DateTimeField()
        forecast_nanos = BigIntegerField(null=True)
        forecast_low_nanos = BigIntegerField(null=True)
        forecast_high_nanos = BigIntegerField(null=True)
        forecast_exceeds_on = DateField(null=True)
        forecast_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'budget_spend'
            primary_key = CompositeKey('budget', 'period_start')
    db.create_tables([BudgetSpend])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('budget_spend'))
    migrator.migrate(migrator.drop_table('budget_increase'))
    migrator.migrate(migrator.drop_table('budget_alert'))
    migrator.migrate(migrator.drop_table('budget'))

"""Billing for Cost Guardian itself: plans, each organization's billing
account, applied Stripe events, invoices and meter reports. The default plans
are written on first use by services/billing/plans.py (one copy of them)."""
# Written by hand in the style of a schema diff, 2026-12-05.
from peewee import *


def up(migrator, db):
    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class Plan(Model):
        code = CharField(max_length=32, unique=True)
        name = CharField(max_length=60)
        position = IntegerField(default=0)
        is_free = BooleanField(default=False)
        is_active = BooleanField(default=True)
        monthly_nanos = BigIntegerField(default=0)
        yearly_nanos = BigIntegerField(default=0)
        stripe_monthly_price = CharField(max_length=64, null=True)
        stripe_yearly_price = CharField(max_length=64, null=True)
        seats_included = IntegerField(default=3)
        extra_seats = BooleanField(default=False)
        events_included = BigIntegerField(default=10000)
        overage = CharField(max_length=16, default='show')
        overage_nanos_per_1000 = BigIntegerField(default=0)
        stripe_metered_price = CharField(max_length=64, null=True)
        trial_days = IntegerField(default=0)
        retention_days = IntegerField(default=30)
        features = JSONField(default=dict)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'plan'

    class BillingAccount(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE', unique=True)
        stripe_customer_id = CharField(max_length=64, null=True, unique=True)
        plan = ForeignKeyField(Plan, field=Plan.id, null=True, on_delete='SET NULL')
        interval = CharField(max_length=8, default='month')
        stripe_subscription_id = CharField(max_length=64, null=True, unique=True)
        seat_item_id = CharField(max_length=64, null=True)
        metered_item_id = CharField(max_length=64, null=True)
        status = CharField(max_length=24, default='')
        seats = IntegerField(default=0)
        period_start = DateTimeField(null=True)
        period_end = DateTimeField(null=True)
        trial_end = DateTimeField(null=True)
        cancel_at_period_end = BooleanField(default=False)
        cancel_at = DateTimeField(null=True)
        ended_at = DateTimeField(null=True)
        past_due_since = DateTimeField(null=True)
        payment_method = CharField(max_length=80, default='')
        billing_email = CharField(max_length=254, default='')
        checkout_session_id = CharField(max_length=80, null=True)
        synced_at = DateTimeField(null=True)
        events_counted = BigIntegerField(default=0)
        events_counted_at = DateTimeField(null=True)
        events_warned = CharField(max_length=40, default='')
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'billing_account'

    class StripeEvent(Model):
        event_id = CharField(max_length=80, unique=True)
        type = CharField(max_length=80)
        organization = ForeignKeyField(Organization, field=Organization.id, null=True, on_delete='SET NULL')
        stripe_created = DateTimeField()
        received_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'stripe_event'

    class Invoice(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        stripe_invoice_id = CharField(max_length=80, unique=True)
        number = CharField(max_length=64, default='')
        status = CharField(max_length=24)
        billing_reason = CharField(max_length=40, default='')
        currency = CharField(max_length=3, default='usd')
        total_nanos = BigIntegerField(default=0)
        amount_due_nanos = BigIntegerField(default=0)
        amount_paid_nanos = BigIntegerField(default=0)
        amount_remaining_nanos = BigIntegerField(default=0)
        issued_at = DateTimeField()
        period_start = DateTimeField(null=True)
        period_end = DateTimeField(null=True)
        hosted_invoice_url = TextField(default='')
        invoice_pdf = TextField(default='')
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'invoice'
            indexes = ((('organization', 'issued_at'), False),)

    class MeterReport(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        day = DateField()
        revision = IntegerField(default=0)
        identifier = CharField(max_length=80, unique=True)
        value = BigIntegerField()
        status = CharField(max_length=16, default='pending')
        attempts = IntegerField(default=0)
        last_error = TextField(default='')
        sent_at = DateTimeField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'meter_report'
            indexes = ((('organization', 'day', 'revision'), True), (('status',), False))

    db.create_tables([Plan, BillingAccount, StripeEvent, Invoice, MeterReport])


def down(migrator, db):
    for table in ('meter_report', 'invoice', 'stripe_event', 'billing_account', 'plan'):
        migrator.migrate(migrator.drop_table(table))

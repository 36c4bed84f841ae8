"""The gateway's budget reservations: money held against hard budgets while calls are in flight."""
# Generated from a schema diff on 2026-12-04 21:59.
from peewee import *


def up(migrator, db):
    class Budget(Model):
        class Meta:
            database = db
            table_name = 'budget'

    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class GatewayReservation(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        budget = ForeignKeyField(Budget, on_delete='CASCADE', index=False)
        period_start = DateTimeField()
        amount_nanos = BigIntegerField()
        admission = BigIntegerField(index=True, null=True)
        created_at = DateTimeField()
        expires_at = DateTimeField(index=True)
        class Meta:
            database = db
            table_name = 'gateway_reservation'
            indexes = ((('budget', 'period_start', 'expires_at'), False),)
    db.create_tables([GatewayReservation])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('gateway_reservation'))

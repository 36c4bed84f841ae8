"""Provider usage sync: admin credentials, provider-reported usage and cost
buckets, and the provider keys an organization knows as its own."""
# Written by hand in the style of a schema diff, 2026-12-05.
from peewee import *


def up(migrator, db):
    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class User(Model):
        class Meta:
            database = db
            table_name = 'users'

    class ProviderSyncConnection(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        provider = CharField(max_length=32)
        secret_encrypted = TextField()
        secret_last4 = CharField(max_length=4, default='')
        cursors = TextField(default='{}')
        backfill_from = DateTimeField()
        tolerance_bp = IntegerField(default=100)
        shadow_alert_nanos = BigIntegerField(default=10 * 10**9)
        last_sync_at = DateTimeField(null=True)
        last_error = TextField(default='')
        checked_at = DateTimeField(null=True)
        created_by = ForeignKeyField(User, field=User.id, null=True, on_delete='SET NULL', backref='+')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'provider_sync_connection'
            indexes = ((('organization', 'provider'), True),)

    class ProviderUsageBucket(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        provider = CharField(max_length=32)
        source = CharField(max_length=32)
        hour = DateTimeField()
        model = CharField(max_length=128)
        model_raw = CharField(max_length=200, default='')
        key_id = CharField(max_length=128, default='')
        project_id = CharField(max_length=128, default='')
        tier = CharField(max_length=32, default='')
        requests = BigIntegerField(default=0)
        input_tokens = BigIntegerField(default=0)
        cache_read_tokens = BigIntegerField(default=0)
        cache_write_tokens = BigIntegerField(default=0)
        output_tokens = BigIntegerField(default=0)
        pulled_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'provider_usage_bucket'
            indexes = ((('organization', 'provider', 'source', 'hour', 'model', 'key_id', 'project_id', 'tier'),
                        True),)

    class ProviderCostBucket(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        provider = CharField(max_length=32)
        day = DateField()
        line_item = CharField(max_length=200, default='')
        model = CharField(max_length=128, default='')
        project_id = CharField(max_length=128, default='')
        amount_nanos = BigIntegerField(default=0)
        pulled_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'provider_cost_bucket'
            indexes = ((('organization', 'provider', 'day', 'line_item', 'project_id'), True),)

    class KnownProviderKey(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        provider = CharField(max_length=32)
        key_id = CharField(max_length=128)
        label = CharField(max_length=80, default='')
        created_by = ForeignKeyField(User, field=User.id, null=True, on_delete='SET NULL', backref='+')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'known_provider_key'
            indexes = ((('organization', 'provider', 'key_id'), True),)

    db.create_tables([ProviderSyncConnection, ProviderUsageBucket, ProviderCostBucket, KnownProviderKey])


def down(migrator, db):
    for table in ('known_provider_key', 'provider_cost_bucket', 'provider_usage_bucket', 'provider_sync_connection'):
        migrator.migrate(migrator.drop_table(table))

"""API keys, usage events, hourly and per-tag rollups, price overrides, model aliases."""
# Generated from a schema diff on 2026-11-26 06:46.
from peewee import *


def up(migrator, db):
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

    class ApiKey(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        name = CharField(max_length=80)
        env = CharField(max_length=8, default='live')
        prefix = CharField(unique=True, max_length=16)
        secret_hash = CharField(max_length=64)
        previous_secret_hash = CharField(null=True, max_length=64)
        previous_valid_until = DateTimeField(null=True)
        scopes = CharField(max_length=64)
        user = ForeignKeyField(User, null=True, on_delete='SET NULL')
        department = ForeignKeyField(Department, null=True, on_delete='SET NULL')
        created_by = ForeignKeyField(User, null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        expires_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)
        rotated_at = DateTimeField(null=True)
        last_used_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'api_key'
    db.create_tables([ApiKey])

    class ModelAlias(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        provider = CharField(max_length=64)
        alias = CharField(max_length=200)
        model = CharField(max_length=128)
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'model_alias'
            indexes = ((('organization', 'provider', 'alias'), True),)
    db.create_tables([ModelAlias])

    class PriceOverride(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        provider = CharField(max_length=64)
        model = CharField(max_length=128)
        effective_from = DateTimeField()
        input_nanos_per_mtok = BigIntegerField()
        cache_read_nanos_per_mtok = BigIntegerField(null=True)
        cache_write_nanos_per_mtok = BigIntegerField(null=True)
        output_nanos_per_mtok = BigIntegerField()
        note = CharField(max_length=200, default='')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'price_override'
            indexes = ((('organization', 'provider', 'model', 'effective_from'), True),)
    db.create_tables([PriceOverride])

    class UsageEvent(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        event_id = CharField(max_length=128)
        occurred_at = DateTimeField()
        received_at = DateTimeField()
        provider = CharField(max_length=64)
        model = CharField(max_length=128)
        model_raw = CharField(max_length=200)
        api_key = ForeignKeyField(ApiKey, null=True)
        user_ref = CharField(max_length=200, default='')
        department = ForeignKeyField(Department, null=True)
        input_tokens = BigIntegerField(default=0)
        cache_read_tokens = BigIntegerField(default=0)
        cache_write_tokens = BigIntegerField(default=0)
        output_tokens = BigIntegerField(default=0)
        batch = BooleanField(default=False)
        service_tier = CharField(max_length=16, default='')
        cost_nanos = BigIntegerField(null=True)
        priced_by = CharField(max_length=16, default='')
        tags = JSONField(default=list)
        class Meta:
            database = db
            table_name = 'usage_event'
            indexes = ((('organization', 'event_id'), True), (('organization', 'occurred_at'), False), (('organization', 'provider', 'model', 'occurred_at'), False))
    db.create_tables([UsageEvent])

    class UsageRollup(Model):
        organization = ForeignKeyField(Organization, on_delete='CASCADE', index=False)
        hour = DateTimeField()
        provider = CharField(max_length=64)
        model = CharField(max_length=128)
        api_key_id = IntegerField(default=0)
        user_ref = CharField(max_length=200, default='')
        department_id = IntegerField(default=0)
        requests = BigIntegerField(default=0)
        input_tokens = BigIntegerField(default=0)
        cache_read_tokens = BigIntegerField(default=0)
        cache_write_tokens = BigIntegerField(default=0)
        output_tokens = BigIntegerField(default=0)
        cost_nanos = BigIntegerField(default=0)
        unpriced_requests = BigIntegerField(default=0)
        class Meta:
            database = db
            table_name = 'usage_rollup'
            primary_key = CompositeKey('organization', 'hour', 'provider', 'model', 'api_key_id', 'user_ref',
                                       'department_id')
            without_rowid = isinstance(db, SqliteDatabase)  # rows stored in key order: range scans read them in sequence
    UsageRollup.add_index(UsageRollup.index(UsageRollup.organization, UsageRollup.provider, UsageRollup.model,
                                            where=(UsageRollup.unpriced_requests > 0), name='usage_rollup_unpriced'))
    db.create_tables([UsageRollup])

    class UsageTagRollup(Model):
        organization = ForeignKeyField(Organization, on_delete='CASCADE', index=False)
        hour = DateTimeField()
        tag = CharField(max_length=100)
        provider = CharField(max_length=64)
        model = CharField(max_length=128)
        api_key_id = IntegerField(default=0)
        user_ref = CharField(max_length=200, default='')
        department_id = IntegerField(default=0)
        requests = BigIntegerField(default=0)
        input_tokens = BigIntegerField(default=0)
        cache_read_tokens = BigIntegerField(default=0)
        cache_write_tokens = BigIntegerField(default=0)
        output_tokens = BigIntegerField(default=0)
        cost_nanos = BigIntegerField(default=0)
        unpriced_requests = BigIntegerField(default=0)
        class Meta:
            database = db
            table_name = 'usage_tag_rollup'
            primary_key = CompositeKey('organization', 'tag', 'hour', 'provider', 'model', 'api_key_id', 'user_ref',
                                       'department_id')
            without_rowid = isinstance(db, SqliteDatabase)
    db.create_tables([UsageTagRollup])

    class UsageDimension(Model):
        organization = ForeignKeyField(Organization, on_delete='CASCADE', index=False)
        dimension = CharField(max_length=16)
        value = CharField(max_length=200)
        last_hour = DateTimeField()
        class Meta:
            database = db
            table_name = 'usage_dimension'
            primary_key = CompositeKey('organization', 'dimension', 'value')
            without_rowid = isinstance(db, SqliteDatabase)
    db.create_tables([UsageDimension])

    if isinstance(db, PostgresqlDatabase):
        # PostgreSQL keeps rows in arrival order; a primary key that carries the
        # measures (INCLUDE) lets dashboard queries read the index alone.
        measures = ('requests, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, cost_nanos, '
                    'unpriced_requests')
        for table, key in (('usage_rollup', 'organization_id, hour'),
                           ('usage_tag_rollup', 'organization_id, tag, hour')):
            db.execute_sql(f'ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, ADD CONSTRAINT {table}_pkey '
                           f'PRIMARY KEY ({key}, provider, model, api_key_id, user_ref, department_id) '
                           f'INCLUDE ({measures})')


def down(migrator, db):
    migrator.migrate(migrator.drop_table('usage_dimension'))
    migrator.migrate(migrator.drop_table('usage_tag_rollup'))
    migrator.migrate(migrator.drop_table('usage_rollup'))
    migrator.migrate(migrator.drop_table('usage_event'))
    migrator.migrate(migrator.drop_table('price_override'))
    migrator.migrate(migrator.drop_table('model_alias'))
    migrator.migrate(migrator.drop_table('api_key'))

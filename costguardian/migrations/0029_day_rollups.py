"""Daily rollups: the hourly (and per-tag) rollups summed per local day of the
organization's zone (services/usage/days.py), so ranges of weeks and months
read a 24th of the rows. The organization notes the zone they were summed in
and how far they are built; existing organizations start with none, and the
hourly `build_day_rollups` task builds them from their hourly rollups (until
then, pages read the hourly rollups as before)."""
# Written by hand in the style of a schema diff, 2026-12-06.
from peewee import *


def up(migrator, db):
    migrator.migrate(
        migrator.add_column('organization', 'day_rollup_zone', CharField(max_length=64, null=True)),
        migrator.add_column('organization', 'day_rollups_until', DateField(null=True)),
    )

    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class UsageDayRollup(Model):
        organization = ForeignKeyField(Organization, on_delete='CASCADE', index=False)
        day = DateField()
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
            table_name = 'usage_day_rollup'
            primary_key = CompositeKey('organization', 'day', 'provider', 'model', 'api_key_id', 'user_ref',
                                       'department_id')
            without_rowid = isinstance(db, SqliteDatabase)  # rows stored in key order, like the hourly ones

    class UsageDayTagRollup(Model):
        organization = ForeignKeyField(Organization, on_delete='CASCADE', index=False)
        day = DateField()
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
            table_name = 'usage_day_tag_rollup'
            primary_key = CompositeKey('organization', 'tag', 'day', 'provider', 'model', 'api_key_id', 'user_ref',
                                       'department_id')
            without_rowid = isinstance(db, SqliteDatabase)

    db.create_tables([UsageDayRollup, UsageDayTagRollup])

    if isinstance(db, PostgresqlDatabase):
        # As 0002 did for the hourly rollups: the key carries the measures, so
        # the pages' sums read the index alone.
        measures_list = ('requests, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, cost_nanos, '
                         'unpriced_requests')
        for table, key in (('usage_day_rollup', 'organization_id, day'),
                           ('usage_day_tag_rollup', 'organization_id, tag, day')):
            db.execute_sql(f'ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, ADD CONSTRAINT {table}_pkey '
                           f'PRIMARY KEY ({key}, provider, model, api_key_id, user_ref, department_id) '
                           f'INCLUDE ({measures_list})')


def down(migrator, db):
    migrator.migrate(migrator.drop_table('usage_day_tag_rollup'))
    migrator.migrate(migrator.drop_table('usage_day_rollup'))
    migrator.migrate(migrator.drop_column('organization', 'day_rollups_until'))
    migrator.migrate(migrator.drop_column('organization', 'day_rollup_zone'))

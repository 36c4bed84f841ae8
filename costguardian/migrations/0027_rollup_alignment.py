"""Where an organization's hourly rollup buckets start: minutes past the UTC
hour (services/usage/rollups.py), 30 for Asia/Kolkata, 45 for Asia/Kathmandu.
Existing organizations keep 0, which is how their rollups were written; a
change of time zone re-aligns them (services/usage/realign.py), each move
kept in `rollup_move` until it is done so that it resumes after a lost task."""
# Written by hand in the style of a schema diff, 2026-12-06.
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column('organization', 'rollup_offset_minutes', IntegerField(default=0)))

    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class RollupMove(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        old = IntegerField()
        new = IntegerField()
        last_id = BigIntegerField()
        after_id = BigIntegerField(default=0)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'rollup_move'

    db.create_tables([RollupMove])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('rollup_move'))
    migrator.migrate(migrator.drop_column('organization', 'rollup_offset_minutes'))

"""Per-organization retention of raw usage events and gateway request rows
(services/ops/retention.py): None keeps them forever; rollups are always kept."""
# Written by hand in the style of a schema diff, 2026-12-05.
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column('organization', 'usage_event_retention_days', IntegerField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('organization', 'usage_event_retention_days'))

"""The activity feed filters by action: an index on (organization, action, id)."""
# Generated from a schema diff on 2026-11-26 10:57.
from peewee import *

def up(migrator, db):
    migrator.migrate(migrator.add_index('audit_log', ('organization_id', 'action', 'id')))


def down(migrator, db):
    migrator.migrate(migrator.drop_index('audit_log', 'audit_log_organization_id_action_id'))

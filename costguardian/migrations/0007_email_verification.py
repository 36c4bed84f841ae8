"""Users: when they proved they read their mailbox (domain join needs it)."""
# Generated from a schema diff on 2026-11-26 10:05; other changes of the diff stripped.
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column('users', 'email_verified_at', DateTimeField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('users', 'email_verified_at'))

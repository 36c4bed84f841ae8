"""Domain join: who joined an organization once by email domain (a later removal sticks)."""
# Generated from a schema diff on 2026-11-26 10:25; other changes of the diff stripped (none here).
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

    class DomainJoin(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        user = ForeignKeyField(User, on_delete='CASCADE')
        joined_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'domain_join'
            indexes = ((('organization', 'user'), True),)
    db.create_tables([DomainJoin])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('domain_join'))

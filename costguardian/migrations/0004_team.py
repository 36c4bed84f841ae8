"""Invitations, domain join and members' last-seen time."""
# Generated from a schema diff on 2026-11-26 09:40.
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

    class Invitation(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        email = CharField(max_length=254)
        role = CharField(max_length=16)
        department = ForeignKeyField(Department, null=True, on_delete='SET NULL')
        token_hash = CharField(unique=True, max_length=64)
        invited_by = ForeignKeyField(User, null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        sent_at = DateTimeField()
        expires_at = DateTimeField()
        accepted_at = DateTimeField(null=True)
        accepted_by = ForeignKeyField(User, null=True, on_delete='SET NULL')
        revoked_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'invitation'
            indexes = ((('organization', 'email'), False),)
    db.create_tables([Invitation])

    migrator.migrate(migrator.add_column('users', 'last_seen_at', DateTimeField(null=True)))
    migrator.migrate(migrator.add_column('organization', 'join_domain', CharField(null=True, max_length=253)))
    migrator.migrate(migrator.add_column('organization', 'join_domain_verified_at', DateTimeField(null=True)))
    migrator.migrate(migrator.add_column('organization', 'join_domain_role', CharField(null=True, max_length=16)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('organization', 'join_domain_role'))
    migrator.migrate(migrator.drop_column('organization', 'join_domain_verified_at'))
    migrator.migrate(migrator.drop_column('organization', 'join_domain'))
    migrator.migrate(migrator.drop_column('users', 'last_seen_at'))
    migrator.migrate(migrator.drop_table('invitation'))

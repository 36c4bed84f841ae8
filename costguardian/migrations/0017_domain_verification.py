"""Domain verification by DNS TXT record: one row per organization and domain."""
# Written by hand in the style of a schema diff, 2026-12-05.
from peewee import *


def up(migrator, db):
    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class DomainVerification(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        domain = CharField(max_length=253)
        token = CharField(max_length=64)
        created_at = DateTimeField()
        verified_at = DateTimeField(null=True)
        last_checked_at = DateTimeField(null=True)
        last_error = TextField(default='')
        class Meta:
            database = db
            table_name = 'domain_verification'
            indexes = ((('organization', 'domain'), True), (('domain',), False))

    db.create_tables([DomainVerification])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('domain_verification'))

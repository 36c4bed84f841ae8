"""The gateway's vault: organizations' AI provider keys, encrypted, one default per provider."""
# Generated from a schema diff on 2026-12-04 21:22.
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

    class ProviderCredential(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        provider = CharField(max_length=32)
        label = CharField(max_length=80)
        secret_encrypted = TextField()
        secret_last4 = CharField(max_length=4, default='')
        base_url = CharField(max_length=2000, default='')
        api_version = CharField(max_length=32, default='')
        deployments = TextField(default='{}')
        allowed_models = TextField(default='')
        available_models = TextField(default='')
        default_for = CharField(null=True, max_length=32)
        is_enabled = BooleanField(default=True)
        checked_at = DateTimeField(null=True)
        created_by = ForeignKeyField(User, null=True, on_delete='SET NULL', backref='+')
        updated_by = ForeignKeyField(User, null=True, on_delete='SET NULL', backref='+')
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'provider_credential'
            indexes = ((('organization', 'provider'), False), (('organization', 'default_for'), True))
    db.create_tables([ProviderCredential])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('provider_credential'))

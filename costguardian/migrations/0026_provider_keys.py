"""Provider keys as the providers list them (OpenAI's project API keys,
Anthropic's API keys: id, name, redacted hint, project/workspace, status),
pulled on every usage sync, and the vault credentials matched to them by
that hint (services/provider_sync/key_match.py)."""
# Written by hand in the style of a schema diff, 2026-12-05.
from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField, Model


def up(migrator, db):
    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class ProviderKey(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        provider = CharField(max_length=32)
        key_id = CharField(max_length=128)
        name = CharField(max_length=200, default='')
        hint = CharField(max_length=64, default='')
        project_id = CharField(max_length=128, default='')
        status = CharField(max_length=32, default='')
        seen_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'provider_key'
            indexes = ((('organization', 'provider', 'key_id'), True),)

    class ProviderKeyMatch(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        provider = CharField(max_length=32)
        credential_id = IntegerField()
        key_id = CharField(max_length=128)
        matched_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'provider_key_match'
            indexes = ((('organization', 'credential_id'), True),)

    db.create_tables([ProviderKey, ProviderKeyMatch])


def down(migrator, db):
    for table in ('provider_key_match', 'provider_key'):
        migrator.migrate(migrator.drop_table(table))

"""Gateway request logging: the organization's switch and retention, and the
bodies of the calls made while it is on; an index for a key's calls by outcome
(the key page)."""
# Written by hand in the style of a schema diff, 2026-12-05.
from peewee import *


def up(migrator, db):
    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class GatewayRequestBody(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        request_id = CharField(max_length=40)
        created_at = DateTimeField()
        request_body = TextField(default='')
        request_bytes = IntegerField(default=0)
        request_truncated = BooleanField(default=False)
        answer_body = TextField(default='')
        answer_bytes = IntegerField(default=0)
        answer_truncated = BooleanField(default=False)
        class Meta:
            database = db
            table_name = 'gateway_request_body'
            indexes = ((('organization', 'request_id'), True), (('organization', 'created_at'), False))

    migrator.migrate(migrator.add_column('organization', 'request_logging', BooleanField(default=False)))
    migrator.migrate(migrator.add_column('organization', 'request_log_days', IntegerField(default=7)))
    db.create_tables([GatewayRequestBody])
    migrator.migrate(migrator.add_index('gateway_request', ('organization_id', 'api_key_id', 'started_at', 'outcome')))


def down(migrator, db):
    migrator.migrate(migrator.drop_index('gateway_request',
                                         'gateway_request_organization_id_api_key_id_started_at_outcome'))
    migrator.migrate(migrator.drop_table('gateway_request_body'))
    migrator.migrate(migrator.drop_column('organization', 'request_log_days'))
    migrator.migrate(migrator.drop_column('organization', 'request_logging'))

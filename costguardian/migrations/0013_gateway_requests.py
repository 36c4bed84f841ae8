"""The gateway's request log: latency, time to first token, status and streamed flag per call."""
# Generated from a schema diff on 2026-12-04 22:03.
from peewee import *

def up(migrator, db):
    class ApiKey(Model):
        class Meta:
            database = db
            table_name = 'api_key'

    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class GatewayRequest(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        request_id = CharField(unique=True, max_length=40)
        api_key = ForeignKeyField(ApiKey, null=True)
        endpoint = CharField(max_length=32)
        provider = CharField(max_length=64, default='')
        model = CharField(max_length=200, default='')
        credential_id = IntegerField(null=True)
        started_at = DateTimeField()
        status_code = IntegerField()
        outcome = CharField(max_length=16)
        error = CharField(max_length=300, default='')
        streamed = BooleanField(default=False)
        forwarded = BooleanField(default=False)
        usage_estimated = BooleanField(default=False)
        latency_ms = IntegerField(default=0)
        ttft_ms = IntegerField(null=True)
        class Meta:
            database = db
            table_name = 'gateway_request'
            indexes = ((('organization', 'started_at'), False),)
    db.create_tables([GatewayRequest])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('gateway_request'))

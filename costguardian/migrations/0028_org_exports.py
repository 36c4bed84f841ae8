"""An owner's export of the whole organization, built by a background task
(services/ops/org_export.py): the job, its progress and its archive's name."""
# Written by hand in the style of a schema diff, 2026-12-06.
from peewee import BigIntegerField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model, TextField


def up(migrator, db):
    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class User(Model):
        class Meta:
            database = db
            table_name = 'users'

    class OrgExport(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        requested_by = ForeignKeyField(User, field=User.id, null=True, on_delete='SET NULL')
        status = CharField(max_length=16, default='queued')
        running_slot = IntegerField(null=True, unique=True)
        current_table = CharField(max_length=64, default='')
        rows_done = BigIntegerField(default=0)
        file_name = CharField(max_length=200, default='')
        size_bytes = BigIntegerField(null=True)
        error = TextField(default='')
        created_at = DateTimeField()
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)
        expires_at = DateTimeField(null=True)
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'org_export'
            indexes = ((('organization', 'created_at'), False), (('status', 'expires_at'), False))

    db.create_tables([OrgExport])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('org_export'))

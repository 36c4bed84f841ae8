"""The platform console: platform roles (replacing is_superadmin), the
impersonator on audit rows, organization suspension / scheduled deletion /
feature overrides, and the console's own tables."""
# Written by hand in the style of a schema diff, 2026-12-05.
from peewee import *


def up(migrator, db):
    class Users(Model):
        class Meta:
            database = db
            table_name = 'users'

    migrator.migrate(
        migrator.add_column('users', 'platform_role', CharField(max_length=16, default='')),
        migrator.add_column('organization', 'suspended_at', DateTimeField(null=True)),
        migrator.add_column('organization', 'suspended_reason', TextField(default='')),
        migrator.add_column('organization', 'delete_after', DateTimeField(null=True)),
        migrator.add_column('organization', 'feature_overrides', JSONField(default='{}')),  # the migrator writes the default as is
        migrator.add_column('audit_log', 'impersonator_id',
                            ForeignKeyField(Users, field=Users.id, null=True, on_delete='SET NULL')),
        migrator.add_index('audit_log', ('impersonator_id', 'id'), False),
    )
    db.execute_sql("UPDATE users SET platform_role = 'superadmin' WHERE is_superadmin")
    migrator.migrate(migrator.drop_column('users', 'is_superadmin'))

    class UserSession(Model):
        user = ForeignKeyField(Users, field=Users.id, on_delete='CASCADE')
        key_hash = CharField(max_length=64, unique=True)
        created_at = DateTimeField()
        last_seen_at = DateTimeField()
        ip = CharField(max_length=45, default='')
        user_agent = TextField(default='')
        method = CharField(max_length=16, default='')
        ended_at = DateTimeField(null=True)
        ended_reason = CharField(max_length=32, default='')

        class Meta:
            database = db
            table_name = 'user_session'
            indexes = ((('user', 'ended_at'), False),)

    class Impersonation(Model):
        admin = ForeignKeyField(Users, field=Users.id, on_delete='CASCADE', backref='+')
        user = ForeignKeyField(Users, field=Users.id, on_delete='CASCADE', backref='+')
        reason = TextField()
        key_hash = CharField(max_length=64, unique=True)
        started_at = DateTimeField()
        expires_at = DateTimeField()
        ended_at = DateTimeField(null=True)
        ended_reason = CharField(max_length=32, default='')
        ip = CharField(max_length=45, default='')

        class Meta:
            database = db
            table_name = 'impersonation'
            indexes = ((('admin', 'ended_at'), False), (('user', 'started_at'), False))

    class PlatformSetting(Model):
        key = CharField(max_length=64, primary_key=True)
        value = JSONField()
        updated_at = DateTimeField()
        updated_by = ForeignKeyField(Users, field=Users.id, null=True, on_delete='SET NULL')

        class Meta:
            database = db
            table_name = 'platform_setting'

    class GlobalPriceOverride(Model):
        provider = CharField(max_length=64)
        model = CharField(max_length=128)
        effective_from = DateTimeField()
        input_nanos_per_mtok = BigIntegerField()
        cache_read_nanos_per_mtok = BigIntegerField(null=True)
        cache_write_nanos_per_mtok = BigIntegerField(null=True)
        output_nanos_per_mtok = BigIntegerField()
        note = CharField(max_length=200, default='')
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = 'global_price_override'
            indexes = ((('provider', 'model', 'effective_from'), True),)

    class ErrorCount(Model):
        minute = DateTimeField()
        route = CharField(max_length=128)
        status = IntegerField()
        count = IntegerField(default=0)
        last_error = TextField(default='')

        class Meta:
            database = db
            table_name = 'error_count'
            indexes = ((('minute', 'route', 'status'), True),)

    class TaskRun(Model):
        name = CharField(max_length=128, primary_key=True)
        last_started_at = DateTimeField(null=True)
        last_finished_at = DateTimeField(null=True)
        last_status = CharField(max_length=16, default='')
        last_error = TextField(default='')
        runs = BigIntegerField(default=0)
        failures = BigIntegerField(default=0)

        class Meta:
            database = db
            table_name = 'task_run'

    class PlatformToken(Model):
        user = ForeignKeyField(Users, field=Users.id, on_delete='CASCADE')
        name = CharField(max_length=100)
        prefix = CharField(max_length=16, unique=True)
        token_hash = CharField(max_length=64, unique=True)
        scopes = CharField(max_length=64)
        created_at = DateTimeField()
        last_used_at = DateTimeField(null=True)
        expires_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = 'platform_token'

    db.create_tables([UserSession, Impersonation, PlatformSetting, GlobalPriceOverride, ErrorCount, TaskRun,
                      PlatformToken])


def down(migrator, db):
    for table in ('platform_token', 'task_run', 'error_count', 'global_price_override', 'platform_setting',
                  'impersonation', 'user_session'):
        migrator.migrate(migrator.drop_table(table))
    migrator.migrate(migrator.add_column('users', 'is_superadmin', BooleanField(default=False)))
    db.execute_sql("UPDATE users SET is_superadmin = (platform_role = 'superadmin')")
    migrator.migrate(
        migrator.drop_column('users', 'platform_role'),
        migrator.drop_index('audit_log', 'auditlog_impersonator_id_id'),
        migrator.drop_column('audit_log', 'impersonator_id'),
        migrator.drop_column('organization', 'feature_overrides'),
        migrator.drop_column('organization', 'delete_after'),
        migrator.drop_column('organization', 'suspended_reason'),
        migrator.drop_column('organization', 'suspended_at'),
    )

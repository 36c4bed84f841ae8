"""Users, organizations, departments, memberships, audit log, outbox."""
# Generated from a schema diff on 2026-11-26 06:16.
from peewee import *


def up(migrator, db):
    class Organization(Model):
        name = CharField(max_length=120)
        slug = CharField(unique=True, max_length=63)
        time_zone = CharField(max_length=64, default='UTC')
        currency = CharField(max_length=3, default='USD')
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'organization'
    db.create_tables([Organization])

    class User(Model):
        email = CharField(unique=True, max_length=254)
        name = CharField(max_length=120, default='')
        password_hash = CharField(null=True)
        is_superadmin = BooleanField(default=False)
        is_disabled = BooleanField(default=False)
        session_version = IntegerField(default=0)
        created_at = DateTimeField()
        last_login_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'users'
    db.create_tables([User])

    class AuditLog(Model):
        organization = ForeignKeyField(Organization, null=True, on_delete='CASCADE')
        actor = ForeignKeyField(User, null=True, on_delete='SET NULL')
        action = CharField(max_length=64)
        target_type = CharField(max_length=32, default='')
        target_id = CharField(max_length=64, default='')
        detail = JSONField(default=dict)
        ip = CharField(max_length=45, default='')
        user_agent = TextField(default='')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'audit_log'
            indexes = ((('organization', 'id'), False), (('actor', 'id'), False))
    db.create_tables([AuditLog])

    class Department(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        name = CharField(max_length=120)
        parent = ForeignKeyField('self', null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'department'
            indexes = ((('organization', 'name'), True),)
    db.create_tables([Department])

    class ExternalIdentity(Model):
        user = ForeignKeyField(User, on_delete='CASCADE')
        issuer = CharField()
        subject = CharField()
        email = CharField(max_length=254, default='')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'external_identity'
            indexes = ((('issuer', 'subject'), True),)
    db.create_tables([ExternalIdentity])

    class Membership(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        user = ForeignKeyField(User, on_delete='CASCADE')
        role = CharField(max_length=16)
        department = ForeignKeyField(Department, null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'membership'
            indexes = ((('organization', 'user'), True),)
    db.create_tables([Membership])

    class OutboxMessage(Model):
        to_address = CharField(max_length=254)
        subject = CharField()
        text_body = TextField()
        html_body = TextField(default='')
        status = CharField(max_length=16, default='queued')
        backend = CharField(max_length=16, default='')
        error = TextField(default='')
        created_at = DateTimeField()
        sent_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'outbox_message'
    db.create_tables([OutboxMessage])

    class PasswordResetToken(Model):
        user = ForeignKeyField(User, on_delete='CASCADE')
        token_hash = CharField(unique=True, max_length=64)
        created_at = DateTimeField()
        expires_at = DateTimeField()
        used_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'password_reset_token'
    db.create_tables([PasswordResetToken])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('password_reset_token'))
    migrator.migrate(migrator.drop_table('outbox_message'))
    migrator.migrate(migrator.drop_table('membership'))
    migrator.migrate(migrator.drop_table('external_identity'))
    migrator.migrate(migrator.drop_table('department'))
    migrator.migrate(migrator.drop_table('audit_log'))
    migrator.migrate(migrator.drop_table('users'))
    migrator.migrate(migrator.drop_table('organization'))

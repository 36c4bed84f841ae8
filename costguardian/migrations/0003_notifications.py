"""Notifications, deliveries and their attempts, webhook endpoints, preferences, template overrides."""
# Generated from a schema diff on 2026-11-26 09:40.
from peewee import *


def up(migrator, db):
    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class OutboxMessage(Model):
        class Meta:
            database = db
            table_name = 'outbox_message'

    class User(Model):
        class Meta:
            database = db
            table_name = 'users'

    migrator.migrate(migrator.add_column('outbox_message', 'headers', TextField(default='{}')))

    class Notification(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        user = ForeignKeyField(User, on_delete='CASCADE')
        event_id = CharField(max_length=32)
        event_type = CharField(max_length=64)
        severity = CharField(max_length=16)
        title = CharField()
        body = TextField(default='')
        link = CharField(max_length=500, default='')
        data = TextField(default='{}')
        in_app = BooleanField(default=True)
        email = BooleanField(default=False)
        digest_pending = BooleanField(default=False)
        created_at = DateTimeField()
        read_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'notification'
            indexes = ((('user', 'organization', 'in_app', 'read_at'), False), (('user', 'organization', 'created_at'), False), (('digest_pending', 'user'), False))
    db.create_tables([Notification])

    class WebhookEndpoint(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        name = CharField(max_length=120)
        url = CharField(max_length=2000)
        kind = CharField(max_length=16, default='json')
        event_types = TextField(default='*')
        is_active = BooleanField(default=True)
        secret_encrypted = TextField()
        consecutive_failures = IntegerField(default=0)
        disabled_reason = CharField(default='')
        created_by = ForeignKeyField(User, null=True, on_delete='SET NULL')
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'webhook_endpoint'
    db.create_tables([WebhookEndpoint])

    class Delivery(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        channel = CharField(max_length=16)
        event_id = CharField(max_length=32)
        event_type = CharField(max_length=64)
        notification = ForeignKeyField(Notification, null=True, on_delete='SET NULL')
        endpoint = ForeignKeyField(WebhookEndpoint, null=True, on_delete='CASCADE')
        message = ForeignKeyField(OutboxMessage, null=True, on_delete='SET NULL')
        recipient = CharField(max_length=2000)
        payload = TextField(default='')
        status = CharField(max_length=16, default='queued')
        attempts = IntegerField(default=0)
        last_error = TextField(default='')
        response_code = IntegerField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        next_attempt_at = DateTimeField(null=True)
        sent_at = DateTimeField(null=True)
        claim = CharField(max_length=32, default='')
        class Meta:
            database = db
            table_name = 'delivery'
            indexes = ((('organization', 'created_at'), False), (('status', 'next_attempt_at'), False), (('endpoint', 'created_at'), False))
    db.create_tables([Delivery])

    class DeliveryAttempt(Model):
        delivery = ForeignKeyField(Delivery, on_delete='CASCADE')
        number = IntegerField()
        ok = BooleanField()
        status_code = IntegerField(null=True)
        latency_ms = IntegerField(null=True)
        error = TextField(default='')
        response_excerpt = TextField(default='')
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'delivery_attempt'
            indexes = ((('delivery', 'number'), False),)
    db.create_tables([DeliveryAttempt])

    class NotificationPreference(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        user = ForeignKeyField(User, on_delete='CASCADE')
        event_type = CharField(max_length=64)
        in_app = BooleanField()
        email = BooleanField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'notification_preference'
            indexes = ((('organization', 'user', 'event_type'), True),)
    db.create_tables([NotificationPreference])

    class NotificationSettings(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        user = ForeignKeyField(User, on_delete='CASCADE')
        email_digest = CharField(max_length=16, default='immediate')
        last_digest_at = DateTimeField(null=True)
        class Meta:
            database = db
            table_name = 'notification_settings'
            indexes = ((('organization', 'user'), True),)
    db.create_tables([NotificationSettings])

    class TemplateOverride(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        event_type = CharField(max_length=64)
        subject = CharField()
        body = TextField()
        updated_by = ForeignKeyField(User, null=True, on_delete='SET NULL')
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'template_override'
            indexes = ((('organization', 'event_type'), True),)
    db.create_tables([TemplateOverride])

    class NotificationOnce(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        key = CharField(max_length=255)
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'notification_once'
            indexes = ((('organization', 'key'), True),)
    db.create_tables([NotificationOnce])

    migrator.migrate(migrator.add_column('api_key', 'expiry_warned_at', DateTimeField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('api_key', 'expiry_warned_at'))
    migrator.migrate(migrator.drop_table('notification_once'))
    migrator.migrate(migrator.drop_column('outbox_message', 'headers'))
    migrator.migrate(migrator.drop_table('template_override'))
    migrator.migrate(migrator.drop_table('notification_settings'))
    migrator.migrate(migrator.drop_table('notification_preference'))
    migrator.migrate(migrator.drop_table('delivery_attempt'))
    migrator.migrate(migrator.drop_table('delivery'))
    migrator.migrate(migrator.drop_table('webhook_endpoint'))
    migrator.migrate(migrator.drop_table('notification'))

"""The chat: conversations per member and their messages."""
# Written by hand in the style of a schema diff, 2026-12-05.
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

    class Conversation(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        user = ForeignKeyField(User, field=User.id, on_delete='CASCADE')
        title = CharField(max_length=200, default='New conversation')
        kind = CharField(max_length=16, default='chat')
        model = CharField(max_length=200, default='')
        system_prompt = TextField(default='')
        temperature = FloatField(null=True)
        max_tokens = IntegerField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'conversation'
            indexes = ((('organization', 'user', 'updated_at'), False),)

    class ChatMessage(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE')
        conversation = ForeignKeyField(Conversation, field=Conversation.id, on_delete='CASCADE')
        role = CharField(max_length=16)
        content = TextField(default='')
        model = CharField(max_length=200, default='')
        input_tokens = BigIntegerField(default=0)
        cached_tokens = BigIntegerField(default=0)
        output_tokens = BigIntegerField(default=0)
        cost_nanos = BigIntegerField(null=True)
        request_id = CharField(max_length=64, default='')
        status = CharField(max_length=16, default='ok')
        compare_group = CharField(max_length=32, default='')
        latency_ms = IntegerField(null=True)
        error = TextField(default='')
        trimmed = IntegerField(default=0)
        created_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'chat_message'
            indexes = ((('conversation', 'id'), False),)

    db.create_tables([Conversation, ChatMessage])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('chat_message'))
    migrator.migrate(migrator.drop_table('conversation'))

"""The chat: a member's own conversations with the organization's models,
each message sent through the gateway (services/chat). Only the member who
wrote a conversation reads it; the usage event of each answer (joined by
`request_id` = the event's `event_id`) is what everyone with usage access sees."""
from __future__ import annotations

from peewee import BigIntegerField, CharField, DateTimeField, FloatField, ForeignKeyField, IntegerField, TextField

from costguardian import clock
from costguardian.models.org import TenantModel
from costguardian.models.user import User

CHAT, COMPARE = "chat", "compare"
USER, ASSISTANT = "user", "assistant"
# An answer's life: pending (saved, not yet sent) → streaming → ok | stopped | error | blocked.
PENDING, STREAMING, STOPPING, OK, STOPPED, ERROR, BLOCKED = (
    "pending", "streaming", "stopping", "ok", "stopped", "error", "blocked")
IN_FLIGHT = (PENDING, STREAMING, STOPPING)


class Conversation(TenantModel):
    user = ForeignKeyField(User, on_delete="CASCADE")
    title = CharField(max_length=200, default="New conversation")
    kind = CharField(max_length=16, default=CHAT)  # chat, or compare (one prompt, several models side by side)
    model = CharField(max_length=200, default="")  # provider/model, as the gateway routes it
    system_prompt = TextField(default="")
    temperature = FloatField(null=True)
    max_tokens = IntegerField(null=True)
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "user", "updated_at"), False),)

    @classmethod
    def of_user(cls, org, user):
        return cls.in_org(org).where(cls.user == user)


class ChatMessage(TenantModel):
    conversation = ForeignKeyField(Conversation, on_delete="CASCADE", backref="messages")
    role = CharField(max_length=16)  # user, assistant
    content = TextField(default="")
    model = CharField(max_length=200, default="")  # provider/model asked for (answers)
    input_tokens = BigIntegerField(default=0)  # every prompt token, cached ones included (as the event)
    cached_tokens = BigIntegerField(default=0)
    output_tokens = BigIntegerField(default=0)
    cost_nanos = BigIntegerField(null=True)  # the recorded usage event's cost; None: unpriced or not sent
    request_id = CharField(max_length=64, default="")  # the gateway request id = the usage event's event_id
    status = CharField(max_length=16, default=OK)
    compare_group = CharField(max_length=32, default="")  # the answers of one compare prompt share it
    latency_ms = IntegerField(null=True)
    error = TextField(default="")
    trimmed = IntegerField(default=0)  # earlier messages left out to fit the model's context window
    created_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("conversation", "id"), False),)

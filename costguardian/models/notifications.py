"""Notifications and how they travel: one Notification per recipient, a
Delivery per email or webhook send (with its attempts), webhook endpoints,
per-user preferences and per-organization template overrides."""
from __future__ import annotations

from peewee import (BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField)

from costguardian import clock
from costguardian.models.base import BaseModel
from costguardian.models.mail import OutboxMessage
from costguardian.models.org import TenantModel
from costguardian.models.user import User


class Notification(TenantModel):
    """What one person was told. `event_id` is shared by every recipient of one
    `notify` call (and is the webhook envelope's id)."""

    user = ForeignKeyField(User, backref="notifications", on_delete="CASCADE")
    event_id = CharField(max_length=32)
    event_type = CharField(max_length=64)
    severity = CharField(max_length=16)  # info, warning, critical
    title = CharField(max_length=255)
    body = TextField(default="")
    link = CharField(max_length=500, default="")  # a path inside the app
    data = TextField(default="{}")  # the payload, JSON
    in_app = BooleanField(default=True)  # shown in the bell (per the user's preferences)
    email = BooleanField(default=False)  # sent (or digested) by email
    digest_pending = BooleanField(default=False)  # waits for the user's daily digest
    created_at = DateTimeField(default=clock.now)
    read_at = DateTimeField(null=True)

    class Meta:
        indexes = (
            (("user", "organization", "in_app", "read_at"), False),  # the badge count
            (("user", "organization", "created_at"), False),  # the list, newest first
            (("digest_pending", "user"), False),
        )


class NotificationSettings(TenantModel):
    """A member's email cadence in one organization."""

    user = ForeignKeyField(User, on_delete="CASCADE")
    email_digest = CharField(max_length=16, default="immediate")  # immediate, daily
    last_digest_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("organization", "user"), True),)


class NotificationPreference(TenantModel):
    """A member's choice for one event type; absent means the role's default."""

    user = ForeignKeyField(User, on_delete="CASCADE")
    event_type = CharField(max_length=64)
    in_app = BooleanField()
    email = BooleanField()
    updated_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "user", "event_type"), True),)


class WebhookEndpoint(TenantModel):
    name = CharField(max_length=120)
    url = CharField(max_length=2000)
    kind = CharField(max_length=16, default="json")  # json (signed envelope), slack ({"text": …})
    event_types = TextField(default="*")  # comma-separated, or * for every type
    is_active = BooleanField(default=True)
    secret_encrypted = TextField()  # Fernet token of the signing secret
    consecutive_failures = IntegerField(default=0)
    disabled_reason = CharField(max_length=255, default="")
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)

    @property
    def event_type_list(self) -> list[str]:
        return [t for t in self.event_types.split(",") if t]

    def wants(self, event_type: str) -> bool:
        types = self.event_type_list
        return "*" in types or event_type in types


class Delivery(TenantModel):
    """One message to one destination, however many attempts it takes."""

    channel = CharField(max_length=16)  # email, webhook
    event_id = CharField(max_length=32)
    event_type = CharField(max_length=64)
    notification = ForeignKeyField(Notification, null=True, on_delete="SET NULL")
    endpoint = ForeignKeyField(WebhookEndpoint, null=True, backref="deliveries", on_delete="CASCADE")
    message = ForeignKeyField(OutboxMessage, null=True, on_delete="SET NULL")
    recipient = CharField(max_length=2000)  # email address or webhook URL at the time
    payload = TextField(default="")  # webhook body (JSON), exactly as signed and sent
    status = CharField(max_length=16, default="queued")  # queued, retrying, sent, failed, disabled
    attempts = IntegerField(default=0)
    last_error = TextField(default="")
    response_code = IntegerField(null=True)
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)
    next_attempt_at = DateTimeField(null=True)
    sent_at = DateTimeField(null=True)
    claim = CharField(max_length=32, default="")  # the attempt in flight (see services.notifications.deliveries)

    class Meta:
        indexes = (
            (("organization", "created_at"), False),
            (("status", "next_attempt_at"), False),  # the sweeper
            (("endpoint", "created_at"), False),
        )


class DeliveryAttempt(BaseModel):
    """One try of a delivery: what the other side answered and how fast."""

    delivery = ForeignKeyField(Delivery, backref="attempt_log", on_delete="CASCADE")
    number = IntegerField()
    ok = BooleanField()
    status_code = IntegerField(null=True)
    latency_ms = IntegerField(null=True)
    error = TextField(default="")
    response_excerpt = TextField(default="")
    created_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("delivery", "number"), False),)


class TemplateOverride(TenantModel):
    """An organization's own email subject and body for one event type."""

    event_type = CharField(max_length=64)
    subject = CharField(max_length=255)
    body = TextField()  # plain text (Jinja, sandboxed); the HTML part is built from it
    updated_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    updated_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "event_type"), True),)


class NotificationOnce(TenantModel):
    """Events told once per organization (e.g. "model X has no price"): the
    unique key is the guard, so concurrent senders cannot both send."""

    key = CharField(max_length=255)
    created_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "key"), True),)

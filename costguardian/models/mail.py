"""Outgoing email, kept so the development outbox can show it."""
from __future__ import annotations

from peewee import CharField, DateTimeField, TextField

from costguardian import clock
from costguardian.models.base import BaseModel


class OutboxMessage(BaseModel):
    to_address = CharField(max_length=254)
    subject = CharField(max_length=255)
    text_body = TextField()
    html_body = TextField(default="")
    headers = TextField(default="{}")  # extra headers, JSON (List-Unsubscribe, …)
    status = CharField(max_length=16, default="queued")  # queued, sent, failed
    backend = CharField(max_length=16, default="")
    error = TextField(default="")
    created_at = DateTimeField(default=clock.now)
    sent_at = DateTimeField(null=True)

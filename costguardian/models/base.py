"""Base model and time helpers shared by every aggregate."""
from __future__ import annotations

from datetime import datetime, timezone

from peewee import Model

from costguardian.extensions import db


def utcnow() -> datetime:
    """The current time in UTC, naive: every DateTimeField stores naive UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False

"""Base model shared by every aggregate. Time defaults call `clock.now`."""
from __future__ import annotations

from peewee import Model

from costguardian.extensions import db


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False

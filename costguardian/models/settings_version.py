"""A number per organization that changes whenever what the gateway keeps
in memory of its settings changes (costguardian/settings_cache.py): changed
by database triggers (migration 0031), so no code path can forget it."""
from __future__ import annotations

from peewee import BigIntegerField, ForeignKeyField

from costguardian.models.base import BaseModel
from costguardian.models.org import Organization


class OrgSettingsVersion(BaseModel):
    organization = ForeignKeyField(Organization, primary_key=True, on_delete="CASCADE", backref="+")
    # Starts at a random number (so a database made again from nothing, as the
    # tests do, never repeats a number a process still holds); each change adds
    # 1 + a random number below 10⁹, so a change rolled back does not leave its
    # number to the next one (what a process read under it may be kept).
    version = BigIntegerField()

    class Meta:
        table_name = "org_settings_version"

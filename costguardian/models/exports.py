"""An owner's export of the whole organization, built in the background
(services/ops/org_export.py)."""
from __future__ import annotations

from peewee import BigIntegerField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from costguardian import clock
from costguardian.models.org import TenantModel
from costguardian.models.user import User

QUEUED, BUILDING, READY, FAILED, EXPIRED = "queued", "building", "ready", "failed", "expired"
RUNNING = (QUEUED, BUILDING)


class OrgExport(TenantModel):
    """One export job and its archive in CG_EXPORT_DIR.

    `running_slot` holds the organization's id while the job is queued or
    building and NULL afterwards: a unique column, so a second job cannot
    start while one runs, on either database (NULLs never collide)."""

    requested_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    status = CharField(max_length=16, default=QUEUED)
    running_slot = IntegerField(null=True, unique=True)
    current_table = CharField(max_length=64, default="")
    rows_done = BigIntegerField(default=0)
    file_name = CharField(max_length=200, default="")
    size_bytes = BigIntegerField(null=True)
    error = TextField(default="")
    created_at = DateTimeField(default=clock.now)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    expires_at = DateTimeField(null=True)
    updated_at = DateTimeField(default=clock.now)  # the builder's heartbeat: a stalled job is failed

    class Meta:
        indexes = ((("organization", "created_at"), False), (("status", "expires_at"), False))

    @property
    def is_running(self) -> bool:
        return self.status in RUNNING

    @classmethod
    def latest(cls, org) -> OrgExport | None:
        return cls.in_org(org).order_by(cls.id.desc()).first()

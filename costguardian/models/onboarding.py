"""An organization's progress through the onboarding wizard (services/onboarding)."""
from __future__ import annotations

from peewee import CharField, DateTimeField, ForeignKeyField, JSONField

from costguardian import clock
from costguardian.models.org import Organization, TenantModel


class OnboardingProgress(TenantModel):
    """One row per organization: each step's status ("done" or "skipped"),
    when, and what it created (ids, never secrets), so a second owner on
    another machine resumes where the first stopped, and a step submitted
    twice does its side effect once (`claims`)."""

    organization = ForeignKeyField(Organization, on_delete="CASCADE", unique=True)
    steps = JSONField(default=dict)  # step -> {"status", "at", "by", "data"}
    claims = JSONField(default=dict)  # step -> the submission token being (or already) applied
    dismissed_at = DateTimeField(null=True)  # the dashboard checklist was closed
    completed_at = DateTimeField(null=True)
    started_by = CharField(max_length=254, default="")
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)
